#include "base/account.hpp"

#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>

namespace sdps::base {

namespace {

std::string user_name(uid_t uid) {
  const passwd* pw = ::getpwuid(uid);
  return pw ? pw->pw_name : std::to_string(uid);
}

std::string group_name(gid_t gid) {
  const group* gr = ::getgrgid(gid);
  return gr ? gr->gr_name : std::to_string(gid);
}

}  // namespace

std::optional<gid_t> find_group(const std::string& name) {
  const group* gr = ::getgrnam(name.c_str());
  if (!gr) return std::nullopt;
  return gr->gr_gid;
}

std::optional<account> find_account(const std::string& name) {
  const passwd* pw = ::getpwnam(name.c_str());
  if (!pw) return std::nullopt;
  account who{name, pw->pw_uid, pw->pw_gid, {}};
  int count = 64;
  std::vector<gid_t> groups(static_cast<std::size_t>(count));
  if (::getgrouplist(pw->pw_name, pw->pw_gid, groups.data(), &count) < 0) {
    groups.resize(static_cast<std::size_t>(count));
    ::getgrouplist(pw->pw_name, pw->pw_gid, groups.data(), &count);
  }
  groups.resize(static_cast<std::size_t>(std::max(count, 0)));
  who.groups = std::move(groups);
  return who;
}

std::string current_user_name() { return user_name(::geteuid()); }

bool can_access(const std::filesystem::path& path, unsigned want) {
  int mode = 0;
  if (want & read_access) mode |= R_OK;
  if (want & write_access) mode |= W_OK;
  if (want & search_access) mode |= X_OK;
  return ::faccessat(AT_FDCWD, path.c_str(), mode == 0 ? F_OK : mode, AT_EACCESS) == 0;
}

bool can_open(const std::filesystem::path& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
  if (fd < 0) return false;
  ::close(fd);
  return true;
}

std::vector<std::string> check_readable(const std::filesystem::path& file, const std::string& what) {
  const std::string who = current_user_name();
  std::filesystem::path blocker;
  struct stat st{};
  std::vector<std::filesystem::path> folders;
  for (auto dir = file.parent_path(); !dir.empty(); dir = dir.parent_path()) {
    folders.push_back(dir);
    if (dir == dir.parent_path()) break;
  }
  for (auto it = folders.rbegin(); it != folders.rend() && blocker.empty(); ++it) {
    if (::stat(it->c_str(), &st) != 0) return {};  // missing: reported where it is used
    if (!can_access(*it, search_access)) blocker = *it;
  }
  if (blocker.empty()) {
    if (::stat(file.c_str(), &st) != 0 || can_open(file)) return {};
    blocker = file;
  }
  std::string fix;
  const bool folder = blocker != file;
  if (st.st_gid != 0) {
    fix = "run  adduser " + who + " " + group_name(st.st_gid) + "  (then restart sdpsd)";
  } else {
    fix = "run  chgrp " + group_name(::getegid()) + " " + blocker.string() + " && chmod g+" + (folder ? "x" : "r") +
          " " + blocker.string();
  }
  std::string line = "user '" + who + "' cannot read " + what + " ";
  if (folder) line += file.string() + ": it cannot enter ";
  line += describe_file(blocker, st);
  line += ": ";
  line += fix;
  return {line};
}

std::string describe_file(const std::filesystem::path& path, const struct stat& st) {
  char mode[8];
  std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
  return path.string() + " (" + user_name(st.st_uid) + ":" + group_name(st.st_gid) + " " + mode + ")";
}

void check_ancestors(const std::filesystem::path& path, std::vector<std::string>& problems) {
  // From the root down: the first folder that cannot be entered is the one
  // to fix (a folder below it cannot even be looked at).
  std::vector<std::filesystem::path> folders;
  for (auto dir = path.parent_path(); !dir.empty(); dir = dir.parent_path()) {
    folders.push_back(dir);
    if (dir == dir.parent_path()) break;
  }
  for (auto it = folders.rbegin(); it != folders.rend(); ++it) {
    struct stat st{};
    if (::stat(it->c_str(), &st) != 0) return;  // missing: nothing below it to reach
    if (!can_access(*it, search_access)) {
      problems.push_back("user '" + current_user_name() + "' cannot enter " + describe_file(*it, st) +
                         ": chmod o+x or chgrp it");
      return;
    }
  }
}

}  // namespace sdps::base
