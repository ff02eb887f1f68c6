#pragma once
// The PROXY protocol header a load balancer puts in front of a client's
// bytes (HAProxy's proxy-protocol.txt, versions 1 and 2).
//
// Pure: no I/O, no allocation beyond the result's error text, so it is
// unit-tested and fuzzed directly. It builds as its own small library
// (sdps_proxy_header) that the core links.

#include <utility>  // docs/toolchain.md: Boost 1.74 and std::exchange

#include <boost/asio/ip/tcp.hpp>

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace sdps::proxy {

/// Version 1: "PROXY ..." CRLF, at most this many octets, CRLF included.
constexpr std::size_t max_v1_length = 107;
/// Version 2: the fixed part (signature, version/command, family, length).
constexpr std::size_t v2_fixed_length = 16;
/// Version 2: the largest header the format can describe.
constexpr std::size_t max_v2_length = v2_fixed_length + 65535;
/// The version 2 signature: \r\n\r\n\0\r\nQUIT\n.
constexpr std::string_view v2_signature{"\r\n\r\n\0\r\nQUIT\n", 12};

enum class status {
  complete,    ///< a whole, valid header: `length` octets
  incomplete,  ///< a valid beginning: read more and call again
  invalid,     ///< not a PROXY header, or a malformed one: `error` says why
};

enum class command {
  proxy,  ///< relayed on behalf of a client (v1 always, v2 PROXY)
  local,  ///< v2 LOCAL: the balancer's own connection (health check)
};

/// A complete header.
struct header {
  int version = 0;  ///< 1 or 2
  command cmd = command::proxy;
  /// The client and the address it connected to, when the header carries
  /// TCP over IPv4 or IPv6 for a PROXY command. Empty for v1 UNKNOWN, v2
  /// LOCAL, and v2 UNSPEC, UNIX or UDP: the receiver then keeps the real
  /// connection's endpoints, as the spec says.
  std::optional<boost::asio::ip::tcp::endpoint> source, destination;
  /// v2 TLVs seen (each one checked to lie within the header, then skipped).
  std::size_t tlv_count = 0;
  /// A PP2_TYPE_SSL TLV with PP2_CLIENT_SSL set: the balancer says it
  /// terminated TLS. Informational only, never taken as TLS to us.
  bool balancer_tls = false;
};

struct result {
  status state = status::incomplete;
  /// Octets the header takes (complete only); what follows is the client's.
  std::size_t length = 0;
  header value;
  /// Why it is invalid, for the log (printable ASCII, no client bytes).
  std::string error;
};

/// Parses the beginning of a connection's byte stream. Decides as early as
/// the bytes allow: a first octet that starts neither version is invalid
/// at once; a v1 line without CRLF within 107 octets is invalid; a v2
/// header longer than `max_length` (its length field says so) is invalid
/// without waiting for it.
result parse(std::string_view bytes, std::size_t max_length = max_v2_length);

/// True if `bytes` begin with a whole v1 "PROXY " or v2 signature: what a
/// connection that may not send a header is refused for.
bool starts_with_header(std::string_view bytes);

}  // namespace sdps::proxy
