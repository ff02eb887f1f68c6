// The site part of a config, as every program reads it.

#include "config/site.hpp"

#include <catch2/catch.hpp>

#include <unistd.h>

using sdps::config_error;
using sdps::config::read_site;
using sdps::config::yaml_settings;

namespace {

const std::filesystem::path file = "/etc/sdps/sdps.yaml";

sdps::config::site site_of(const std::string& text) {
  const yaml_settings top(YAML::Load(text), file, "");
  return read_site(top);
}

}  // namespace

TEST_CASE("the site's defaults") {
  const auto s = site_of("listen: [127.0.0.1:110]\n");
  CHECK(s.config_file == file);
  CHECK(s.hosts.empty());
  CHECK(s.punts.empty());
  CHECK(s.customer_domain == "demon.co.uk");
  char name[256] = {};
  ::gethostname(name, sizeof name - 1);
  CHECK(s.server_name == (name[0] ? name : "localhost"));
  CHECK(s.user.empty());
  CHECK(s.password_cost == "interactive");
  CHECK(s.max_message_size == 50u << 20);
}

TEST_CASE("the site's settings, resolved against the file's folder") {
  const auto s = site_of(
      "hosts: ../../var/hosts\npunts:\n  finchley: ../spool/finchley\n  docklands: /srv/docklands\n"
      "customer_domain: .Example.NET\nserver_name: pop3.example.net\nuser: sdps\npassword_cost: moderate\n"
      "max_message_size: 1024\n");
  CHECK(s.hosts == "/var/hosts");
  REQUIRE(s.punts.size() == 2);
  CHECK(s.punts.at("finchley") == "/etc/spool/finchley");
  CHECK(s.punts.at("docklands") == "/srv/docklands");
  CHECK(s.customer_domain == "example.net");
  CHECK(s.server_name == "pop3.example.net");
  CHECK(s.user == "sdps");
  CHECK(s.password_cost == "moderate");
  CHECK(s.max_message_size == 1024);
}

TEST_CASE("the site's host store: a file, or a PostgreSQL URI kept as written") {
  const auto file_store = site_of("hosts: ../var/hosts\n");
  CHECK(file_store.hosts == "/etc/var/hosts");
  CHECK(file_store.hosts_uri.empty());
  for (const char* uri : {"postgresql://sdps@db1/sdps", "postgres:///sdps?host=/run/postgresql"}) {
    const auto database = site_of(std::string("hosts: ") + uri + "\n");
    CHECK(database.hosts.empty());
    CHECK(database.hosts_uri == uri);
  }
}

TEST_CASE("the site's keys count as read; bad values are refused with the line") {
  const yaml_settings top(YAML::Load("hosts: h\nuser: u\nlisten: x\n"), file, "");
  read_site(top);
  CHECK(top.unread() == std::vector<std::string>{"listen"});
  CHECK_THROWS_WITH(site_of("a: 1\nmax_message_size: 1023\n"),
                    "sdps.yaml:2: 'max_message_size' must be at least 1024 octets");
  CHECK_THROWS_WITH(site_of("punts: [a, b]\n"), "sdps.yaml:1: 'punts' must be a mapping");
  CHECK_THROWS_AS(site_of("hosts: [a]\n"), config_error);
}

TEST_CASE("the log settings: level, format, target and the syslog socket") {
  using namespace sdps::logging;
  const auto defaults = site_of("a: 1\n");
  CHECK(defaults.log.minimum == sdps::log_level::info);
  CHECK(defaults.log.format == format::text);
  CHECK_FALSE(defaults.log.target);  // chosen at start: the journal when stderr is the journal
  CHECK(defaults.log.facility == *parse_facility("mail"));
  CHECK(defaults.log.syslog_socket == "/dev/log");
  const auto s = site_of("log_level: debug\nlog_format: json\nlog_target: syslog\nsyslog_facility: local5\n"
                         "syslog_socket: ../run/log\n");
  CHECK(s.log.minimum == sdps::log_level::debug);
  CHECK(s.log.format == format::json);
  CHECK(s.log.target == target::syslog);
  CHECK(s.log.facility == *parse_facility("local5"));
  CHECK(s.log.syslog_socket == "/etc/run/log");
  CHECK_THROWS_WITH(site_of("a: 1\nlog_target: file\n"),
                    Catch::StartsWith("sdps.yaml:2: 'log_target' must be stderr, journal or syslog"));
  CHECK_THROWS_WITH(site_of("log_level: loud\n"), "sdps.yaml:1: 'log_level' must be debug, info, warning or error");
  CHECK_THROWS_WITH(site_of("syslog_facility: news\n"), Catch::StartsWith("sdps.yaml:1: 'syslog_facility' must be"));
}
