#pragma once
/// @file
/// Whether this process can serve the spools: what local_spool's check()
/// runs as the config's `user:` at start-up and in --check (docs/spool.md,
/// Ownership).

#include "base/account.hpp"

#include <filesystem>
#include <map>
#include <string>
#include <vector>

namespace sdps::spoolstore {

/// What would stop this process from serving the punts (name -> spool
/// folder): a folder above a punt it cannot enter; a punt folder, host
/// folder or tmp/ (or locks/) in it that it cannot write; message files it
/// cannot open (counted per punt, one named). It tries the accesses (as
/// the kernel decides them), so run it as the user in question
/// (base::lines_as_user): local_spool's check() does, for its punt. One
/// line per problem, each naming the user and saying what to run. Looks at
/// no more than about 20,000 files per punt. A missing folder is no
/// problem (it is created when needed).
std::vector<std::string> check_access(const std::map<std::string, std::filesystem::path>& punts);

}  // namespace sdps::spoolstore
