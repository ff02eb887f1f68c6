// Address prefixes: parsed to a canonical form, matched against clients
// of either family.

#include "base/address_prefix.hpp"

#include <catch2/catch.hpp>

using boost::asio::ip::make_address;
using sdps::base::address_prefix;

namespace {

bool inside(const char* network, const char* address) {
  const auto p = address_prefix::parse(network);
  REQUIRE(p);
  return p->contains(make_address(address));
}

std::string canonical(const char* text) {
  const auto p = address_prefix::parse(text);
  return p ? p->to_string() : "<invalid>";
}

}  // namespace

TEST_CASE("prefix: addresses and prefixes parse to a canonical form", "[prefix]") {
  CHECK(canonical("192.0.2.7") == "192.0.2.7");
  CHECK(canonical("192.0.2.7/32") == "192.0.2.7");
  CHECK(canonical("192.0.2.7/24") == "192.0.2.0/24");
  CHECK(canonical("192.0.2.7/024") == "192.0.2.0/24");
  CHECK(canonical("10.1.2.3/0") == "0.0.0.0/0");
  CHECK(canonical("2001:DB8::1") == "2001:db8::1");
  CHECK(canonical("2001:db8::1/128") == "2001:db8::1");
  CHECK(canonical("2001:db8:1:2::7/64") == "2001:db8:1:2::/64");
  CHECK(canonical("2001:db8:1:3::7/63") == "2001:db8:1:2::/63");
  CHECK(canonical("::/0") == "::/0");
  // IPv4-mapped prefixes are IPv4 prefixes.
  CHECK(canonical("::ffff:192.0.2.7") == "192.0.2.7");
  CHECK(canonical("::ffff:192.0.2.7/120") == "192.0.2.0/24");
  CHECK(canonical("::ffff:192.0.2.7/96") == "0.0.0.0/0");
}

TEST_CASE("prefix: junk is refused", "[prefix]") {
  for (const char* junk : {"", "/", "/24", "192.0.2.1/", "192.0.2.1/33", "192.0.2.1/-1", "192.0.2.1/ 24",
                           " 192.0.2.1", "192.0.2.1 ", "192.0.2.256", "1.2.3", "192.0.2.1/24/8", "192.0.2.1/0024",
                           "::1/129", "::1/", "fe80::1%eth0", "fe80::1%1", "hello", "sample", "1.2.3.4.5",
                           "2001:db8::1::2", "192.0.2.1,192.0.2.2", "0x7f.0.0.1", "192.0.2.1/1e1"}) {
    INFO("'" << junk << "'");
    CHECK_FALSE(address_prefix::parse(junk));
  }
}

TEST_CASE("prefix: IPv4 matching", "[prefix]") {
  CHECK(inside("192.0.2.7", "192.0.2.7"));
  CHECK_FALSE(inside("192.0.2.7", "192.0.2.8"));
  CHECK(inside("192.0.2.7/32", "192.0.2.7"));
  CHECK(inside("192.0.2.0/24", "192.0.2.255"));
  CHECK_FALSE(inside("192.0.2.0/24", "192.0.3.0"));
  CHECK(inside("192.0.2.128/25", "192.0.2.200"));
  CHECK_FALSE(inside("192.0.2.128/25", "192.0.2.127"));
  CHECK(inside("0.0.0.0/0", "203.0.113.9"));
  CHECK(inside("0.0.0.0/0", "255.255.255.255"));
  // An IPv4 prefix never matches a real IPv6 client.
  CHECK_FALSE(inside("0.0.0.0/0", "2001:db8::1"));
  CHECK_FALSE(inside("0.0.0.0/0", "::1"));
}

TEST_CASE("prefix: IPv4 clients seen through a dual-stack listener (IPv4-mapped)", "[prefix]") {
  CHECK(inside("192.0.2.7", "::ffff:192.0.2.7"));
  CHECK_FALSE(inside("192.0.2.7", "::ffff:192.0.2.8"));
  CHECK(inside("192.0.2.0/24", "::ffff:192.0.2.99"));
  CHECK(inside("::ffff:192.0.2.7", "192.0.2.7"));
  CHECK(inside("::ffff:192.0.2.7", "::ffff:192.0.2.7"));
  CHECK(inside("0.0.0.0/0", "::ffff:10.0.0.1"));
}

TEST_CASE("prefix: IPv6 matching", "[prefix]") {
  CHECK(inside("2001:db8::1", "2001:db8::1"));
  CHECK(inside("2001:db8::1/128", "2001:db8::1"));
  CHECK_FALSE(inside("2001:db8::1/128", "2001:db8::2"));
  CHECK(inside("2001:db8::/32", "2001:db8:ffff::1"));
  CHECK_FALSE(inside("2001:db8::/32", "2001:db9::1"));
  CHECK(inside("2001:db8:0:1::/64", "2001:db8:0:1:abcd::1"));
  CHECK_FALSE(inside("2001:db8:0:1::/64", "2001:db8:0:2::1"));
  CHECK(inside("2001:db8::/33", "2001:db8:7fff::1"));
  CHECK_FALSE(inside("2001:db8::/33", "2001:db8:8000::1"));
  CHECK(inside("::/0", "2001:db8::1"));
  CHECK(inside("::1", "::1"));
  CHECK_FALSE(inside("2001:db8::/32", "192.0.2.1"));
  // ::/0 means every address, IPv4 included, whichever listener took the call.
  CHECK(inside("::/0", "192.0.2.1"));
  CHECK(inside("::/0", "::ffff:192.0.2.1"));
}

TEST_CASE("prefix: what it is made of", "[prefix]") {
  const auto v4 = *address_prefix::parse("192.0.2.7/24");
  CHECK(v4.is_v4());
  CHECK(v4.network() == make_address("192.0.2.0"));
  CHECK(v4.length() == 24);
  CHECK_FALSE(v4.single_address());
  CHECK(address_prefix::parse("192.0.2.7")->single_address());
  CHECK(address_prefix::parse("2001:db8::1")->single_address());
  const auto v6 = *address_prefix::parse("2001:db8::1/64");
  CHECK_FALSE(v6.is_v4());
  CHECK(v6.network() == make_address("2001:db8::"));
  CHECK(v6 == *address_prefix::parse("2001:db8::/64"));
  CHECK_FALSE(v6 == *address_prefix::parse("2001:db8::/65"));
  // Built from Asio's networks, canonical as parse() makes them.
  using boost::asio::ip::make_network_v4;
  using boost::asio::ip::make_network_v6;
  CHECK(address_prefix(make_network_v4("10.1.2.3/8")).to_string() == "10.0.0.0/8");
  CHECK(address_prefix(make_network_v6("::ffff:10.1.2.3/104")) == *address_prefix::parse("10.0.0.0/8"));
  CHECK(address_prefix(make_network_v6("fe80::1%1/64")) == *address_prefix::parse("fe80::/64"));
}

TEST_CASE("prefix: a client's scope id plays no part", "[prefix]") {
  CHECK(inside("fe80::/10", "fe80::1%1"));
  CHECK(inside("fe80::1", "fe80::1%2"));
}

TEST_CASE("prefix: a list holds what any of its prefixes holds", "[prefix]") {
  const std::vector<address_prefix> trusted{*address_prefix::parse("127.0.0.0/8"), *address_prefix::parse("::1")};
  CHECK(contains(trusted, make_address("127.0.0.1")));
  CHECK(contains(trusted, make_address("::ffff:127.0.0.1")));
  CHECK(contains(trusted, make_address("::1")));
  CHECK_FALSE(contains(trusted, make_address("10.0.0.1")));
  CHECK_FALSE(contains(std::vector<address_prefix>{}, make_address("127.0.0.1")));
}

TEST_CASE("prefix: IPv4-mapped prefixes and clients are IPv4", "[prefix]") {
  CHECK(inside("127.0.0.0/8", "::ffff:127.0.0.1"));
  CHECK(inside("::ffff:10.0.0.0/104", "10.0.0.9"));
  CHECK(canonical("::ffff:10.0.0.0/104") == "10.0.0.0/8");
  CHECK(inside("::/0", "10.0.0.9"));
  CHECK_FALSE(inside("10.0.0.0/8", "::1"));
  // Below 96 bits a mapped prefix is an IPv6 one.
  CHECK(canonical("::ffff:10.0.0.0/95") == "::fffe:0:0/95");
  CHECK(inside("::ffff:10.0.0.0/95", "10.1.2.3"));
}
