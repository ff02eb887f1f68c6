#pragma once
// Who may touch the site's files: the checks sdpsd runs as its `user:`
// (the core's own files, and every module's check()), and the core's own
// resources.

#include "config.hpp"
#include "logging.hpp"

#include <functional>
#include <string>
#include <vector>

namespace sdps::core {

/// What check_as_user found.
struct access_report {
  /// One line per problem, each saying what to fix.
  std::vector<std::string> problems;
  /// Set when the checks could not run as `user:` (sdpsd runs as someone
  /// else and not as root): who they ran as instead.
  std::string note;
};

/// Runs `checks` as `user` (the config's `user:`), so that they try what
/// the user can open and write: in a child process that becomes the user
/// when sdpsd runs as root (base::lines_as_user), in this process when it
/// runs as the user already or no user is configured. Run as another user,
/// the checks run as that one and `note` says so. A user that does not
/// exist is one problem. Throws std::runtime_error when the child cannot
/// be made.
access_report check_as_user(const std::string& user, const std::function<std::vector<std::string>()>& checks);

/// Raises the soft limit on open files to the hard one, and warns when
/// that is still too few for `max_sessions`.
void check_descriptor_limit(const server_config& config, logging::source_log& log);

}  // namespace sdps::core
