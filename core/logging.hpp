#pragma once
// The core logs through lib/logging: the sink sdpsd and `sdps lmtp` share
// (stderr lines, journald's priority prefixes or the syslog socket; text
// or JSON), and logging::source_log, a logger with a source prefix on it.

#include "logging/sink.hpp"

namespace sdps::core {

/// The core's logger's name before lib/logging, for code written against
/// it; new code names logging::source_log.
using stderr_log = logging::source_log;

}  // namespace sdps::core
