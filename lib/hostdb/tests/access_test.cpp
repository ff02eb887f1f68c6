// Whether the config's user can use the host database: the lines an admin
// reads from `sdpsd --check`, tried as nobody.

#include "hostdb/access.hpp"
#include "support/as_user.hpp"
#include "support/temp_dir.hpp"

#include <catch2/catch.hpp>

#include <sys/stat.h>
#include <unistd.h>

using sdps::hostdb::check_access;
using sdps::testing::as_nobody;
using sdps::testing::nobody_group;

TEST_CASE("hosts file: readable, and its folder writable, or the admin is told what to run") {
  if (!as_nobody([] { return std::vector<std::string>{}; })) {
    WARN("needs root to try as another user: not run");
    return;
  }
  sdps::testing::temp_dir dir;
  REQUIRE(::chmod(dir.path().c_str(), 0755) == 0);
  const auto var = dir.path() / "var";
  const auto hosts = var / "hosts";
  std::filesystem::create_directories(var);
  sdps::testing::write_text(hosts, "");
  REQUIRE(::chmod(hosts.c_str(), 0600) == 0);
  REQUIRE(::chmod(var.c_str(), 0755) == 0);

  const auto problems = *as_nobody([&] { return check_access(hosts); });
  REQUIRE(problems.size() == 2);
  CHECK(problems[0] == "user 'nobody' cannot read the host database " + hosts.string() +
                           " (root:root 0600): run  chown nobody: " + hosts.string() +
                           "  (and use `sdps host ...` as root or as nobody)");
  CHECK(problems[1] == "user 'nobody' cannot write " + var.string() +
                           " (root:root 0755), where `sdps host ...` replaces the host database: run  chown nobody: " +
                           var.string());

  // The group's bits are what a member gets.
  REQUIRE(::chown(hosts.c_str(), 0, nobody_group()) == 0);
  REQUIRE(::chown(var.c_str(), 0, nobody_group()) == 0);
  REQUIRE(::chmod(hosts.c_str(), 0640) == 0);
  REQUIRE(::chmod(var.c_str(), 0770) == 0);
  CHECK(as_nobody([&] { return check_access(hosts); })->empty());
}

TEST_CASE("hosts file: a missing file is no problem, a closed folder above it is") {
  if (!as_nobody([] { return std::vector<std::string>{}; })) {
    WARN("needs root to try as another user: not run");
    return;
  }
  sdps::testing::temp_dir dir;
  REQUIRE(::chmod(dir.path().c_str(), 0755) == 0);
  const auto closed = dir.path() / "closed";
  std::filesystem::create_directories(closed / "var");
  REQUIRE(::chmod((closed / "var").c_str(), 0777) == 0);
  CHECK(as_nobody([&] { return check_access(closed / "var" / "hosts"); })->empty());
  REQUIRE(::chmod(closed.c_str(), 0700) == 0);
  const auto problems = *as_nobody([&] { return check_access(closed / "var" / "hosts"); });
  REQUIRE(problems.size() == 1);
  CHECK(problems[0].rfind("user 'nobody' cannot enter " + closed.string() + " (", 0) == 0);
}
