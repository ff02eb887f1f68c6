#pragma once
/// @file
/// A system user, and what this process may do with a file: how the
/// libraries' access checks tell, run as the config's `user:` (in a child
/// process that became it, privileges.hpp), whether it can use the site's
/// files, and whom the programs become.

#include <sys/stat.h>
#include <sys/types.h>

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace sdps::base {

/// One entry of the system's user database.
struct account {
  std::string name;
  uid_t uid = 0;
  gid_t gid = 0;                ///< its primary group
  std::vector<gid_t> groups;    ///< every group it is in, the primary one too
};

/// The account called `name`; nullopt if there is none.
std::optional<account> find_account(const std::string& name);

/// The group called `name`; nullopt if there is none.
std::optional<gid_t> find_group(const std::string& name);

/// Bits of `want` for can_access: read, write, search (a folder) or execute.
inline constexpr unsigned read_access = 4, write_access = 2, search_access = 1;

/// The name of the user this process runs as (its effective user ID), or
/// the number when it has none.
std::string current_user_name();

/// Whether this process may do everything in `want` with `path`, as the
/// kernel decides it for the process's effective IDs and groups now (ACLs
/// and read-only mounts included): faccessat(2) with AT_EACCESS. Run it as
/// the user in question (base::lines_as_user), not as root.
bool can_access(const std::filesystem::path& path, unsigned want);

/// Whether this process can open `path` for reading: it tries (and closes
/// the file at once).
bool can_open(const std::filesystem::path& path);

/// One line when this process cannot read `file` (it tries): "user 'NAME'
/// cannot read WHAT FILE (OWNER:GROUP MODE): run  adduser NAME GROUP", or
/// "...: it cannot enter FOLDER (...): ..." for a folder above it, with
/// the fix: joining the file's (or the folder's) group when that is not
/// root's, else a chgrp to the user's group. `what` names the file for an
/// admin ("the TLS key"). Nothing when it can read it, or it is missing.
std::vector<std::string> check_readable(const std::filesystem::path& file, const std::string& what);

/// "PATH (OWNER:GROUP 0750)", for messages about a file's access.
std::string describe_file(const std::filesystem::path& path, const struct stat& st);

/// Adds a line to `problems` (and stops) at the first folder above `path`
/// that this process cannot enter: "user 'NAME' cannot enter FOLDER
/// (...): chmod o+x or chgrp it".
void check_ancestors(const std::filesystem::path& path, std::vector<std::string>& problems);

}  // namespace sdps::base
