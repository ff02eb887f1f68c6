// The PROXY protocol header parser (HAProxy's proxy-protocol.txt, v1 and v2).

#include "proxy_header.hpp"

#include <catch2/catch.hpp>

#include <cstdint>
#include <string>
#include <vector>

using namespace sdps::proxy;
using boost::asio::ip::make_address;

namespace {

std::string address(const result& r) {
  if (!r.value.source) return "-";
  std::ostringstream out;
  out << *r.value.source << " -> " << *r.value.destination;
  return out.str();
}

std::string be16(std::size_t n) { return {static_cast<char>(n >> 8), static_cast<char>(n & 0xff)}; }

std::string tlv(std::uint8_t type, const std::string& value) {
  return std::string(1, static_cast<char>(type)) + be16(value.size()) + value;
}

/// A v2 header: command (0 LOCAL, 1 PROXY), family/transport octet, block.
std::string v2(unsigned cmd, std::uint8_t family, const std::string& block, std::uint8_t version = 2) {
  std::string out(v2_signature);
  out += static_cast<char>((version << 4) | cmd);
  out += static_cast<char>(family);
  out += be16(block.size());
  return out + block;
}

std::string bytes(std::initializer_list<int> list) {
  std::string out;
  for (int b : list) out += static_cast<char>(b);
  return out;
}

/// 192.0.2.7:51000 -> 10.0.0.1:110, as a TCP4 address block.
const std::string inet_block = bytes({192, 0, 2, 7, 10, 0, 0, 1, 0xc7, 0x38, 0, 110});

std::string inet6_block() {
  std::string out;
  for (const char* a : {"2001:db8::7", "2001:db8::1"}) {
    const auto b = make_address(a).to_v6().to_bytes();
    out.append(reinterpret_cast<const char*>(b.data()), b.size());
  }
  return out + bytes({0xc7, 0x38, 0, 110});
}

}  // namespace

// --- version 1 ---------------------------------------------------------------

TEST_CASE("v1 TCP4: the client and the address it reached; what follows is the client's") {
  const std::string line = "PROXY TCP4 192.0.2.7 10.0.0.1 51000 110\r\n";
  const auto r = parse(line + "CAPA\r\n");
  REQUIRE(r.state == status::complete);
  CHECK(r.length == line.size());
  CHECK(r.value.version == 1);
  CHECK(r.value.cmd == command::proxy);
  CHECK(address(r) == "192.0.2.7:51000 -> 10.0.0.1:110");
}

TEST_CASE("v1 TCP6, and an IPv4-mapped source is IPv4") {
  auto r = parse("PROXY TCP6 2001:db8::7 2001:db8::1 51000 110\r\n");
  REQUIRE(r.state == status::complete);
  CHECK(address(r) == "[2001:db8::7]:51000 -> [2001:db8::1]:110");
  r = parse("PROXY TCP6 ::ffff:192.0.2.7 ::1 1 0\r\n");
  REQUIRE(r.state == status::complete);
  CHECK(r.value.source->address() == make_address("192.0.2.7"));
}

TEST_CASE("v1 UNKNOWN: complete, no address, the rest of its line ignored") {
  for (const std::string line : {"PROXY UNKNOWN\r\n", "PROXY UNKNOWN ffff::1 ffff::2 65535 65535\r\n"}) {
    const auto r = parse(line);
    REQUIRE(r.state == status::complete);
    CHECK(r.length == line.size());
    CHECK_FALSE(r.value.source);
  }
}

TEST_CASE("v1: the longest legal line is 107 octets, CRLF included") {
  std::string line = "PROXY UNKNOWN " + std::string(107 - 16, 'x') + "\r\n";
  REQUIRE(line.size() == 107);
  CHECK(parse(line).state == status::complete);
  line.insert(14, "x");
  CHECK(parse(line).state == status::invalid);
  // Without CRLF: incomplete up to 106 octets, invalid from 107.
  CHECK(parse(line.substr(0, 106)).state == status::incomplete);
  CHECK(parse(line.substr(0, 107)).state == status::invalid);
  CHECK(parse(std::string("PROXY ") + std::string(4000, 'A')).state == status::invalid);
}

TEST_CASE("v1: every truncation of a valid line is incomplete, never invalid") {
  const std::string line = "PROXY TCP6 2001:db8::7 2001:db8::1 51000 110\r\n";
  for (std::size_t n = 0; n < line.size(); ++n) {
    INFO(n);
    CHECK(parse(line.substr(0, n)).state == status::incomplete);
  }
}

TEST_CASE("v1: malformed lines are invalid") {
  for (const std::string line : {
           "PROXY TCP4 192.0.2.7 10.0.0.1 51000 110\n",        // bare LF
           "PROXY TCP4 192.0.2.7 10.0.0.1 51000 110\rX",       // CR without LF
           "PROXY TCP4 192.0.2.7  10.0.0.1 51000 110\r\n",     // two spaces
           "PROXY TCP4 192.0.2.7 10.0.0.1 51000\r\n",          // a field short
           "PROXY TCP4 192.0.2.7 10.0.0.1 51000 110 1\r\n",    // a field over
           "PROXY TCP4 192.0.2.7 10.0.0.1 51000 110 \r\n",     // trailing space
           "PROXY TCP4 2001:db8::7 10.0.0.1 51000 110\r\n",    // IPv6 in TCP4
           "PROXY TCP6 192.0.2.7 2001:db8::1 51000 110\r\n",   // IPv4 in TCP6
           "PROXY TCP4 192.0.2.256 10.0.0.1 51000 110\r\n",    // octet out of range
           "PROXY TCP4 host.example 10.0.0.1 51000 110\r\n",   // a name
           "PROXY TCP6 fe80::1%eth0 ::1 51000 110\r\n",        // a scope id
           "PROXY TCP4 192.0.2.7 10.0.0.1 65536 110\r\n",      // port out of range
           "PROXY TCP4 192.0.2.7 10.0.0.1 051000 110\r\n",     // leading zero
           "PROXY TCP4 192.0.2.7 10.0.0.1 -1 110\r\n",         // sign
           "PROXY TCP4 192.0.2.7 10.0.0.1 +1 110\r\n",
           "PROXY UDP4 192.0.2.7 10.0.0.1 51000 110\r\n",      // not TCP
           "PROXY tcp4 192.0.2.7 10.0.0.1 51000 110\r\n",      // case matters
           "PROXY \r\n",
           "PROXY UNKNOWNX\r\n",
       }) {
    INFO(line);
    const auto r = parse(line);
    CHECK(r.state == status::invalid);
    CHECK_FALSE(r.error.empty());
  }
}

TEST_CASE("what starts neither version is invalid at its first differing octet") {
  CHECK(parse("USER sample\r\n").state == status::invalid);
  CHECK(parse("X").state == status::invalid);
  CHECK(parse("PROXX").state == status::invalid);
  CHECK(parse("proxy TCP4").state == status::invalid);
  CHECK(parse(std::string("\r\n\r\n\0", 5)).state == status::incomplete);
  CHECK(parse(std::string("\r\n\r\n\0\r\nQUIX", 11)).state == status::invalid);
  CHECK(parse("\r\nCAPA\r\n").state == status::invalid);
  CHECK(parse("").state == status::incomplete);
}

TEST_CASE("starts_with_header: a whole v1 prefix or v2 signature") {
  CHECK(starts_with_header("PROXY TCP4 ..."));
  CHECK(starts_with_header(std::string(v2_signature) + "!"));
  CHECK_FALSE(starts_with_header("PROXY"));
  CHECK_FALSE(starts_with_header("\r\n\r\n"));
  CHECK_FALSE(starts_with_header("USER sample\r\n"));
}

// --- version 2 ---------------------------------------------------------------

TEST_CASE("v2 PROXY TCP over IPv4") {
  const std::string header = v2(1, 0x11, inet_block);
  const auto r = parse(header + "CAPA\r\n");
  REQUIRE(r.state == status::complete);
  CHECK(r.length == 28);
  CHECK(r.value.version == 2);
  CHECK(r.value.cmd == command::proxy);
  CHECK(address(r) == "192.0.2.7:51000 -> 10.0.0.1:110");
  CHECK(r.value.tlv_count == 0);
}

TEST_CASE("v2 PROXY TCP over IPv6") {
  const auto r = parse(v2(1, 0x21, inet6_block()));
  REQUIRE(r.state == status::complete);
  CHECK(r.length == 52);
  CHECK(address(r) == "[2001:db8::7]:51000 -> [2001:db8::1]:110");
}

TEST_CASE("v2 LOCAL: complete, no address, whatever its block holds") {
  for (const std::string& header : {v2(0, 0x00, ""), v2(0, 0x11, inet_block), v2(0, 0x11, "junk")}) {
    const auto r = parse(header);
    REQUIRE(r.state == status::complete);
    CHECK(r.value.cmd == command::local);
    CHECK(r.length == header.size());
    CHECK_FALSE(r.value.source);
  }
}

TEST_CASE("v2 UNSPEC, UNIX and UDP: complete, no TCP client to take") {
  CHECK_FALSE(parse(v2(1, 0x00, "")).value.source);
  CHECK(parse(v2(1, 0x00, "anything")).state == status::complete);
  const auto unix_stream = parse(v2(1, 0x31, std::string(216, '\0')));
  REQUIRE(unix_stream.state == status::complete);
  CHECK_FALSE(unix_stream.value.source);
  const auto udp = parse(v2(1, 0x12, inet_block));
  REQUIRE(udp.state == status::complete);
  CHECK_FALSE(udp.value.source);
}

TEST_CASE("v2: every truncation of a valid header is incomplete") {
  const std::string header = v2(1, 0x21, inet6_block() + tlv(0x04, "pad") + tlv(0x05, "id"));
  for (std::size_t n = 0; n < header.size(); ++n) {
    INFO(n);
    CHECK(parse(header.substr(0, n)).state == status::incomplete);
  }
  CHECK(parse(header).state == status::complete);
}

TEST_CASE("v2: a bad signature, version, command, family or transport is invalid") {
  std::string bad_signature = v2(1, 0x11, inet_block);
  bad_signature[8] = 'X';
  CHECK(parse(bad_signature).state == status::invalid);
  CHECK(parse(v2(1, 0x11, inet_block, 1)).state == status::invalid);
  CHECK(parse(v2(1, 0x11, inet_block, 3)).state == status::invalid);
  CHECK(parse(v2(2, 0x11, inet_block)).state == status::invalid);
  CHECK(parse(v2(0xf, 0x11, inet_block)).state == status::invalid);
  CHECK(parse(v2(1, 0x41, inet_block)).state == status::invalid);
  CHECK(parse(v2(1, 0x13, inet_block)).state == status::invalid);
  // Decided from the fixed part alone, before the block arrives.
  CHECK(parse(v2(1, 0x41, inet_block).substr(0, 16)).state == status::invalid);
}

TEST_CASE("v2: a length that lies is invalid or waits, never read past") {
  // Too short for the family's addresses.
  CHECK(parse(v2(1, 0x11, inet_block.substr(0, 11))).state == status::invalid);
  CHECK(parse(v2(1, 0x21, inet6_block().substr(0, 35))).state == status::invalid);
  CHECK(parse(v2(1, 0x31, std::string(215, '\0'))).state == status::invalid);
  // Longer than the bytes sent: waits for the rest.
  std::string header = v2(1, 0x11, inet_block);
  header[15] = static_cast<char>(inet_block.size() + 10);
  CHECK(parse(header).state == status::incomplete);
  // Longer than the receiver allows: refused from the fixed part.
  header = v2(1, 0x11, inet_block);
  header[14] = '\xff';
  header[15] = '\xff';
  CHECK(parse(header.substr(0, 16), 4096).state == status::invalid);
  CHECK(parse(header.substr(0, 16)).state == status::incomplete);
}

TEST_CASE("v2 TLVs are walked and skipped; one that overruns is invalid") {
  const std::string ssl = tlv(0x20, bytes({0x01, 0, 0, 0, 0}) + tlv(0x21, "TLSv1.3") + tlv(0x22, "client"));
  auto r = parse(v2(1, 0x11, inet_block + tlv(0x01, "pop3") + tlv(0x02, "pop.example") + ssl + tlv(0x04, "")));
  REQUIRE(r.state == status::complete);
  CHECK(address(r) == "192.0.2.7:51000 -> 10.0.0.1:110");
  CHECK(r.value.tlv_count == 6);
  CHECK(r.value.balancer_tls);

  CHECK_FALSE(parse(v2(1, 0x11, inet_block + tlv(0x20, bytes({0, 0, 0, 0, 0})))).value.balancer_tls);
  // Overruns: a TLV's length beyond the block, a cut TLV header, a short
  // SSL TLV, a sub-TLV beyond the SSL TLV.
  CHECK(parse(v2(1, 0x11, inet_block + tlv(0x01, "pop3").substr(0, 5))).state == status::invalid);
  CHECK(parse(v2(1, 0x11, inet_block + "\x01\x00")).state == status::invalid);
  CHECK(parse(v2(1, 0x11, inet_block + tlv(0x20, bytes({1, 0, 0, 0})))).state == status::invalid);
  CHECK(parse(v2(1, 0x11, inet_block + tlv(0x20, bytes({1, 0, 0, 0, 0}) + tlv(0x21, "x").substr(0, 3) + "x")))
            .state == status::complete);
  CHECK(parse(v2(1, 0x11, inet_block + tlv(0x20, bytes({1, 0, 0, 0, 0}) + bytes({0x21, 0, 9}) + "x"))).state ==
        status::invalid);
}

TEST_CASE("v2: the largest header the format allows") {
  const std::string header = v2(1, 0x11, inet_block + tlv(0x04, std::string(65535 - 12 - 3, 'n')));
  REQUIRE(header.size() == max_v2_length);
  CHECK(parse(header).state == status::complete);
}
