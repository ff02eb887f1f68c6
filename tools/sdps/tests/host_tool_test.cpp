// `sdps host ...` (tools/sdps/host.cpp) called in-process: arguments in,
// exit status, stdout and stderr out; the password through a pipe on fd 0.

#include "admin.hpp"
#include "run_host.hpp"
#include "hostdb/hostdb.hpp"
#include "support/temp_dir.hpp"

#include <catch2/catch.hpp>
#include <sodium.h>
#include <sysexits.h>
#include <unistd.h>

#include <iostream>
#include <sstream>

using sdps::admin::host_main;

namespace {

using sdps::admin::testing::result;

/// Runs `sdps host ARGS...` with `input` on stdin.
result run(const sdps::admin::site& s, const std::vector<std::string>& args, const std::string& input = "") {
  return sdps::admin::testing::run_host(s, args, input);
}

struct tool_fixture {
  tool_fixture() {
    REQUIRE(sodium_init() >= 0);
    site.config_file = dir / "config" / "sdps.yaml";
    site.hosts = dir / "var" / "hosts";
    site.customer_domain = "demon.co.uk";
    site.password_cost = "min";
  }
  sdps::testing::temp_dir dir;
  sdps::admin::site site;
};

}  // namespace

TEST_CASE("sdps host: add, passwd, list, del", "[host-tool]") {
  tool_fixture f;
  result r = run(f.site, {"list"});
  CHECK(r.status == EX_OK);
  CHECK(r.out.empty());

  r = run(f.site, {"add", "Sample.Demon.Co.UK", "--dialup-ip", "192.0.2.7", "--dialup-ip=2001:db8:7::1/48"});
  CHECK(r.status == EX_OK);
  CHECK(r.out.find("added host sample") != std::string::npos);
  CHECK(r.out.find("192.0.2.7,2001:db8:7::/48") != std::string::npos);

  r = run(f.site, {"add", "sample"});
  CHECK(r.status == EX_DATAERR);
  CHECK(r.err.rfind("sdps: ", 0) == 0);
  CHECK(r.err.find("already exists") != std::string::npos);

  r = run(f.site, {"passwd", "sample", "--pop3"}, "pop3 secret \r\n");
  CHECK(r.status == EX_OK);
  r = run(f.site, {"passwd", "sample.demon.co.uk", "--dialup"}, "dial pw");  // no newline at EOF
  CHECK(r.status == EX_OK);

  const auto db = sdps::hostdb::load(f.site.hosts);
  REQUIRE(db.hosts.find("sample"));
  // Only the line end is stripped: the trailing space is part of the password.
  CHECK(sdps::hostdb::verify_password(db.hosts.find("sample")->pop3_hash, "pop3 secret "));
  CHECK_FALSE(sdps::hostdb::verify_password(db.hosts.find("sample")->pop3_hash, "pop3 secret"));
  CHECK(sdps::hostdb::verify_password(db.hosts.find("sample")->dialup_hash, "dial pw"));

  CHECK(run(f.site, {"add", "nopw"}).status == EX_OK);
  r = run(f.site, {"list"});
  CHECK(r.status == EX_OK);
  CHECK(r.out ==
        "nopw\t-\tnone\n"
        "sample\t192.0.2.7,2001:db8:7::/48\tdialup,pop3\n");
  CHECK(r.out.find("argon2") == std::string::npos);

  r = run(f.site, {"del", "sample"});
  CHECK(r.status == EX_OK);
  CHECK(r.out.find("stays in the spools") != std::string::npos);
  CHECK_FALSE(sdps::hostdb::host_exists(f.site.hosts, "sample"));
  CHECK(run(f.site, {"del", "sample"}).status == EX_NOUSER);
}

TEST_CASE("sdps host: bad input gets the documented exit statuses", "[host-tool]") {
  tool_fixture f;
  REQUIRE(run(f.site, {"add", "sample"}).status == EX_OK);
  CHECK(run(f.site, {}).status == EX_USAGE);
  CHECK(run(f.site, {"frobnicate"}).status == EX_USAGE);
  CHECK(run(f.site, {"add"}).status == EX_USAGE);
  CHECK(run(f.site, {"add", "a", "b"}).status == EX_USAGE);
  CHECK(run(f.site, {"add", "x", "--dialup-ip"}).status == EX_USAGE);
  CHECK(run(f.site, {"add", "x", "--bogus"}).status == EX_USAGE);
  CHECK(run(f.site, {"add", "sample.example.com"}).status == EX_DATAERR);
  CHECK(run(f.site, {"add", "bad_name"}).status == EX_DATAERR);
  CHECK(run(f.site, {"add", "x", "--dialup-ip", "192.0.2.300"}).status == EX_DATAERR);
  CHECK(run(f.site, {"list", "extra"}).status == EX_USAGE);
  CHECK(run(f.site, {"del"}).status == EX_USAGE);

  CHECK(run(f.site, {"passwd", "sample"}, "pw\n").status == EX_USAGE);
  CHECK(run(f.site, {"passwd", "sample", "--pop3", "--dialup"}, "pw\n").status == EX_USAGE);
  CHECK(run(f.site, {"passwd", "nosuch", "--pop3"}, "pw\n").status == EX_NOUSER);
  CHECK(run(f.site, {"passwd", "sample", "--pop3"}, "").status == EX_NOINPUT);
  CHECK(run(f.site, {"passwd", "sample", "--pop3"}, "\n").status == EX_DATAERR);
  CHECK(run(f.site, {"passwd", "sample", "--pop3"}, "\r\n").status == EX_DATAERR);
  CHECK(run(f.site, {"passwd", "sample", "--pop3"}, "a\x01" "b\n").status == EX_DATAERR);
  CHECK(run(f.site, {"passwd", "sample", "--pop3"}, std::string(506, 'p') + "\n").status == EX_DATAERR);
  CHECK(run(f.site, {"passwd", "sample", "--pop3"}, std::string(505, 'p') + "\n").status == EX_OK);
  // None of the refused passwords was stored.
  CHECK(sdps::hostdb::verify_password(sdps::hostdb::load(f.site.hosts).hosts.find("sample")->pop3_hash,
                                      std::string(505, 'p')));

  f.site.password_cost = "cheap";
  CHECK(run(f.site, {"passwd", "sample", "--pop3"}, "pw\n").status == EX_CONFIG);
}

TEST_CASE("sdps host: a malformed database is listed with warnings and never rewritten", "[host-tool]") {
  tool_fixture f;
  std::filesystem::create_directories(f.site.hosts.parent_path());
  const std::string text = "sample - - -\nbroken line\n";
  sdps::testing::write_text(f.site.hosts, text);
  result r = run(f.site, {"list"});
  CHECK(r.status == EX_DATAERR);
  CHECK(r.out.find("sample") == 0);
  CHECK(r.err.find("hosts:2:") != std::string::npos);
  r = run(f.site, {"add", "other"});
  CHECK(r.status == EX_CONFIG);
  CHECK(r.err.find("fix them by hand") != std::string::npos);
  CHECK(run(f.site, {"del", "sample"}).status == EX_CONFIG);
  CHECK(sdps::testing::read_text(f.site.hosts) == text);
}

TEST_CASE("sdps host: --help on the group and on each subcommand needs no config", "[host-tool]") {
  sdps::admin::site none;  // never read: a tool without -c would throw if asked for it
  for (const std::vector<std::string>& args :
       std::vector<std::vector<std::string>>{{"--help"}, {"-h"}, {"add", "--help"}, {"passwd", "-h"},
                                             {"dialup", "--help"}, {"del", "--help"}, {"list", "--help"},
                                             {"add", "--bogus", "--help"}}) {
    std::ostringstream out, err;
    auto* old_out = std::cout.rdbuf(out.rdbuf());
    auto* old_err = std::cerr.rdbuf(err.rdbuf());
    sdps::admin::tool tool{std::filesystem::path()};
    const int status = host_main(tool, args);
    std::cout.rdbuf(old_out);
    std::cerr.rdbuf(old_err);
    INFO(args.front() << (args.size() > 1 ? " " + args[1] : std::string()));
    CHECK(status == EX_OK);
    CHECK(out.str().rfind("usage: sdps -c FILE host ", 0) == 0);
    CHECK(err.str().empty());
  }
}

TEST_CASE("sdps host: a usage error says what is wrong in one line, then the usage", "[host-tool]") {
  tool_fixture f;
  result r = run(f.site, {"add", "x", "--bogus"});
  CHECK(r.status == EX_USAGE);
  CHECK(r.err.rfind("sdps: host add: unrecognised option '--bogus'\nusage: sdps -c FILE host add HOST", 0) == 0);
  r = run(f.site, {"del"});
  CHECK(r.err.rfind("sdps: host del: needs HOST\n", 0) == 0);
  r = run(f.site, {"frob"});
  CHECK(r.err.rfind("sdps: host: unknown subcommand 'frob'\nusage: ", 0) == 0);
  // Abbreviations are not guessed.
  CHECK(run(f.site, {"add", "x", "--dialup", "192.0.2.1"}).status == EX_USAGE);
}
