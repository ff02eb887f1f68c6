#include "base/endpoint.hpp"

#include <sdps/log.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/un.h>

#include <algorithm>
#include <stdexcept>

namespace sdps::base {

namespace {

namespace ip = boost::asio::ip;

constexpr std::size_t quoted_limit = 80;

std::string quoted(std::string_view text) {
  std::string out = "'";
  out += printable(text, quoted_limit);
  out += '\'';
  return out;
}

[[noreturn]] void refuse(std::string_view text, std::string_view why) {
  std::string message = quoted(text);
  message += why;
  throw std::invalid_argument(message);
}

bool is_digit(char c) { return c >= '0' && c <= '9'; }

/// Letters, digits, '-', '_', dot-separated labels of 1 to 63 octets, at
/// most 253 in all, and a last label that is not all digits (which would
/// be a malformed IPv4 address, not a name).
bool host_name(std::string_view name) {
  if (name.empty() || name.size() > 253) return false;
  std::size_t label = 0;
  bool all_digits = true;
  for (char c : name) {
    if (c == '.') {
      if (label == 0) return false;
      label = 0;
      all_digits = true;
      continue;
    }
    const bool letter = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
    if (!(letter || is_digit(c) || c == '-' || c == '_')) return false;
    if (++label > 63 || (label == 1 && c == '-')) return false;
    all_digits = all_digits && is_digit(c);
  }
  return label > 0 && !all_digits;
}

}  // namespace

std::optional<ip::address> endpoint::address() const {
  boost::system::error_code ec;
  const auto a = ip::make_address(host, ec);
  if (ec) return std::nullopt;
  return a;
}

ip::tcp::endpoint endpoint::tcp() const {
  const auto a = address();
  if (!a) throw std::invalid_argument(quoted(host).append(" is a host name, not an IP address"));
  return {*a, port};
}

std::string endpoint::to_string() const {
  std::string out;
  if (host.find(':') != std::string::npos) {
    out += '[';
    out += host;
    out += ']';
  } else {
    out += host;
  }
  out += ':';
  out += std::to_string(port);
  return out;
}

endpoint parse_endpoint(std::string_view text, const endpoint_rules& rules) {
  const bool names = rules.host == endpoint_host::name;
  const char* const not_form = names ? " is not HOST:PORT" : " is not ADDRESS:PORT";
  std::string_view host;
  std::optional<std::string_view> port_text;
  bool bracketed = false;
  if (!text.empty() && text.front() == '[') {
    const auto close = text.find(']');
    if (close == std::string_view::npos) refuse(text, not_form);
    host = text.substr(1, close - 1);
    bracketed = true;
    const std::string_view rest = text.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') refuse(text, not_form);
      port_text = rest.substr(1);
    }
  } else {
    const auto colon = text.rfind(':');
    if (colon == std::string_view::npos) {
      host = text;
    } else if (text.find(':') != colon) {
      // More than one colon: an IPv6 address, whose port (if any) cannot
      // be told apart without brackets.
      if (rules.default_port == 0) refuse(text, ": write IPv6 as [ADDRESS]:PORT");
      host = text;
    } else {
      host = text.substr(0, colon);
      port_text = text.substr(colon + 1);
    }
  }
  if (host.empty()) refuse(text, not_form);

  endpoint out;
  if (!port_text) {
    if (rules.default_port == 0) refuse(text, not_form);
    out.port = rules.default_port;
  } else {
    const std::string_view digits = *port_text;
    unsigned value = 0;
    const bool numeric = !digits.empty() && digits.size() <= 5 && std::all_of(digits.begin(), digits.end(), is_digit);
    if (numeric)
      for (char c : digits) value = value * 10 + static_cast<unsigned>(c - '0');
    if (!numeric || value > 65535 || (value == 0 && !rules.any_port))
      refuse(text, rules.any_port ? ": the port must be 0 to 65535" : ": the port must be 1 to 65535");
    out.port = static_cast<std::uint16_t>(value);
  }

  // No scope ids (fe80::1%eth0): Asio reads an unknown interface as a
  // number, which need not print back as the text it came from.
  const bool scoped = host.find('%') != std::string_view::npos;
  boost::system::error_code ec;
  const ip::address literal = scoped ? ip::address() : ip::make_address(std::string(host), ec);
  if (!scoped && !ec) {
    out.host = literal.to_string();
  } else if (!bracketed && rules.wildcard && host == "*") {
    out.host = ip::address_v4::any().to_string();
  } else if (!bracketed && !names && host == "localhost") {
    out.host = ip::address_v4::loopback().to_string();
  } else if (!bracketed && names && host_name(host)) {
    out.host = std::string(host);
  } else {
    std::string why = ": ";
    why += quoted(host);
    why += names ? " is not a host name or an IP address" : " is not an IP address";
    refuse(text, why);
  }
  return out;
}

std::string socket_address_text(const sockaddr* address) {
  char text[INET6_ADDRSTRLEN] = "?";
  if (address->sa_family == AF_INET) {
    const auto* v4 = reinterpret_cast<const sockaddr_in*>(address);
    ::inet_ntop(AF_INET, &v4->sin_addr, text, sizeof text);
    std::string out = text;
    out += ':';
    out += std::to_string(ntohs(v4->sin_port));
    return out;
  }
  if (address->sa_family == AF_INET6) {
    const auto* v6 = reinterpret_cast<const sockaddr_in6*>(address);
    ::inet_ntop(AF_INET6, &v6->sin6_addr, text, sizeof text);
    // Appended, not "[" + std::string: GCC 12 at -O3 warns falsely on that
    // (-Wrestrict, docs/toolchain.md).
    std::string out = "[";
    out += text;
    out += "]:";
    out += std::to_string(ntohs(v6->sin6_port));
    return out;
  }
  if (address->sa_family == AF_UNIX) {
    std::string out = "unix:";
    out += reinterpret_cast<const sockaddr_un*>(address)->sun_path;
    return out;
  }
  return "?";
}

}  // namespace sdps::base
