#pragma once
// Turns one client command line into the command the chain dispatches.

#include <sdps/module.hpp>

#include <string_view>

namespace sdps::core {

/// Splits `line` (a line_reader line, without its terminator) at its first
/// space: the verb before it, upper-cased; the argument after it, verbatim
/// (further spaces kept). No space: the whole line is the verb and the
/// argument is empty. An empty verb is the caller's to refuse. Pure.
command parse_command(std::string_view line);

}  // namespace sdps::core
