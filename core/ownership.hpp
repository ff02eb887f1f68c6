#pragma once
// Who may touch the site's files: the checks sdpsd runs for its `user:`,
// and the switch the admin tool makes to that user when run as root.

#include "config.hpp"
#include "logging.hpp"

#include <string>
#include <vector>

namespace sdps::core {

/// What would stop `user` (the config's `user:`) from serving: the host
/// database not readable, a punt's spool folder (or a host folder or tmp/
/// in it) not writable, message files it cannot read. Each entry is one
/// line for an admin, saying what to fix. Empty when all is well or when
/// no user is configured. Works from root too (it reads modes, it does
/// not try).
std::vector<std::string> check_user_access(const server_config& config);

/// When running as root and `user` is set, becomes that user (groups too)
/// for good, so files the admin tool creates belong to it. Returns true if
/// it switched. Throws std::runtime_error when the user does not exist or
/// the switch fails.
bool become_configured_user(const std::string& user);

/// Raises the soft limit on open files to the hard one, and warns when
/// that is still too few for `max_sessions`.
void check_descriptor_limit(const server_config& config, stderr_log& log);

}  // namespace sdps::core
