// Accounts, and what this process may do with a file, tried as another
// user (nobody, in a child process: root's runs only).

#include "base/account.hpp"
#include "base/privileges.hpp"
#include "support/temp_dir.hpp"

#include <catch2/catch.hpp>

#include <grp.h>
#include <unistd.h>

#include <functional>
#include <optional>
#include <string>
#include <vector>

using namespace sdps::base;

namespace {

struct stat file_with(uid_t uid, gid_t gid, mode_t mode) {
  struct stat st{};
  st.st_uid = uid;
  st.st_gid = gid;
  st.st_mode = mode;
  return st;
}

/// Runs `work` as nobody (a child process), or returns nullopt when this
/// process is not root and cannot.
std::optional<std::vector<std::string>> as_nobody(const std::function<std::vector<std::string>()>& work) {
  if (::geteuid() != 0) return std::nullopt;
  return lines_as_user("nobody", work);
}

}  // namespace

TEST_CASE("find_account: the system's users, with their groups") {
  const auto r = find_account("root");
  REQUIRE(r);
  CHECK(r->uid == 0);
  CHECK(r->gid == 0);
  CHECK(std::find(r->groups.begin(), r->groups.end(), 0u) != r->groups.end());
  CHECK_FALSE(find_account("no-such-user-sdps"));
}

TEST_CASE("describe_file: path, owner, group and mode") {
  CHECK(describe_file("/x/y", file_with(0, 0, S_IFREG | 0640)) == "/x/y (root:root 0640)");
  CHECK(describe_file("/x/y", file_with(4000000, 4000000, S_IFDIR | 01777)) == "/x/y (4000000:4000000 1777)");
}

TEST_CASE("can_access and can_open: what the kernel lets this process do, tried") {
  sdps::testing::temp_dir dir;
  REQUIRE(::chmod(dir.path().c_str(), 0755) == 0);
  const auto file = dir.path() / "file";
  sdps::testing::write_text(file, "x");
  REQUIRE(::chmod(file.c_str(), 0600) == 0);
  CHECK(can_open(file));
  CHECK(can_access(dir.path(), read_access | write_access | search_access));
  CHECK_FALSE(can_open(dir.path() / "missing"));
  const auto seen = as_nobody([&] {
    return std::vector<std::string>{std::to_string(can_open(file)),
                                    std::to_string(can_access(dir.path(), search_access)),
                                    std::to_string(can_access(dir.path(), write_access))};
  });
  if (!seen) {
    WARN("needs root to try as another user: not run");
    return;
  }
  CHECK(*seen == std::vector<std::string>{"0", "1", "0"});
}

TEST_CASE("check_ancestors: the first folder above a path the user cannot enter") {
  sdps::testing::temp_dir dir;
  const auto closed = dir.path() / "closed";
  std::filesystem::create_directories(closed / "inner");
  REQUIRE(::chmod(closed.c_str(), 0700) == 0);
  REQUIRE(::chmod(dir.path().c_str(), 0755) == 0);
  const auto problems = as_nobody([&] {
    std::vector<std::string> out;
    check_ancestors(closed / "inner" / "file", out);
    check_ancestors(dir.path() / "open-file", out);
    return out;
  });
  if (!problems) {
    WARN("needs root to try as another user: not run");
    return;
  }
  REQUIRE(problems->size() == 1);
  CHECK((*problems)[0].rfind("user 'nobody' cannot enter " + closed.string() + " (root:", 0) == 0);
  CHECK((*problems)[0].find("0700): chmod o+x or chgrp it") != std::string::npos);
}

TEST_CASE("check_readable: the file or the folder in the way, and the fix: join its group, or chgrp") {
  sdps::testing::temp_dir dir;
  REQUIRE(::chmod(dir.path().c_str(), 0755) == 0);
  const auto secret = dir.path() / "secret";
  sdps::testing::write_text(secret, "x");
  REQUIRE(::chmod(secret.c_str(), 0600) == 0);
  const auto keys = dir.path() / "private";
  std::filesystem::create_directories(keys);
  const auto key = keys / "key.pem";
  sdps::testing::write_text(key, "x");
  REQUIRE(::chmod(key.c_str(), 0644) == 0);
  const auto lines = as_nobody([&] {
    std::vector<std::string> out = check_readable(secret, "the secret");
    for (auto& l : check_readable(dir.path() / "missing", "a missing file")) out.push_back(l);
    for (auto& l : check_readable(key, "the key")) out.push_back(l);
    return out;
  });
  if (!lines) {
    WARN("needs root to try as another user: not run");
    return;
  }
  CHECK(lines->size() == 1);
  CHECK(lines->at(0).rfind("user 'nobody' cannot read the secret " + secret.string() +
                               " (root:root 0600): run  chgrp ",
                           0) == 0);
  CHECK(lines->at(0).find(" && chmod g+r " + secret.string()) != std::string::npos);

  // The Debian way: root:ssl-cert 0710 folder, 0640 key: join the group.
  const auto group = ::getgrnam("ssl-cert") ? "ssl-cert" : "daemon";
  const gid_t gid = ::getgrnam(group)->gr_gid;
  REQUIRE(::chown(keys.c_str(), 0, gid) == 0);
  REQUIRE(::chmod(keys.c_str(), 0710) == 0);
  REQUIRE(::chown(key.c_str(), 0, gid) == 0);
  REQUIRE(::chmod(key.c_str(), 0640) == 0);
  const auto blocked = as_nobody([&] { return check_readable(key, "the TLS key"); });
  REQUIRE(blocked->size() == 1);
  CHECK(blocked->at(0) == "user 'nobody' cannot read the TLS key " + key.string() + ": it cannot enter " +
                              keys.string() +
                              " (root:" + group + " 0710): run  adduser nobody " + group + "  (then restart sdpsd)");
}
