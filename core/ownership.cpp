#include "ownership.hpp"

#include <grp.h>
#include <pwd.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <optional>
#include <stdexcept>

namespace sdps::core {

namespace {

struct account {
  std::string name;
  uid_t uid = 0;
  std::vector<gid_t> groups;
};

std::string owner_name(uid_t uid) {
  const passwd* pw = ::getpwuid(uid);
  return pw ? pw->pw_name : std::to_string(uid);
}

// What the mode bits grant `who` (want: 4 read, 2 write, 1 search/execute).
bool allowed(const account& who, const struct stat& st, unsigned want) {
  if (who.uid == 0) return !(want & 1) || S_ISDIR(st.st_mode) || (st.st_mode & 0111);
  unsigned bits;
  if (st.st_uid == who.uid) bits = (st.st_mode >> 6) & 7;
  else if (std::find(who.groups.begin(), who.groups.end(), st.st_gid) != who.groups.end()) bits = (st.st_mode >> 3) & 7;
  else bits = st.st_mode & 7;
  return (bits & want) == want;
}

std::string describe(const std::filesystem::path& path, const struct stat& st) {
  char mode[8];
  std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
  const group* gr = ::getgrgid(st.st_gid);
  return path.string() + " (" + owner_name(st.st_uid) + ":" + (gr ? gr->gr_name : std::to_string(st.st_gid)) +
         " " + mode + ")";
}

// Every folder above `path` must let the user through.
void check_ancestors(const account& who, const std::filesystem::path& path, std::vector<std::string>& out) {
  for (auto dir = path.parent_path(); !dir.empty(); dir = dir.parent_path()) {
    struct stat st{};
    if (::stat(dir.c_str(), &st) == 0 && !allowed(who, st, 1)) {
      out.push_back("user '" + who.name + "' cannot enter " + describe(dir, st) + ": chmod o+x or chgrp it");
      return;
    }
    if (dir == dir.parent_path()) break;
  }
}

void check_dir(const account& who, const std::filesystem::path& dir, std::vector<std::string>& out, int depth,
               std::size_t& files_seen, std::size_t& unreadable, std::string& example) {
  struct stat st{};
  if (::stat(dir.c_str(), &st) != 0) return;
  if (!allowed(who, st, 7)) {
    out.push_back("user '" + who.name + "' cannot write " + describe(dir, st) + ": run  chown -R " + who.name + ": " +
                  dir.string());
    return;
  }
  if (depth == 0) return;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    if (files_seen > 20000) return;  // enough to tell; a huge spool is not scanned whole at start-up
    struct stat child{};
    if (::lstat(entry.path().c_str(), &child) != 0) continue;
    if (S_ISDIR(child.st_mode)) {
      check_dir(who, entry.path(), out, depth - 1, files_seen, unreadable, example);
    } else if (S_ISREG(child.st_mode)) {
      ++files_seen;
      if (!allowed(who, child, 4)) {
        if (unreadable++ == 0) example = describe(entry.path(), child);
      }
    }
  }
}

std::optional<account> find_account(const std::string& name) {
  const passwd* pw = ::getpwnam(name.c_str());
  if (!pw) return std::nullopt;
  account who{name, pw->pw_uid, {}};
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

}  // namespace

std::vector<std::string> check_user_access(const server_config& config) {
  std::vector<std::string> out;
  if (config.user.empty()) return out;
  const auto who = find_account(config.user);
  if (!who) {
    out.push_back("user '" + config.user + "' (the config's 'user:') does not exist: create it, e.g. adduser --system --group " +
                  config.user);
    return out;
  }
  const auto& site = *config.globals;
  if (site.has("hosts")) {
    const auto hosts = site.path("hosts");
    struct stat st{};
    check_ancestors(*who, hosts, out);
    if (::stat(hosts.c_str(), &st) == 0 && !allowed(*who, st, 4))
      out.push_back("user '" + who->name + "' cannot read the host database " + describe(hosts, st) + ": run  chown " +
                    who->name + ": " + hosts.string() + "  (and use `sdps host ...` as root or as " + who->name + ")");
    struct stat parent{};
    if (::stat(hosts.parent_path().c_str(), &parent) == 0 && !allowed(*who, parent, 3))
      out.push_back("user '" + who->name + "' cannot write " + describe(hosts.parent_path(), parent) +
                    ", where `sdps host ...` replaces the host database: run  chown " + who->name + ": " +
                    hosts.parent_path().string());
  }
  if (site.has("punts")) {
    const auto punts = site.child("punts");
    for (const auto& name : punts->keys()) {
      const auto dir = punts->path(name);
      check_ancestors(*who, dir, out);
      std::size_t seen = 0, unreadable = 0;
      std::string example;
      check_dir(*who, dir, out, 2, seen, unreadable, example);
      if (unreadable)
        out.push_back("user '" + who->name + "' cannot read " + std::to_string(unreadable) + " message file(s) in punt " +
                      name + ", e.g. " + example + ": run  chown -R " + who->name + ": " + dir.string());
    }
  }
  return out;
}

bool become_configured_user(const std::string& user) {
  if (user.empty() || ::geteuid() != 0) return false;
  const passwd* pw = ::getpwnam(user.c_str());
  if (!pw) throw std::runtime_error("user '" + user + "' (the config's 'user:') does not exist");
  if (pw->pw_uid == 0) return false;
  if (::initgroups(pw->pw_name, pw->pw_gid) != 0 || ::setgid(pw->pw_gid) != 0 || ::setuid(pw->pw_uid) != 0)
    throw std::runtime_error("cannot switch to user '" + user + "': " + std::strerror(errno));
  return true;
}

void check_descriptor_limit(const server_config& config, stderr_log& log) {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0) return;
  if (limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &limit);
    ::getrlimit(RLIMIT_NOFILE, &limit);
  }
  // A session holds its socket, plus a spool file while a message is read,
  // and per punt a back-end link (front end) or, for a host login, a lock
  // file: the worst case is counted. (A user login shares its lock file
  // with the host's other user logins: docs/spool.md, Locks.)
  const std::size_t punts = config.globals->has("punts") ? config.globals->child("punts")->keys().size() : 1;
  const rlim_t needed = static_cast<rlim_t>(config.max_sessions * (2 + punts) + 64);
  if (limit.rlim_cur != RLIM_INFINITY && limit.rlim_cur < needed)
    log.warning("the open-file limit is ", limit.rlim_cur, ", fewer than the ", needed, " that max_sessions ",
                config.max_sessions, " may need: raise LimitNOFILE (systemd) or ulimit -n");
}

}  // namespace sdps::core
