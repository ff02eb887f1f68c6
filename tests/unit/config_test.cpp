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

TEST_CASE("listen addresses: ADDRESS:PORT, [IPv6]:PORT, *:PORT, any port") {
  CHECK(core::parse_listen_endpoint("127.0.0.1:1110").port() == 1110);
  CHECK(core::parse_listen_endpoint("[::1]:0").address().is_v6());
  CHECK(core::parse_listen_endpoint("*:110").address().to_string() == "0.0.0.0");
  CHECK_THROWS_WITH(core::parse_listen_endpoint("::1:110"), "'::1:110': write IPv6 as [ADDRESS]:PORT");
  CHECK_THROWS_AS(core::parse_listen_endpoint("127.0.0.1"), config_error);
  CHECK_THROWS_AS(core::parse_listen_endpoint("127.0.0.1:99999"), config_error);
  CHECK_THROWS_AS(core::parse_listen_endpoint("example.org:110"), config_error);
}

TEST_CASE("paths resolve against the config file's folder") {
  const auto file = write("paths.yaml", "hosts: ../var/hosts\nmodules:\n  - module: auth\n");
  const auto config = core::load_config(file);
  CHECK(config.globals->path("hosts") == (file.parent_path().parent_path() / "var" / "hosts"));
  CHECK(config.site.hosts == (file.parent_path().parent_path() / "var" / "hosts"));
  CHECK(config.chain.at(0).where == "paths.yaml:3");
}

TEST_CASE("configuration errors name the file and line") {
  CHECK_THAT(error_of("modules: []\n"), Catch::Contains("'modules' must be a non-empty list"));
  CHECK_THAT(error_of("listen: [nowhere]\nmodules:\n  - module: x\n"), Catch::Contains("bad.yaml:1"));
  CHECK_THAT(error_of("idle_timeout: soon\nmodules:\n  - module: x\n"), Catch::Contains("'idle_timeout' must be a duration"));
  CHECK_THAT(error_of("modules:\n  - module: x\n    timeout: 0s\n"),
             Catch::Contains("bad.yaml:3: 'timeout' must be a duration above 0 such as"));
  CHECK_THAT(error_of("listen: [127.0.0.1:110]\nlisten: [127.0.0.1:111]\nmodules:\n  - module: x\n"),
             Catch::Contains("bad.yaml:2: 'listen' is set twice (first at line 1)"));
  // Found by the config fuzz target: a server with nothing to listen on.
  CHECK_THAT(error_of("modules:\n  - module: x\nlisten: []\n"),
             Catch::Contains("bad.yaml:3: listen: an empty list: name at least one ADDRESS:PORT"));
  CHECK_THAT(error_of("listen: [\"127.0.0.1\"]\nmodules:\n  - module: x\n"),
             Catch::Contains("bad.yaml:1: listen: '127.0.0.1' is not ADDRESS:PORT"));
  CHECK_THAT(error_of("max_message_size: 10\nmodules:\n  - module: x\n"),
             Catch::Contains("bad.yaml:1: 'max_message_size' must be at least 1024 octets"));
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
  CHECK_THAT(error_of("proxy_protocol_timeout: 0s\nmodules:\n  - module: x\n"),
             Catch::Contains("'proxy_protocol_timeout' must be a duration above 0"));
}

TEST_CASE("TLS, listeners and the plaintext policy from the file", "[config]") {
  using boost::asio::ip::make_address;
  const auto plain = core::load_config(write("plain.yaml", "modules:\n  - module: x\n"));
  CHECK_FALSE(plain.tls);
  CHECK(plain.plaintext_auth == core::plaintext_policy::tls_or_trusted);
  CHECK(base::contains(plain.trusted_networks, make_address("127.0.0.1")));
  CHECK(base::contains(plain.trusted_networks, make_address("::1")));
  CHECK_FALSE(base::contains(plain.trusted_networks, make_address("10.0.0.1")));
  const auto tls = core::load_config(
      write("tls.yaml", "tls: {certificate: c.pem, key: k.pem, handshake_timeout: 5s}\n"
                        "listen: [127.0.0.1:110, {address: 127.0.0.1:995, tls: implicit}]\n"
                        "plaintext_auth: always\ntrusted_networks: [10.0.0.0/8]\nmodules:\n  - module: x\n"));
  REQUIRE(tls.tls);
  CHECK(tls.tls->certificate.filename() == "c.pem");
  CHECK(tls.tls->handshake_timeout == 5s);
  CHECK(tls.tls->ticket_key_rotation == 1h);
  REQUIRE(tls.listen.size() == 2);
  CHECK_FALSE(tls.listen[0].implicit_tls);
  CHECK(tls.listen[1].implicit_tls);
  CHECK(tls.plaintext_auth == core::plaintext_policy::always);
  CHECK(base::contains(tls.trusted_networks, make_address("10.9.9.9")));
  CHECK_THAT(error_of("plaintext_auth: never\nmodules:\n  - module: x\n"), Catch::Contains("plaintext_auth"));
  CHECK_THAT(error_of("trusted_networks: [nowhere]\nmodules:\n  - module: x\n"), Catch::Contains("not an address"));
  CHECK_THAT(error_of("tls: {certificate: c.pem, key: k.pem, colour: red}\nmodules:\n  - module: x\n"),
             Catch::Contains("colour"));
  const auto rotated = core::load_config(
      write("rotated.yaml", "tls: {certificate: c.pem, key: k.pem, ticket_key_rotation: 6h}\nmodules:\n  - module: x\n"));
  REQUIRE(rotated.tls);
  CHECK(rotated.tls->ticket_key_rotation == 6h);
  CHECK_THAT(error_of("tls: {certificate: c.pem, key: k.pem, ticket_key_rotation: 500ms}\nmodules:\n  - module: x\n"),
             Catch::Contains("'ticket_key_rotation' must be at least 1s"));
}

TEST_CASE("metrics_allow: loopback by default, a warning for a non-loopback metrics_listen") {
  const auto plain = core::load_config(write("m1.yaml", "metrics_listen: 127.0.0.1:9110\nmodules:\n  - module: x\n"));
  REQUIRE(plain.metrics_allow.size() == 2);
  CHECK(plain.metrics_allow[0].to_string() == "127.0.0.0/8");
  CHECK(plain.metrics_allow[1].to_string() == "::1");
  CHECK(plain.warnings.empty());
  CHECK(core::load_config(write("m2.yaml", "metrics_listen: \"[::1]:9110\"\nmodules:\n  - module: x\n"))
            .warnings.empty());

  for (const char* where : {"0.0.0.0:9110", "\"[::]:9110\"", "192.0.2.7:9110"}) {
    const auto open = core::load_config(
        write("m3.yaml", std::string("metrics_listen: ").append(where).append("\nmodules:\n  - module: x\n")));
    REQUIRE(open.warnings.size() == 1);
    CHECK_THAT(open.warnings[0], Catch::Contains("is not a loopback address") &&
                                     Catch::Contains("only loopback clients are answered") &&
                                     Catch::Contains("metrics_allow"));
  }
  const auto listed = core::load_config(
      write("m4.yaml", "metrics_listen: 0.0.0.0:9110\nmetrics_allow: [10.1.0.0/16, 192.0.2.7]\nmodules:\n  - module: x\n"));
  REQUIRE(listed.metrics_allow.size() == 2);
  CHECK(base::contains(listed.metrics_allow, asio::ip::make_address("10.1.2.3")));
  CHECK(base::contains(listed.metrics_allow, asio::ip::make_address("::ffff:192.0.2.7")));
  CHECK_FALSE(base::contains(listed.metrics_allow, asio::ip::make_address("127.0.0.1")));
  REQUIRE(listed.warnings.size() == 1);
  CHECK_THAT(listed.warnings[0], Catch::Contains("(10.1.0.0/16, 192.0.2.7)"));

  CHECK_THAT(error_of("metrics_listen: 127.0.0.1:0\nmetrics_allow: [10.1.0.0/16, prometheus]\nmodules:\n  - module: x\n"),
             Catch::Contains("bad.yaml:2") && Catch::Contains("'prometheus' is not an address"));
  CHECK_THAT(error_of("metrics_allow: [10.1.0.0/16]\nmodules:\n  - module: x\n"),
             Catch::Contains("bad.yaml:1") && Catch::Contains("'metrics_listen:', which is not set"));
}
