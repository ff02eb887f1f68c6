#pragma once
/// @file
/// Where to listen or connect, as written in sdps YAML files and on
/// command lines: "127.0.0.1:110", "[::1]:110", "*:110",
/// "punt1.example.net:1111". One parser, one set of messages; each caller
/// says what its endpoints may be (endpoint_rules).

#include <utility>  // docs/toolchain.md: Boost 1.74 and std::exchange

#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <sys/socket.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace sdps::base {

/// What the host part of an endpoint may be.
enum class endpoint_host {
  /// A literal IP address only, without a scope id ("localhost" counts as
  /// 127.0.0.1): a listener, or a target reached without a DNS lookup.
  address,
  /// A literal IP address or a host name, which the caller resolves when
  /// it connects.
  name,
};

/// The endpoints one caller accepts.
struct endpoint_rules {
  endpoint_host host = endpoint_host::address;
  /// "*:PORT" means every IPv4 address (0.0.0.0): for listeners.
  bool wildcard = false;
  /// Port 0 (the system picks a free one): for listeners.
  bool any_port = false;
  /// The port of a text without ":PORT" (a bare IPv6 address then needs no
  /// brackets); 0 when the port is required.
  std::uint16_t default_port = 0;
};

/// A host and a port.
struct endpoint {
  /// A literal address in Asio's text form (no brackets), or a host name
  /// where the rules allow names.
  std::string host;
  std::uint16_t port = 0;

  /// The literal address; nullopt when `host` is a name.
  std::optional<boost::asio::ip::address> address() const;
  /// For a literal address: the endpoint Asio (and bind/connect through
  /// data() and size()) uses. Throws std::invalid_argument for a name.
  boost::asio::ip::tcp::endpoint tcp() const;
  /// "HOST:PORT", "[IPv6]:PORT": what parse_endpoint reads back as this.
  std::string to_string() const;

  bool operator==(const endpoint&) const = default;
};

/// Parses ADDRESS:PORT, [IPv6]:PORT, and as `rules` allow *:PORT,
/// NAME:PORT or a text without the port. Throws std::invalid_argument
/// whose what() is one line that starts with the text, quoted and made
/// printable:
///   'TEXT' is not ADDRESS:PORT            (HOST:PORT where names are allowed)
///   'TEXT': write IPv6 as [ADDRESS]:PORT
///   'TEXT': the port must be 1 to 65535   (0 to 65535 with any_port)
///   'TEXT': 'HOST' is not an IP address   (not a host name or an IP address)
endpoint parse_endpoint(std::string_view text, const endpoint_rules& rules);

/// A socket address as logs show it: "192.0.2.7:25", "[2001:db8::7]:25",
/// "unix:/path" ("unix:" for an unnamed one), "?" for any other family.
std::string socket_address_text(const sockaddr* address);

}  // namespace sdps::base
