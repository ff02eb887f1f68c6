#pragma once
// Address prefixes in server settings (`proxy_protocol_from: [CIDR...]`).

#include <utility>  // docs/toolchain.md: Boost 1.74 and std::exchange

#include <boost/asio/ip/address.hpp>

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sdps::core {

/// One prefix: 10.0.0.5, 10.0.0.0/24, 2001:db8::/64.
struct network {
  boost::asio::ip::address base;
  unsigned length = 0;

  /// Parses ADDR or ADDR/LEN (host bits are cleared; an IPv4-mapped IPv6
  /// prefix of length 96 or more becomes the IPv4 prefix). Nullopt for
  /// anything else: host names, scope ids, lengths beyond the family.
  static std::optional<network> parse(std::string_view text);
  /// True if `a` is inside; an IPv4-mapped IPv6 address counts as IPv4.
  bool contains(const boost::asio::ip::address& a) const;
  std::string to_string() const;
};

/// True if any of `list` contains `a`.
bool contains(const std::vector<network>& list, const boost::asio::ip::address& a);

}  // namespace sdps::core
