#include "base/address_prefix.hpp"

#include <algorithm>
#include <charconv>

namespace sdps::base {

namespace {

namespace ip = boost::asio::ip;

/// The IPv4 address an IPv4-mapped IPv6 address maps, else `a`.
ip::address unmapped(const ip::address& a) {
  if (a.is_v6() && a.to_v6().is_v4_mapped()) return ip::make_address_v4(ip::v4_mapped, a.to_v6());
  return a;
}

/// `a` without its scope id, which says which link, not which address.
ip::address_v6 unscoped(const ip::address_v6& a) { return ip::address_v6(a.to_bytes()); }

bool prefix_text(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') || c == '.' || c == ':' ||
         c == '/';
}

}  // namespace

address_prefix::address_prefix(const ip::network_v4& network) : network_(network.canonical()) {}

address_prefix::address_prefix(const ip::network_v6& network)
    : network_(ip::network_v6(unscoped(network.network()), network.prefix_length())) {
  // ::ffff:a.b.c.d/96+ is an IPv4 prefix.
  const auto& v6 = std::get<ip::network_v6>(network_);
  if (v6.prefix_length() >= 96 && v6.network().is_v4_mapped())
    network_ = ip::network_v4(ip::make_address_v4(ip::v4_mapped, v6.network()),
                              static_cast<unsigned short>(v6.prefix_length() - 96));
}

std::optional<address_prefix> address_prefix::parse(std::string_view text) {
  if (text.empty() || text.size() > 64 || !std::all_of(text.begin(), text.end(), prefix_text)) return std::nullopt;
  const auto slash = text.find('/');
  boost::system::error_code ec;
  const ip::address address = ip::make_address(std::string(text.substr(0, slash)), ec);
  if (ec) return std::nullopt;
  const unsigned width = address.is_v4() ? 32 : 128;
  unsigned length = width;
  if (slash != std::string_view::npos) {
    const std::string_view digits = text.substr(slash + 1);
    const char* const end = digits.data() + digits.size();
    const auto [stop, bad] = std::from_chars(digits.data(), end, length);
    if (digits.empty() || digits.size() > 3 || bad != std::errc{} || stop != end || length > width)
      return std::nullopt;
  }
  const auto bits = static_cast<unsigned short>(length);
  if (address.is_v4()) return address_prefix(ip::network_v4(address.to_v4(), bits));
  return address_prefix(ip::network_v6(address.to_v6(), bits));
}

ip::address address_prefix::network() const {
  if (is_v4()) return std::get<ip::network_v4>(network_).network();
  return std::get<ip::network_v6>(network_).network();
}

unsigned address_prefix::length() const {
  if (is_v4()) return std::get<ip::network_v4>(network_).prefix_length();
  return std::get<ip::network_v6>(network_).prefix_length();
}

bool address_prefix::contains(const ip::address& a) const {
  const ip::address client = unmapped(a);
  if (is_v4()) {
    const auto& v4 = std::get<ip::network_v4>(network_);
    return client.is_v4() && ip::network_v4(client.to_v4(), v4.prefix_length()).network() == v4.network();
  }
  // Compared in IPv6 terms, an IPv4 client in its mapped form, so that the
  // answer does not depend on whether the listener was IPv4 or dual-stack.
  const auto& v6 = std::get<ip::network_v6>(network_);
  const ip::address_v6 as_v6 =
      client.is_v4() ? ip::make_address_v6(ip::v4_mapped, client.to_v4()) : unscoped(client.to_v6());
  return ip::network_v6(as_v6, v6.prefix_length()).network() == v6.network();
}

std::string address_prefix::to_string() const {
  std::string out = network().to_string();
  if (!single_address()) {
    out += '/';
    out += std::to_string(length());
  }
  return out;
}

bool contains(const std::vector<address_prefix>& list, const ip::address& a) {
  return std::any_of(list.begin(), list.end(), [&a](const address_prefix& p) { return p.contains(a); });
}

}  // namespace sdps::base
