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

TEST_CASE("proxy_protocol_from: addresses and prefixes, refused with file and line") {
  const auto config = core::load_config(
      write("proxy.yaml", "proxy_protocol_from: [10.0.0.5, 10.1.0.0/16, \"2001:db8::/32\"]\n"
                          "proxy_protocol_timeout: 2s\nmodules:\n  - module: x\n"));
  REQUIRE(config.proxy_protocol_from.size() == 3);
  CHECK(config.proxy_protocol_from[1].to_string() == "10.1.0.0/16");
  CHECK(config.proxy_protocol_timeout == 2s);
  CHECK(core::load_config(write("none.yaml", "modules:\n  - module: x\n")).proxy_protocol_from.empty());
  CHECK_THAT(error_of("proxy_protocol_from: [balancer.example]\nmodules:\n  - module: x\n"),
             Catch::Contains("bad.yaml:1") && Catch::Contains("not an address"));
  CHECK_THAT(error_of("proxy_protocol_from: [10.0.0.0/33]\nmodules:\n  - module: x\n"),
             Catch::Contains("not an address"));
  CHECK_THAT(error_of("proxy_protocol_timeout: 0s\nmodules:\n  - module: x\n"), Catch::Contains("must be positive"));
}

TEST_CASE("TLS, listeners and the plaintext policy from the file", "[config]") {
  using boost::asio::ip::make_address;
  const auto plain = core::load_config(write("plain.yaml", "modules:\n  - module: x\n"));
  CHECK_FALSE(plain.tls);
  CHECK(plain.plaintext_auth == core::plaintext_policy::tls_or_trusted);
  CHECK(core::contains(plain.trusted_networks, make_address("127.0.0.1")));
  CHECK(core::contains(plain.trusted_networks, make_address("::1")));
  CHECK_FALSE(core::contains(plain.trusted_networks, make_address("10.0.0.1")));
  const auto tls = core::load_config(
      write("tls.yaml", "tls: {certificate: c.pem, key: k.pem, handshake_timeout: 5s}\n"
                        "listen: [127.0.0.1:110, {address: 127.0.0.1:995, tls: implicit}]\n"
                        "plaintext_auth: always\ntrusted_networks: [10.0.0.0/8]\nmodules:\n  - module: x\n"));
  REQUIRE(tls.tls);
  CHECK(tls.tls->certificate.filename() == "c.pem");
  CHECK(tls.tls->handshake_timeout == 5s);
  REQUIRE(tls.listen.size() == 2);
  CHECK_FALSE(tls.listen[0].implicit_tls);
  CHECK(tls.listen[1].implicit_tls);
  CHECK(tls.plaintext_auth == core::plaintext_policy::always);
  CHECK(core::contains(tls.trusted_networks, make_address("10.9.9.9")));
  CHECK_THAT(error_of("plaintext_auth: never\nmodules:\n  - module: x\n"), Catch::Contains("plaintext_auth"));
  CHECK_THAT(error_of("trusted_networks: [nowhere]\nmodules:\n  - module: x\n"), Catch::Contains("not an address"));
  CHECK_THAT(error_of("tls: {certificate: c.pem, key: k.pem, colour: red}\nmodules:\n  - module: x\n"),
             Catch::Contains("colour"));
}
