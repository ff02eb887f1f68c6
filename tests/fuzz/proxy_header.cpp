// The PROXY protocol header a balancer sends first (core/proxy_header),
// versions 1 and 2 with their TLVs, as the connection reads it: the parser
// sees growing prefixes of the stream until it decides.
//
// Properties: the decision is stable as octets arrive (incomplete until the
// header's last octet, then complete with the same length and value
// whatever follows; once invalid, invalid); a complete header lies within
// the input and the limits (v1 107 octets, v2 its length field and
// `max_length`); an error is printable text; a header printed back from
// the parsed value (v1 text, v2 binary) parses to the same value.

#include "fuzz.hpp"

#include "proxy_header.hpp"

#include <string>
#include <vector>

namespace {

namespace proxy = sdps::proxy;
using boost::asio::ip::tcp;

bool same(const proxy::header& a, const proxy::header& b) {
  return a.version == b.version && a.cmd == b.cmd && a.source == b.source && a.destination == b.destination &&
         a.tlv_count == b.tlv_count && a.balancer_tls == b.balancer_tls;
}

bool same(const proxy::result& a, const proxy::result& b) {
  return a.state == b.state && a.length == b.length && (a.state != proxy::status::complete || same(a.value, b.value));
}

void check_error(const std::string& error) {
  SDPS_FUZZ_CHECK(!error.empty() && error.size() < 200);
  for (char c : error) SDPS_FUZZ_CHECK(c >= 0x20 && c < 0x7f);
}

/// The header's value printed back as a v1 line, when it has one.
std::string as_v1(const proxy::header& h) {
  if (!h.source || !h.destination) return "PROXY UNKNOWN\r\n";
  if (h.source->address().is_v4() != h.destination->address().is_v4()) return {};
  return std::string("PROXY ") + (h.source->address().is_v4() ? "TCP4 " : "TCP6 ") + h.source->address().to_string() +
         " " + h.destination->address().to_string() + " " + std::to_string(h.source->port()) + " " +
         std::to_string(h.destination->port()) + "\r\n";
}

void put16(std::string& out, unsigned value) {
  out += static_cast<char>((value >> 8) & 0xff);
  out += static_cast<char>(value & 0xff);
}

/// The header's value printed back as v2 (no TLVs), when it has one.
std::string as_v2(const proxy::header& h) {
  std::string out(proxy::v2_signature);
  std::string block;
  unsigned family = 0;
  if (h.cmd == proxy::command::proxy && h.source) {
    if (h.source->address().is_v4() != h.destination->address().is_v4()) return {};  // v2 has no such header
    family = h.source->address().is_v4() ? 0x11 : 0x21;
    for (const tcp::endpoint* e : {&*h.source, &*h.destination}) {
      if (e->address().is_v4()) {
        for (auto b : e->address().to_v4().to_bytes()) block += static_cast<char>(b);
      } else {
        for (auto b : e->address().to_v6().to_bytes()) block += static_cast<char>(b);
      }
    }
    put16(block, h.source->port());
    put16(block, h.destination->port());
  }
  out += static_cast<char>(h.cmd == proxy::command::local ? 0x20 : 0x21);
  out += static_cast<char>(family);
  put16(out, static_cast<unsigned>(block.size()));
  return out + block;
}

void check_round_trip(const proxy::header& h) {
  const auto compare = [&](const std::string& printed, int version) {
    if (printed.empty()) return;
    const auto again = proxy::parse(printed);
    SDPS_FUZZ_CHECK(again.state == proxy::status::complete);
    SDPS_FUZZ_CHECK(again.length == printed.size());
    SDPS_FUZZ_CHECK(again.value.version == version);
    SDPS_FUZZ_CHECK(again.value.source == h.source && again.value.destination == h.destination);
  };
  if (h.cmd == proxy::command::proxy) compare(as_v1(h), 1);
  if (h.cmd == proxy::command::local || h.source) compare(as_v2(h), 2);
}

void check(std::string_view input, std::size_t max_length) {
  const proxy::result whole = proxy::parse(input, max_length);
  switch (whole.state) {
    case proxy::status::invalid:
      check_error(whole.error);
      break;
    case proxy::status::incomplete:
      SDPS_FUZZ_CHECK(whole.length == 0);
      break;
    case proxy::status::complete: {
      const auto& h = whole.value;
      SDPS_FUZZ_CHECK(whole.length > 0 && whole.length <= input.size());
      SDPS_FUZZ_CHECK(h.version == (input[0] == 'P' ? 1 : 2));
      SDPS_FUZZ_CHECK(proxy::starts_with_header(input.substr(0, whole.length)));
      if (h.version == 1) {
        SDPS_FUZZ_CHECK(whole.length <= proxy::max_v1_length);
        SDPS_FUZZ_CHECK(input.substr(whole.length - 2, 2) == "\r\n");
        SDPS_FUZZ_CHECK(h.cmd == proxy::command::proxy && h.tlv_count == 0 && !h.balancer_tls);
      } else {
        const std::size_t stated = (static_cast<unsigned char>(input[14]) << 8) | static_cast<unsigned char>(input[15]);
        SDPS_FUZZ_CHECK(whole.length == proxy::v2_fixed_length + stated);
        SDPS_FUZZ_CHECK(whole.length <= std::max(max_length, proxy::v2_fixed_length));
      }
      SDPS_FUZZ_CHECK(h.source.has_value() == h.destination.has_value());
      if (h.cmd == proxy::command::local) SDPS_FUZZ_CHECK(!h.source);
      // IPv4-mapped IPv6 addresses come out as IPv4.
      if (h.source && h.source->address().is_v6()) SDPS_FUZZ_CHECK(!h.source->address().to_v6().is_v4_mapped());
      check_round_trip(h);
      break;
    }
  }

  // The stream arrives in pieces: every prefix agrees with the whole.
  sdps::fuzz::chunker cuts(input, 40);
  std::size_t at = 0;
  while (at < input.size()) {
    at = std::min(input.size(), at + cuts.size());
    const proxy::result part = proxy::parse(input.substr(0, at), max_length);
    if (whole.state == proxy::status::complete) {
      if (at < whole.length) {
        // An unfinished header is header to its last octet.
        SDPS_FUZZ_CHECK(part.state == proxy::status::incomplete);
      } else {
        // Whatever follows the header is not the parser's business.
        SDPS_FUZZ_CHECK(same(part, whole));
      }
    } else if (whole.state == proxy::status::incomplete) {
      SDPS_FUZZ_CHECK(part.state == proxy::status::incomplete);
    } else if (part.state != proxy::status::incomplete) {
      // Decided early, it stays decided (and invalid).
      SDPS_FUZZ_CHECK(part.state == proxy::status::invalid);
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input = sdps::fuzz::text(data, size);
  // The server's limit, the format's, and a small one so that "too long" is common.
  for (const std::size_t max_length : {std::size_t{16 * 1024}, proxy::max_v2_length, std::size_t{40}}) check(input, max_length);
  return 0;
}
