#pragma once
// A customer host's record (its name, dialup prefixes and two Argon2id
// password hashes), host names, and the hosts in memory as a sorted map.
// Shared by every store (store.hpp), the file format (file.hpp) and the
// admin tool. Plain code, safe on any thread.

#include <utility>

#include "base/address_prefix.hpp"

#include <boost/asio/ip/address.hpp>

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sdps::hostdb {

/// An address prefix: 192.0.2.7, 192.0.2.0/24, 2001:db8::/64 (lib/base's,
/// as every sdps setting that takes one).
using prefix = base::address_prefix;

struct host_record {
  std::string name;             ///< short, lower case: "sample"
  std::vector<prefix> dialup;   ///< where the dialup password is accepted
  std::string dialup_hash;      ///< crypto_pwhash_str output, or empty (not set)
  std::string pop3_hash;        ///< crypto_pwhash_str output, or empty (not set)

  /// True if `a` (the client's address) is one of the host's dialup addresses.
  bool dialup_from(const boost::asio::ip::address& a) const;
};

/// Turns "Sample", "sample.demon.co.uk" (with `customer_domain`
/// "demon.co.uk") into "sample". Returns empty when the text is not a
/// valid host name (letters, digits, hyphens; 1-63 octets) of that domain.
std::string normalise_host(std::string_view text, std::string_view customer_domain);

/// The hosts, by name (sorted, which is also the order of the file).
class database {
 public:
  using map = std::map<std::string, host_record, std::less<>>;

  /// The host named `name` (normalised), or null.
  const host_record* find(std::string_view name) const;
  host_record* find(std::string_view name);
  /// Adds a host; false (and no change) if one with that name exists.
  bool add(host_record record);
  /// Removes a host; false if there was none.
  bool remove(std::string_view name);
  const map& hosts() const { return hosts_; }
  std::size_t size() const { return hosts_.size(); }

 private:
  map hosts_;
};

}  // namespace sdps::hostdb
