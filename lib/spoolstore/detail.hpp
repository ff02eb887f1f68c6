#pragma once
/// @file
/// What lib/spoolstore's own files share: errors with a path and errno,
/// open(2) past EINTR, reaching a punt folder. Not for its callers.

#include "spoolstore/format.hpp"

#include <sys/types.h>

#include <filesystem>
#include <optional>
#include <string>

namespace sdps::spoolstore::detail {

/// Throws io_error "WHAT PATH: <strerror(code)>" with `code`.
[[noreturn]] void fail(const std::string& what, const std::string& path, int code);
[[noreturn]] void fail(const std::string& what, const std::filesystem::path& path, int code);

/// open(2), again after EINTR.
int open_retry(const char* path, int flags, mode_t mode = 0);

/// True for the errors that mean "no room for one more file": ENOSPC,
/// EDQUOT.
bool no_space(int code);

/// "PATH is a symbolic link to TARGET: ..." when `path` is a symbolic
/// link; nullopt otherwise. The spool never follows a link below a punt
/// folder (a host folder, tmp/, locks/, gone/): a link there would let one
/// host's mail land in, or be read from, another's folder.
std::optional<std::string> link_problem(const std::filesystem::path& path);

/// Throws io_error (ELOOP) with link_problem()'s text when `path` is a
/// symbolic link.
void refuse_link(const std::filesystem::path& path);

/// Checks that the punt folder `root` is there, creating it (with its
/// missing parents) only when `create_punt` says so. True when it was
/// created now. Throws io_error ("punt folder is missing: ROOT" when it
/// is not there and may not be made).
bool reach_punt(const std::filesystem::path& root, bool create_punt);

}  // namespace sdps::spoolstore::detail
