#include "config.hpp"

#include <catch2/catch.hpp>

#include <fstream>
#include <unistd.h>

using namespace sdps;
using namespace std::chrono_literals;

namespace {
std::filesystem::path write(const std::string& name, const std::string& text) {
  const auto dir = std::filesystem::temp_directory_path() / ("sdps-config-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  std::ofstream(dir / name) << text;
  return dir / name;
}
std::string error_of(const std::string& text) {
  try {
    core::load_config(write("bad.yaml", text));
  } catch (const config_error& e) {
    return e.what();
  }
  return "";
}
}  // namespace

TEST_CASE("durations") {
  std::chrono::milliseconds d{};
  CHECK((core::parse_duration("250ms", d) && d == 250ms));
  CHECK((core::parse_duration("30s", d) && d == 30s));
  CHECK((core::parse_duration("30", d) && d == 30s));
  CHECK((core::parse_duration("5m", d) && d == 5min));
  CHECK((core::parse_duration("2h", d) && d == 2h));
  CHECK_FALSE(core::parse_duration("-1s", d));
  CHECK_FALSE(core::parse_duration("1 s", d));
  CHECK_FALSE(core::parse_duration("s", d));
  CHECK_FALSE(core::parse_duration("99999999999999999999d", d));
}

TEST_CASE("listen addresses") {
  CHECK(core::parse_endpoint("127.0.0.1:1110").port() == 1110);
  CHECK(core::parse_endpoint("[::1]:0").address().is_v6());
  CHECK(core::parse_endpoint("*:110").address().to_string() == "0.0.0.0");
  CHECK_THROWS_AS(core::parse_endpoint("::1:110"), config_error);
  CHECK_THROWS_AS(core::parse_endpoint("127.0.0.1"), config_error);
  CHECK_THROWS_AS(core::parse_endpoint("127.0.0.1:99999"), config_error);
  CHECK_THROWS_AS(core::parse_endpoint("example.org:110"), config_error);
}

TEST_CASE("paths resolve against the config file's folder") {
  const auto file = write("paths.yaml", "hosts: ../var/hosts\nmodules:\n  - module: auth\n");
  const auto config = core::load_config(file);
  CHECK(config.globals->path("hosts") == (file.parent_path().parent_path() / "var" / "hosts"));
  CHECK(config.chain.at(0).where == "paths.yaml:3");
}

TEST_CASE("configuration errors name the file and line") {
  CHECK_THAT(error_of("modules: []\n"), Catch::Contains("'modules' must be a non-empty list"));
  CHECK_THAT(error_of("listen: [nowhere]\nmodules:\n  - module: x\n"), Catch::Contains("bad.yaml:1"));
  CHECK_THAT(error_of("idle_timeout: soon\nmodules:\n  - module: x\n"), Catch::Contains("'idle_timeout' must be a duration"));
  CHECK_THAT(error_of("colour: blue\nmodules:\n  - module: x\n"), Catch::Contains("unknown top-level setting 'colour'"));
  CHECK_THAT(error_of("modules:\n  - module: x\n    timeout: 0s\n"), Catch::Contains("'timeout' must be positive"));
  CHECK_THAT(error_of("modules: [\n"), Catch::Contains("bad.yaml:"));
}

TEST_CASE("trusted networks: prefixes, IPv4 seen as IPv6, bad input", "[config]") {
  using boost::asio::ip::make_address;
  const auto loopback = core::parse_network("127.0.0.0/8");
  CHECK(loopback.contains(make_address("127.0.0.1")));
  CHECK(loopback.contains(make_address("::ffff:127.9.9.9")));
  CHECK_FALSE(loopback.contains(make_address("10.0.0.1")));
  CHECK_FALSE(loopback.contains(make_address("::1")));
  const auto six = core::parse_network("::1/128");
  CHECK(six.contains(make_address("::1")));
  CHECK_FALSE(six.contains(make_address("::2")));
  CHECK(core::parse_network("10.1.2.3").contains(make_address("10.1.2.3")));
  CHECK_FALSE(core::parse_network("10.1.2.3").contains(make_address("10.1.2.4")));
  CHECK(core::parse_network("192.0.2.0/23").contains(make_address("192.0.3.255")));
  CHECK(core::parse_network("0.0.0.0/0").contains(make_address("203.0.113.9")));
  CHECK_THROWS_AS(core::parse_network("10.0.0.0/33"), config_error);
  CHECK_THROWS_AS(core::parse_network("example.com/8"), config_error);
  CHECK_THROWS_AS(core::parse_network("10.0.0.0/"), config_error);
}
