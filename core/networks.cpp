#include "networks.hpp"

#include <charconv>

namespace sdps::core {

namespace ip = boost::asio::ip;

namespace {

unsigned width(const ip::address& a) { return a.is_v4() ? 32 : 128; }

ip::address unmapped(const ip::address& a) {
  if (a.is_v6() && a.to_v6().is_v4_mapped()) return ip::make_address_v4(ip::v4_mapped, a.to_v6());
  return a;
}

/// The address with every bit past `length` cleared.
ip::address masked(const ip::address& a, unsigned length) {
  if (a.is_v4()) {
    const std::uint32_t bits = a.to_v4().to_uint();
    return ip::address_v4(length == 0 ? 0 : bits & ~((std::uint64_t{1} << (32 - length)) - 1));
  }
  auto bytes = a.to_v6().to_bytes();
  for (std::size_t i = 0; i < bytes.size(); ++i) {
    const unsigned from = static_cast<unsigned>(i) * 8;
    if (length >= from + 8) continue;
    const unsigned keep = length > from ? length - from : 0;
    bytes[i] = static_cast<unsigned char>(bytes[i] & (0xff00u >> keep));
  }
  return ip::address_v6(bytes);
}

}  // namespace

std::optional<network> network::parse(std::string_view text) {
  if (text.empty() || text.size() > 64) return std::nullopt;
  for (char c : text)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') || c == '.' || c == ':' ||
          c == '/'))
      return std::nullopt;
  const auto slash = text.find('/');
  boost::system::error_code ec;
  ip::address address = ip::make_address(std::string(text.substr(0, slash)), ec);
  if (ec) return std::nullopt;
  unsigned length = width(address);
  if (slash != std::string_view::npos) {
    const std::string_view digits = text.substr(slash + 1);
    const auto [end, bad] = std::from_chars(digits.data(), digits.data() + digits.size(), length);
    if (digits.empty() || digits.size() > 3 || bad != std::errc{} || end != digits.data() + digits.size() ||
        length > width(address))
      return std::nullopt;
  }
  if (address.is_v6() && address.to_v6().is_v4_mapped() && length >= 96) {
    address = unmapped(address);
    length -= 96;
  }
  return network{masked(address, length), length};
}

bool network::contains(const ip::address& a) const {
  ip::address client = unmapped(a);
  if (base.is_v4() != client.is_v4()) {
    // An IPv6 network (::/0) holds IPv4 clients in their mapped form.
    if (base.is_v4()) return false;
    client = ip::make_address_v6(ip::v4_mapped, client.to_v4());
  }
  return masked(client, length) == base;
}

std::string network::to_string() const { return base.to_string() + "/" + std::to_string(length); }

bool contains(const std::vector<network>& list, const ip::address& a) {
  for (const auto& n : list)
    if (n.contains(a)) return true;
  return false;
}

}  // namespace sdps::core
