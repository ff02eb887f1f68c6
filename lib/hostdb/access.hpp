#pragma once
/// @file
/// Whether this process can use the host database file: what the auth
/// module's check() runs as the config's `user:` (sdpsd --check, start-up).

#include "base/account.hpp"

#include <filesystem>
#include <string>
#include <vector>

namespace sdps::hostdb {

/// What would stop this process from using `hosts_file`: a folder above it
/// it cannot enter, the file it cannot open (the server reads it), its
/// folder it cannot write (`sdps host ...`, run as root, works as the
/// config's user and replaces the file there). It tries the accesses (as
/// the kernel decides them: groups, ACLs, read-only mounts), so run it as
/// the user in question (base::lines_as_user). One line per problem, each
/// naming the user and saying what to run. A missing file is no problem
/// (it is an empty database).
std::vector<std::string> check_access(const std::filesystem::path& hosts_file);

}  // namespace sdps::hostdb
