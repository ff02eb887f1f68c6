#pragma once
/// @file
/// Address prefixes (CIDR), as sdps settings and the host database write
/// them: "192.0.2.7", "192.0.2.0/24", "2001:db8::/64".

#include <utility>  // docs/toolchain.md: Boost 1.74 and std::exchange

#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/network_v4.hpp>
#include <boost/asio/ip/network_v6.hpp>

#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace sdps::base {

/// An IPv4 or IPv6 network, always canonical: no host bits set, and never
/// an IPv4-mapped IPv6 prefix (that is the IPv4 prefix it maps).
class address_prefix {
 public:
  /// Parses ADDR or ADDR/LEN; nullopt if malformed. Host bits beyond LEN
  /// are cleared (192.0.2.7/24 is 192.0.2.0/24); an IPv4-mapped IPv6
  /// prefix of length 96 or more becomes the IPv4 prefix it maps
  /// (::ffff:192.0.2.7 is 192.0.2.7). Refused: host names, scoped
  /// addresses (fe80::1%eth0), lengths beyond the family's width or of
  /// more than three digits, leading or trailing junk.
  static std::optional<address_prefix> parse(std::string_view text);

  /// These networks, made canonical as parse() does.
  explicit address_prefix(const boost::asio::ip::network_v4& network);
  explicit address_prefix(const boost::asio::ip::network_v6& network);

  bool is_v4() const { return std::holds_alternative<boost::asio::ip::network_v4>(network_); }
  /// The network's first address (its host bits clear).
  boost::asio::ip::address network() const;
  /// The prefix length, 0 to 32 or 128.
  unsigned length() const;
  /// True for a prefix of one address (/32, /128).
  bool single_address() const { return length() == (is_v4() ? 32u : 128u); }

  /// True if `a` is inside. An IPv4-mapped IPv6 address (what a
  /// dual-stack listener reports for an IPv4 client) counts as the IPv4
  /// address it maps; an IPv6 prefix (say ::/0) sees an IPv4 address in
  /// its mapped form. Scope ids play no part.
  bool contains(const boost::asio::ip::address& a) const;

  /// "192.0.2.7" for a single address, else "192.0.2.0/24": what parse()
  /// reads back as this prefix.
  std::string to_string() const;

  bool operator==(const address_prefix&) const = default;

 private:
  std::variant<boost::asio::ip::network_v4, boost::asio::ip::network_v6> network_;
};

/// True if any prefix of `list` contains `a`.
bool contains(const std::vector<address_prefix>& list, const boost::asio::ip::address& a);

}  // namespace sdps::base
