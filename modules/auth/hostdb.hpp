#pragma once
// The host database: customer hosts, their dialup addresses and their two
// Argon2id password hashes. Shared by the auth module and the admin tool.

#include <boost/asio/ip/address.hpp>

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sdps::hostdb {

/// An address prefix: 192.0.2.7, 192.0.2.0/24, 2001:db8::/64.
struct prefix {
  boost::asio::ip::address network;
  unsigned length = 0;
  /// True if `a` is inside (an IPv4-mapped IPv6 address counts as IPv4).
  bool contains(const boost::asio::ip::address& a) const;
  std::string to_string() const;
  /// Parses ADDR or ADDR/LEN; nullopt if malformed.
  static std::optional<prefix> parse(std::string_view text);
};

struct host_record {
  std::string name;             ///< short, lower case: "sample"
  std::vector<prefix> dialup;   ///< where the dialup password is accepted
  std::string dialup_hash;      ///< crypto_pwhash_str output, or empty (not set)
  std::string pop3_hash;        ///< crypto_pwhash_str output, or empty (not set)
};

/// Turns "Sample", "sample.demon.co.uk" (with `customer_domain`
/// "demon.co.uk") into "sample". Returns empty when the text is not a
/// valid host name (letters, digits, hyphens; 1-63 octets) of that domain.
std::string normalise_host(std::string_view text, std::string_view customer_domain);

/// True if `hosts_file` lists `host` (already normalised). Reads the file;
/// for the delivery agent, which runs once per message.
bool host_exists(const std::filesystem::path& hosts_file, std::string_view host);

}  // namespace sdps::hostdb
