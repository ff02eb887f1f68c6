// Endpoints: ADDRESS:PORT, [IPv6]:PORT, *:PORT and NAME:PORT, as each
// caller's rules allow.

#include "base/endpoint.hpp"

#include <catch2/catch.hpp>

#include <stdexcept>

using sdps::base::endpoint;
using sdps::base::endpoint_host;
using sdps::base::endpoint_rules;
using sdps::base::parse_endpoint;

namespace {

const endpoint_rules listener{endpoint_host::address, true, true, 0};
const endpoint_rules smtp_target{endpoint_host::address, false, false, 25};
const endpoint_rules backend{endpoint_host::name, false, false, 0};

std::string error_of(const std::string& text, const endpoint_rules& rules) {
  try {
    parse_endpoint(text, rules);
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "(accepted)";
}

}  // namespace

TEST_CASE("listeners: literal addresses, the IPv4 wildcard, any port") {
  CHECK(parse_endpoint("127.0.0.1:1110", listener) == endpoint{"127.0.0.1", 1110});
  CHECK(parse_endpoint("[::1]:0", listener) == endpoint{"::1", 0});
  CHECK(parse_endpoint("[::]:110", listener).tcp().address().is_v6());
  CHECK(parse_endpoint("*:110", listener) == endpoint{"0.0.0.0", 110});
  CHECK(parse_endpoint("localhost:110", listener) == endpoint{"127.0.0.1", 110});
  CHECK(parse_endpoint("[127.0.0.1]:110", listener) == endpoint{"127.0.0.1", 110});
  CHECK(parse_endpoint("[2001:DB8::0001]:995", listener).host == "2001:db8::1");  // Asio's text form
  const auto tcp = parse_endpoint("192.0.2.7:65535", listener).tcp();
  CHECK(tcp.address().to_string() == "192.0.2.7");
  CHECK(tcp.port() == 65535);
}

TEST_CASE("listeners: everything else is refused with what is wrong") {
  CHECK(error_of("127.0.0.1", listener) == "'127.0.0.1' is not ADDRESS:PORT");
  CHECK(error_of("", listener) == "'' is not ADDRESS:PORT");
  CHECK(error_of(":110", listener) == "':110' is not ADDRESS:PORT");
  CHECK(error_of("[::1", listener) == "'[::1' is not ADDRESS:PORT");
  CHECK(error_of("[::1]110", listener) == "'[::1]110' is not ADDRESS:PORT");
  CHECK(error_of("::1:110", listener) == "'::1:110': write IPv6 as [ADDRESS]:PORT");
  CHECK(error_of("127.0.0.1:99999", listener) == "'127.0.0.1:99999': the port must be 0 to 65535");
  CHECK(error_of("127.0.0.1:", listener) == "'127.0.0.1:': the port must be 0 to 65535");
  CHECK(error_of("127.0.0.1:+1", listener) == "'127.0.0.1:+1': the port must be 0 to 65535");
  CHECK(error_of("127.0.0.1:000110", listener) == "'127.0.0.1:000110': the port must be 0 to 65535");
  CHECK(error_of("example.org:110", listener) == "'example.org:110': 'example.org' is not an IP address");
  CHECK(error_of("[*]:110", listener) == "'[*]:110': '*' is not an IP address");
  CHECK(error_of("10.0.0.256:110", listener) == "'10.0.0.256:110': '10.0.0.256' is not an IP address");
  CHECK(error_of("[fe80::1%1]:110", listener) == "'[fe80::1%1]:110': 'fe80::1%1' is not an IP address");
  CHECK(error_of("a\tb:1", listener) == "'a\\x09b:1': 'a\\x09b' is not an IP address");  // made printable
}

TEST_CASE("SMTP targets: literal addresses, port 25 unless given, never port 0") {
  CHECK(parse_endpoint("127.0.0.1:2525", smtp_target) == endpoint{"127.0.0.1", 2525});
  CHECK(parse_endpoint("192.0.2.7", smtp_target) == endpoint{"192.0.2.7", 25});
  CHECK(parse_endpoint("::1", smtp_target) == endpoint{"::1", 25});
  CHECK(parse_endpoint("[::1]", smtp_target) == endpoint{"::1", 25});
  CHECK(parse_endpoint("[::1]:24", smtp_target).to_string() == "[::1]:24");
  CHECK(error_of("127.0.0.1:0", smtp_target) == "'127.0.0.1:0': the port must be 1 to 65535");
  CHECK(error_of("*:25", smtp_target) == "'*:25': '*' is not an IP address");
  CHECK(error_of("mx.example.com:25", smtp_target) == "'mx.example.com:25': 'mx.example.com' is not an IP address");
}

TEST_CASE("back ends: host names too, resolved by the caller") {
  CHECK(parse_endpoint("punt1.example.net:110", backend) == endpoint{"punt1.example.net", 110});
  CHECK_FALSE(parse_endpoint("punt1.example.net:110", backend).address());
  CHECK_THROWS_AS(parse_endpoint("punt1.example.net:110", backend).tcp(), std::invalid_argument);
  CHECK(parse_endpoint("localhost:1111", backend) == endpoint{"localhost", 1111});  // a name: the resolver's
  CHECK(parse_endpoint("127.0.0.1:1111", backend).address());
  CHECK(parse_endpoint("[::1]:1112", backend) == endpoint{"::1", 1112});
  for (const char* bad : {"", "127.0.0.1", "127.0.0.1:", ":1111", "127.0.0.1:0", "127.0.0.1:65536", "::1:1111",
                          "[::1]1111", "[::1]:", "host:port", "[host]:1", "a b:1", "-a:1", "a..b:1", ".a:1",
                          "10.0.0.300:1", "*:1"}) {
    INFO("'" << bad << "'");
    CHECK_THROWS_AS(parse_endpoint(bad, backend), std::invalid_argument);
  }
  CHECK(error_of("127.0.0.1", backend) == "'127.0.0.1' is not HOST:PORT");
  CHECK(error_of("a b:1", backend) == "'a b:1': 'a b' is not a host name or an IP address");
}

TEST_CASE("to_string reads back as the same endpoint") {
  for (const char* text : {"127.0.0.1:1", "[::1]:65535", "[2001:db8::1]:0", "punt1.example.net:110"}) {
    INFO(text);
    const endpoint e = parse_endpoint(text, {endpoint_host::name, false, true, 0});
    CHECK(e.to_string() == text);
    CHECK(parse_endpoint(e.to_string(), {endpoint_host::name, false, true, 0}) == e);
  }
}
