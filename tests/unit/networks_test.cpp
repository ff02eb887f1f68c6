// Address prefixes in server settings.

#include "networks.hpp"

#include <catch2/catch.hpp>

using sdps::core::network;
using boost::asio::ip::make_address;

namespace {
bool inside(const char* prefix, const char* address) {
  const auto n = network::parse(prefix);
  REQUIRE(n);
  return n->contains(make_address(address));
}
std::string canonical(const char* text) {
  const auto n = network::parse(text);
  return n ? n->to_string() : "<invalid>";
}
}  // namespace

TEST_CASE("a prefix holds the addresses under it, a bare address only itself") {
  CHECK(inside("10.0.0.0/24", "10.0.0.255"));
  CHECK_FALSE(inside("10.0.0.0/24", "10.0.1.0"));
  CHECK(inside("10.0.0.5", "10.0.0.5"));
  CHECK_FALSE(inside("10.0.0.5", "10.0.0.6"));
  CHECK(inside("0.0.0.0/0", "192.0.2.1"));
  CHECK(inside("2001:db8::/32", "2001:db8:ffff::1"));
  CHECK_FALSE(inside("2001:db8::/32", "2001:db9::1"));
  CHECK(inside("2001:db8::/33", "2001:db8:7fff::1"));
  CHECK_FALSE(inside("2001:db8::/33", "2001:db8:8000::1"));
}

TEST_CASE("IPv4 and IPv4-mapped IPv6 are one client") {
  CHECK(inside("127.0.0.0/8", "::ffff:127.0.0.1"));
  CHECK(inside("::ffff:10.0.0.0/104", "10.0.0.9"));
  CHECK(inside("::/0", "10.0.0.9"));
  CHECK_FALSE(inside("10.0.0.0/8", "::1"));
}

TEST_CASE("prefixes are canonical; anything else is refused") {
  CHECK(canonical("10.0.0.7/24") == "10.0.0.0/24");
  CHECK(canonical("10.0.0.7") == "10.0.0.7/32");
  CHECK(canonical("::ffff:10.0.0.7/120") == "10.0.0.0/24");
  CHECK(canonical("2001:db8::1/64") == "2001:db8::/64");
  for (const char* bad : {"", "10.0.0.0/33", "::/129", "10.0.0.0/", "10.0.0.0/-1", "10.0.0.0/ 8", "host.example",
                          "fe80::1%eth0", "10.0.0.0/8/8", "10.0.0.256"})
    CHECK(canonical(bad) == "<invalid>");
}
