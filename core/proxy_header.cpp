#include "proxy_header.hpp"

#include <algorithm>
#include <array>
#include <charconv>
#include <cstdint>

namespace sdps::proxy {

namespace ip = boost::asio::ip;

namespace {

constexpr std::string_view v1_prefix = "PROXY ";

result invalid(std::string why) {
  result r;
  r.state = status::invalid;
  r.error = std::move(why);
  return r;
}

result incomplete() { return result{}; }

std::uint8_t octet(std::string_view bytes, std::size_t at) { return static_cast<std::uint8_t>(bytes[at]); }

std::uint16_t big_endian16(std::string_view bytes, std::size_t at) {
  return static_cast<std::uint16_t>((octet(bytes, at) << 8) | octet(bytes, at + 1));
}

/// Whether `bytes` so far agree with the beginning of `expected`.
bool agrees(std::string_view bytes, std::string_view expected) {
  const std::size_t n = std::min(bytes.size(), expected.size());
  return bytes.substr(0, n) == expected.substr(0, n);
}

/// IPv4-mapped IPv6 (::ffff:192.0.2.1) is the IPv4 client it maps.
ip::address unmapped(const ip::address& a) {
  if (a.is_v6() && a.to_v6().is_v4_mapped()) return ip::make_address_v4(ip::v4_mapped, a.to_v6());
  return a;
}

// --- version 1 -------------------------------------------------------------

/// A port: 1 to 5 digits, no leading zero, at most 65535.
std::optional<unsigned short> v1_port(std::string_view text) {
  if (text.empty() || text.size() > 5 || (text.size() > 1 && text[0] == '0')) return std::nullopt;
  unsigned value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc{} || end != text.data() + text.size() || value > 65535) return std::nullopt;
  return static_cast<unsigned short>(value);
}

/// An address of the family TCP4 or TCP6 names, in its textual form only
/// (no scope ids, no host names).
std::optional<ip::address> v1_address(std::string_view text, bool v6) {
  if (text.empty() || text.size() > 45) return std::nullopt;
  for (char c : text) {
    const bool digit = c >= '0' && c <= '9';
    const bool hex = digit || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
    if (!(v6 ? (hex || c == ':' || c == '.') : (digit || c == '.'))) return std::nullopt;
  }
  boost::system::error_code ec;
  const std::string s(text);
  if (v6) {
    const auto a = ip::make_address_v6(s, ec);
    if (ec) return std::nullopt;
    return unmapped(a);
  }
  const auto a = ip::make_address_v4(s, ec);
  if (ec) return std::nullopt;
  return a;
}

result parse_v1(std::string_view bytes) {
  // The line ends with CRLF within 107 octets; a lone CR or LF is no end.
  std::size_t end = std::string_view::npos;
  const std::size_t scan = std::min(bytes.size(), max_v1_length);
  for (std::size_t i = 0; i < scan; ++i) {
    if (bytes[i] == '\n') return invalid("PROXY v1: a line feed without a carriage return");
    if (bytes[i] != '\r') continue;
    if (i + 1 == bytes.size()) break;  // the LF may be on its way
    if (bytes[i + 1] != '\n') return invalid("PROXY v1: a carriage return without a line feed");
    if (i + 2 > max_v1_length) break;
    end = i;
    break;
  }
  if (end == std::string_view::npos) {
    if (bytes.size() >= max_v1_length) return invalid("PROXY v1: no CRLF within 107 octets");
    return incomplete();
  }

  std::string_view line = bytes.substr(v1_prefix.size(), end - v1_prefix.size());
  result r;
  r.state = status::complete;
  r.length = end + 2;
  r.value.version = 1;
  r.value.cmd = command::proxy;
  // UNKNOWN: the rest of the line is ignored.
  if (line.substr(0, line.find(' ')) == "UNKNOWN") return r;
  // Fields are separated by exactly one space.
  std::array<std::string_view, 6> fields{};
  std::size_t count = 0;
  while (true) {
    const auto space = line.find(' ');
    if (count == fields.size()) return invalid("PROXY v1: too many fields");
    fields[count++] = line.substr(0, space);
    if (space == std::string_view::npos) break;
    line.remove_prefix(space + 1);
  }

  if (fields[0] != "TCP4" && fields[0] != "TCP6") return invalid("PROXY v1: the protocol is not TCP4, TCP6 or UNKNOWN");
  if (count != 5) return invalid("PROXY v1: TCP4 and TCP6 take four fields, one space apart");
  const bool v6 = fields[0] == "TCP6";
  const auto source = v1_address(fields[1], v6);
  const auto destination = v1_address(fields[2], v6);
  if (!source || !destination) return invalid(std::string("PROXY v1: an address is not ") + (v6 ? "IPv6" : "IPv4"));
  const auto source_port = v1_port(fields[3]);
  const auto destination_port = v1_port(fields[4]);
  if (!source_port || !destination_port) return invalid("PROXY v1: a port is not 0 to 65535");
  r.value.source.emplace(*source, *source_port);
  r.value.destination.emplace(*destination, *destination_port);
  return r;
}

// --- version 2 -------------------------------------------------------------

constexpr std::uint8_t pp2_type_ssl = 0x20;
constexpr std::uint8_t pp2_client_ssl = 0x01;

/// Checks that a run of TLVs tiles `block` exactly. Returns an error or "".
std::string walk_tlvs(std::string_view block, header& out, bool nested) {
  while (!block.empty()) {
    if (block.size() < 3) return "PROXY v2: a TLV is cut short";
    const std::uint8_t type = octet(block, 0);
    const std::size_t length = big_endian16(block, 1);
    if (length > block.size() - 3) return "PROXY v2: a TLV is longer than the header";
    const std::string_view value = block.substr(3, length);
    ++out.tlv_count;
    if (type == pp2_type_ssl && !nested) {
      // client (1 octet), verify (4 octets), then sub-TLVs.
      if (value.size() < 5) return "PROXY v2: the SSL TLV is cut short";
      if (octet(value, 0) & pp2_client_ssl) out.balancer_tls = true;
      if (auto error = walk_tlvs(value.substr(5), out, true); !error.empty()) return error;
    }
    block.remove_prefix(3 + length);
  }
  return {};
}

result parse_v2(std::string_view bytes, std::size_t max_length) {
  if (bytes.size() < v2_fixed_length) return incomplete();
  const std::uint8_t version_command = octet(bytes, 12);
  const std::uint8_t family_transport = octet(bytes, 13);
  if ((version_command >> 4) != 2) return invalid("PROXY v2: the version is not 2");
  const unsigned cmd = version_command & 0x0f;
  if (cmd > 1) return invalid("PROXY v2: the command is neither LOCAL nor PROXY");
  const unsigned family = family_transport >> 4;
  const unsigned transport = family_transport & 0x0f;
  if (family > 3) return invalid("PROXY v2: unknown address family");
  if (transport > 2) return invalid("PROXY v2: unknown transport");
  const std::size_t total = v2_fixed_length + big_endian16(bytes, 14);
  if (total > max_length) return invalid("PROXY v2: the header is longer than " + std::to_string(max_length) + " octets");
  if (bytes.size() < total) return incomplete();

  result r;
  r.state = status::complete;
  r.length = total;
  r.value.version = 2;
  // LOCAL: the spec says to discard the protocol block, family included.
  if (cmd == 0) {
    r.value.cmd = command::local;
    return r;
  }
  r.value.cmd = command::proxy;
  const std::string_view block = bytes.substr(v2_fixed_length, total - v2_fixed_length);
  // UNSPEC: nothing in the block is meaningful to us.
  if (family == 0) return r;
  static constexpr std::array<std::size_t, 4> address_length{0, 12, 36, 216};
  const std::size_t addresses = address_length[family];
  if (block.size() < addresses) return invalid("PROXY v2: the length leaves no room for the addresses");
  constexpr unsigned stream = 1;
  if (transport == stream && family == 1) {
    ip::address_v4::bytes_type source, destination;
    std::copy_n(block.data(), 4, source.begin());
    std::copy_n(block.data() + 4, 4, destination.begin());
    r.value.source.emplace(ip::address_v4(source), big_endian16(block, 8));
    r.value.destination.emplace(ip::address_v4(destination), big_endian16(block, 10));
  } else if (transport == stream && family == 2) {
    ip::address_v6::bytes_type source, destination;
    std::copy_n(block.data(), 16, source.begin());
    std::copy_n(block.data() + 16, 16, destination.begin());
    r.value.source.emplace(unmapped(ip::address_v6(source)), big_endian16(block, 32));
    r.value.destination.emplace(unmapped(ip::address_v6(destination)), big_endian16(block, 34));
  }
  // UNIX and UDP carry no TCP client: the session keeps the real peer.
  if (auto error = walk_tlvs(block.substr(addresses), r.value, false); !error.empty()) return invalid(std::move(error));
  return r;
}

}  // namespace

result parse(std::string_view bytes, std::size_t max_length) {
  if (bytes.empty()) return incomplete();
  if (bytes[0] == 'P') {
    if (!agrees(bytes, v1_prefix)) return invalid("not a PROXY header");
    if (bytes.size() < v1_prefix.size()) return incomplete();
    return parse_v1(bytes);
  }
  if (!agrees(bytes, v2_signature)) return invalid("not a PROXY header");
  return parse_v2(bytes, std::max(max_length, v2_fixed_length));
}

bool starts_with_header(std::string_view bytes) {
  return bytes.substr(0, v1_prefix.size()) == v1_prefix || bytes.substr(0, v2_signature.size()) == v2_signature;
}

}  // namespace sdps::proxy
