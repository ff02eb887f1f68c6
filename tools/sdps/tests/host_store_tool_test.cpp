// `sdps host ...` on either store: init, import and export on a hosts file,
// every subcommand on a PostgreSQL database the test starts itself
// (tests/support/postgres.hpp), and the exit status of a store that is down.

#include "admin.hpp"
#include "run_host.hpp"
#include "hostdb/hostdb.hpp"
#include "hostdb/store.hpp"
#include "support/postgres.hpp"
#include "support/temp_dir.hpp"

#include <catch2/catch.hpp>
#include <sodium.h>
#include <sysexits.h>
#include <unistd.h>

#include <iostream>
#include <sstream>


namespace {

using sdps::admin::testing::result;

/// Runs `sdps host ARGS...` with `input` on stdin.
result run(const sdps::admin::site& s, const std::vector<std::string>& args, const std::string& input = "") {
  return sdps::admin::testing::run_host(s, args, input);
}

sdps::admin::site site_in(const sdps::testing::temp_dir& dir) {
  REQUIRE(sodium_init() >= 0);
  sdps::admin::site site;
  site.config_file = dir / "etc" / "sdps.yaml";
  site.hosts = dir / "var" / "hosts";
  site.customer_domain = "demon.co.uk";
  site.password_cost = "min";
  return site;
}

// One server for every test here.
sdps::testing::postgres_server& server() {
  static sdps::testing::postgres_server pg;
  return pg;
}

/// A hosts file of two hosts with real hashes (made once: a hash has a
/// random salt).
const std::string& two_hosts() {
  // Appended, not "literal" + ...: GCC 12's -Wrestrict false positive at -O3 (docs/toolchain.md).
  static const std::string text = std::string("other - - ")
                                       .append(sdps::hostdb::hash_password("other pw", sdps::hostdb::cost::min))
                                       .append("\nsample 192.0.2.7 ")
                                       .append(sdps::hostdb::hash_password("dial pw", sdps::hostdb::cost::min))
                                       .append(" ")
                                       .append(sdps::hostdb::hash_password("pop3 pw", sdps::hostdb::cost::min))
                                       .append("\n");
  return text;
}

}  // namespace

TEST_CASE("sdps host: init, export and import on a hosts file", "[host-tool]") {
  sdps::testing::temp_dir dir;
  const auto site = site_in(dir);
  result r = run(site, {"init"});
  CHECK(r.status == EX_OK);
  CHECK(r.out.find("is a hosts file: there is no schema to create") != std::string::npos);
  CHECK_FALSE(std::filesystem::exists(site.hosts));

  ::umask(077);
  sdps::testing::write_text(dir / "incoming", two_hosts());
  r = run(site, {"import", (dir / "incoming").string()});
  REQUIRE(r.status == EX_OK);
  CHECK(r.out.find("2 host(s), 2 added, 0 changed, 0 removed") != std::string::npos);
  r = run(site, {"export"});
  CHECK(r.status == EX_OK);
  CHECK(r.out.find("# sdps host database") == 0);
  CHECK(r.out.find(two_hosts()) != std::string::npos);
  // Imported again, nothing changes; an export imported is the same store.
  sdps::testing::write_text(dir / "exported", r.out);
  CHECK(run(site, {"import", (dir / "exported").string()}).out.find("0 added, 0 changed, 0 removed") !=
        std::string::npos);

  sdps::testing::write_text(dir / "broken", two_hosts() + "broken line\n");
  r = run(site, {"import", (dir / "broken").string()});
  CHECK(r.status == EX_DATAERR);
  CHECK(r.err.find("nothing imported") != std::string::npos);
  CHECK(run(site, {"import", (dir / "nosuch").string()}).status == EX_NOINPUT);
  CHECK(run(site, {"import"}).status == EX_USAGE);
  CHECK(run(site, {"export", "extra"}).status == EX_USAGE);
  CHECK(run(site, {"list"}).out.find("sample\t192.0.2.7\tdialup,pop3") != std::string::npos);
}

TEST_CASE("sdps host: every subcommand on a PostgreSQL store", "[host-tool][pg]") {
  sdps::testing::temp_dir dir;
  auto site = site_in(dir);
  const std::string db = server().create_database();
  site.hosts.clear();
  site.hosts_uri = server().uri(db);

  // Before init: the database says what is missing.
  result r = run(site, {"list"});
  CHECK(r.status == EX_CONFIG);
  CHECK(r.err.find("sdps_hosts") != std::string::npos);
  r = run(site, {"init"});
  REQUIRE(r.status == EX_OK);
  CHECK(r.out.find("created the host store's schema") != std::string::npos);
  r = run(site, {"init"});
  CHECK(r.status == EX_OK);
  CHECK(r.out.find("was there already") != std::string::npos);

  CHECK(run(site, {"add", "Sample.demon.co.uk", "--dialup-ip", "192.0.2.7"}).status == EX_OK);
  CHECK(run(site, {"add", "sample"}).status == EX_DATAERR);
  CHECK(run(site, {"passwd", "sample", "--pop3"}, "pop3 pw\n").status == EX_OK);
  CHECK(run(site, {"passwd", "nosuch", "--pop3"}, "pw\n").status == EX_NOUSER);
  CHECK(run(site, {"dialup", "sample", "--add", "2001:db8::/64"}).status == EX_OK);
  r = run(site, {"dialup", "sample"});
  CHECK(r.out == "192.0.2.7\n2001:db8::/64\n");
  CHECK(run(site, {"dialup", "sample", "--remove", "198.51.100.1"}).status == EX_DATAERR);
  CHECK(run(site, {"add", "o'brien"}).status == EX_DATAERR);  // not a host name: never reaches SQL
  CHECK(run(site, {"add", "other"}).status == EX_OK);
  r = run(site, {"list"});
  CHECK(r.status == EX_OK);
  CHECK(r.out ==
        "other\t-\tnone\n"
        "sample\t192.0.2.7,2001:db8::/64\tpop3\n");
  const auto sample = sdps::hostdb::open_admin(sdps::admin::hosts_location(site))->find("sample");
  REQUIRE(sample);
  CHECK(sdps::hostdb::verify_password(sample->pop3_hash, "pop3 pw"));

  // Export, then import into a second database: the same hosts.
  r = run(site, {"export"});
  REQUIRE(r.status == EX_OK);
  const std::string exported = r.out;
  ::umask(077);
  sdps::testing::write_text(dir / "exported", exported);
  auto copy = site;
  copy.hosts_uri = server().uri(server().create_database());
  REQUIRE(run(copy, {"init"}).status == EX_OK);
  r = run(copy, {"import", (dir / "exported").string()});
  REQUIRE(r.status == EX_OK);
  CHECK(r.out.find("2 host(s), 2 added, 0 changed, 0 removed") != std::string::npos);
  CHECK(run(copy, {"export"}).out == exported);
  // Importing replaces: the file's hosts, and no other.
  sdps::testing::write_text(dir / "replacement",
                            std::string("third - - -\n").append(two_hosts().substr(two_hosts().find("sample"))));
  r = run(copy, {"import", (dir / "replacement").string()});
  CHECK(r.out.find("2 host(s), 1 added, 1 changed, 1 removed") != std::string::npos);
  const std::string listed = run(copy, {"list"}).out;
  CHECK(listed.find("third") != std::string::npos);
  CHECK(listed.find("other") == std::string::npos);

  // A malformed row (written by hand) is skipped by list and export, and
  // refuses edits of its host.
  server().sql("UPDATE sdps_hosts SET pop3_hash = 'not a hash' WHERE name = 'other'", db);
  r = run(site, {"list"});
  CHECK(r.status == EX_DATAERR);
  CHECK(r.out.find("sample") == 0);
  CHECK(r.err.find("host other: its row in sdps_hosts") != std::string::npos);
  CHECK(r.err.find("pop3_hash is not an Argon2id hash string") != std::string::npos);
  CHECK(run(site, {"export"}).status == EX_DATAERR);
  CHECK(run(site, {"passwd", "other", "--pop3"}, "pw\n").status == EX_CONFIG);
  CHECK(run(site, {"del", "other"}).status == EX_OK);
  CHECK(run(site, {"del", "other"}).status == EX_NOUSER);
}

TEST_CASE("sdps host: a database that cannot be reached is a temporary failure", "[host-tool][pg]") {
  sdps::testing::temp_dir dir;
  auto site = site_in(dir);
  site.hosts.clear();
  site.hosts_uri =
      std::string("postgresql:///sdps?host=").append((dir / "no-server").string()).append("&port=5432&user=sdps");
  for (const auto& args : std::vector<std::vector<std::string>>{
           {"list"}, {"init"}, {"export"}, {"add", "sample"}, {"del", "sample"}, {"dialup", "sample"}}) {
    INFO(args[0]);
    const result r = run(site, args);
    CHECK(r.status == EX_TEMPFAIL);
    CHECK(r.err.find("cannot connect to the host database") != std::string::npos);
  }
}
