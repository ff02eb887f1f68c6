// Whether the config's user can serve the spools: the lines an admin
// reads from `sdpsd --check`, tried as nobody.

#include "spoolstore/access.hpp"
#include "support/as_user.hpp"
#include "support/temp_dir.hpp"

#include <catch2/catch.hpp>

#include <sys/stat.h>
#include <unistd.h>

using sdps::spoolstore::check_access;
using sdps::testing::as_nobody;
using sdps::testing::nobody_group;

namespace {

void make_folder(const std::filesystem::path& dir, mode_t mode, gid_t group) {
  std::filesystem::create_directories(dir);
  REQUIRE(::chown(dir.c_str(), 0, group) == 0);
  REQUIRE(::chmod(dir.c_str(), mode) == 0);
}

void make_file(const std::filesystem::path& file, mode_t mode, gid_t group) {
  sdps::testing::write_text(file, "x");
  REQUIRE(::chown(file.c_str(), 0, group) == 0);
  REQUIRE(::chmod(file.c_str(), mode) == 0);
}

using punt_map = std::map<std::string, std::filesystem::path>;

}  // namespace

TEST_CASE("spools: every folder writable and every message readable, or the admin is told what to run") {
  if (!as_nobody([] { return std::vector<std::string>{}; })) {
    WARN("needs root to try as another user: not run");
    return;
  }
  sdps::testing::temp_dir dir;
  REQUIRE(::chmod(dir.path().c_str(), 0755) == 0);
  const auto finchley = dir.path() / "finchley";
  const auto docklands = dir.path() / "docklands";
  const gid_t group = nobody_group();
  make_folder(finchley / "sample" / "tmp", 0770, group);
  make_folder(finchley / "sample", 0770, group);
  make_folder(finchley, 0770, group);
  make_file(finchley / "sample" / "m1", 0640, group);
  make_folder(docklands, 0770, group);
  const punt_map punts{{"finchley", finchley}, {"docklands", docklands}};
  CHECK(as_nobody([&] { return check_access(punts); })->empty());

  // A folder it cannot write stops the look below it.
  REQUIRE(::chown(finchley.c_str(), 0, 0) == 0);
  REQUIRE(::chown(docklands.c_str(), 0, 0) == 0);
  auto problems = *as_nobody([&] { return check_access(punts); });
  REQUIRE(problems.size() == 2);
  CHECK(problems[0].rfind("user 'nobody' cannot write " + docklands.string() +
                              " (root:root 0770): run  chown -R nobody: " + docklands.string(),
                          0) == 0);
  CHECK(problems[1].rfind("user 'nobody' cannot write " + finchley.string() + " (", 0) == 0);

  // Deeper down: a host folder's tmp/, and message files, counted.
  REQUIRE(::chown(finchley.c_str(), 0, group) == 0);
  REQUIRE(::chown(docklands.c_str(), 0, group) == 0);
  REQUIRE(::chmod((finchley / "sample" / "tmp").c_str(), 0750) == 0);
  make_file(finchley / "sample" / "m2", 0600, group);
  make_file(finchley / "sample" / "m3", 0600, group);
  problems = *as_nobody([&] { return check_access(punts); });
  REQUIRE(problems.size() == 2);
  CHECK(problems[0].rfind("user 'nobody' cannot write " + (finchley / "sample" / "tmp").string() + " (", 0) == 0);
  CHECK(problems[1].rfind("user 'nobody' cannot read 2 message file(s) in punt finchley, e.g. " +
                              (finchley / "sample").string() + "/m",
                          0) == 0);
  CHECK(problems[1].find(" 0600): run  chown -R nobody: " + finchley.string()) != std::string::npos);
}

TEST_CASE("spools: a missing punt folder is no problem, a closed folder above it is") {
  if (!as_nobody([] { return std::vector<std::string>{}; })) {
    WARN("needs root to try as another user: not run");
    return;
  }
  sdps::testing::temp_dir dir;
  REQUIRE(::chmod(dir.path().c_str(), 0755) == 0);
  const auto closed = dir.path() / "closed";
  make_folder(closed, 0755, 0);
  const punt_map punts{{"finchley", closed / "finchley"}};
  CHECK(as_nobody([&] { return check_access(punts); })->empty());
  REQUIRE(::chmod(closed.c_str(), 0700) == 0);
  const auto problems = *as_nobody([&] { return check_access(punts); });
  REQUIRE(problems.size() == 1);
  CHECK(problems[0].rfind("user 'nobody' cannot enter " + closed.string() + " (", 0) == 0);
}
