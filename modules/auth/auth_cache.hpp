#pragma once
// The auth cache: which (host, password kind, password) triples passed an
// Argon2id check lately, so that a client polling every few minutes with
// the same password is not made to wait for a fresh check each time.
// Settings (`auth_cache_ttl`, `auth_cache_size`) are in README.md.

#include "base/address_prefix.hpp"

#include <array>
#include <chrono>
#include <cstddef>
#include <functional>
#include <list>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace sdps::auth {

/// Which of a host's passwords a PASS matched.
enum class credential { none, pop3, dialup };

/// A bounded, expiring memory of successful password checks.
///
/// An entry holds no password: only a keyed BLAKE2b hash (libsodium
/// crypto_generichash, with a random key made for this object and wiped
/// with it) of the stored Argon2id hash string and the password. So an
/// entry can only ever vouch for the password it was made from *and* the
/// stored hash it was checked against: once `sdps host passwd` changes the
/// hash, the old entries match nothing, even before forget() removes them.
///
/// Only successes are stored; a lookup that finds nothing, an expired
/// entry or another digest says "not known", never "wrong". Entries live
/// `ttl` from the check that made them (a hit does not extend that); at
/// `capacity` the least recently used entry makes room.
///
/// While the host store cannot be asked (a database down), there is no
/// stored hash to check a digest against: each entry also holds a keyed
/// hash of the password alone (another random key), and a dialup entry
/// the host's dialup prefixes as they were, so that cached successes keep
/// working (verified_offline) until they expire. Neither says more about
/// the password than the first digest does to whoever holds the process's
/// memory (its key and the stored hashes).
///
/// Thread-safe: every member may be called from any thread at once. The
/// hashing (fingerprint) runs outside the lock; the lock covers only the
/// map and list operations.
class auth_cache {
 public:
  using clock = std::chrono::steady_clock;
  using digest = std::array<unsigned char, 32>;

  /// `ttl` 0 or `capacity` 0 make a cache that stores nothing. `now` is
  /// the clock (tests pass their own). Throws std::runtime_error if
  /// libsodium cannot be initialised.
  auth_cache(std::chrono::milliseconds ttl, std::size_t capacity,
             std::function<clock::time_point()> now = &clock::now);
  ~auth_cache();
  auth_cache(const auth_cache&) = delete;
  auth_cache& operator=(const auth_cache&) = delete;

  /// False when configured off (ttl or capacity 0).
  bool enabled() const { return ttl_.count() > 0 && capacity_ > 0; }

  /// The keyed hash of `password` as checked against `stored_hash` (the
  /// host's Argon2id string). Cheap (microseconds); takes no lock.
  digest fingerprint(std::string_view stored_hash, std::string_view password) const;

  /// True if a live entry for (host, which) holds exactly `d` (compared in
  /// constant time). A hit makes the entry the most recently used; an
  /// expired entry found here is removed.
  bool verified(std::string_view host, credential which, const digest& d);
  /// The keyed hash of `password` alone, for verified_offline(). Cheap;
  /// takes no lock.
  digest offline_fingerprint(std::string_view password) const;
  /// Records that `d` passed the check of (host, which), replacing any
  /// entry for that pair; `offline` is offline_fingerprint() of the same
  /// password, `dialup` the host's dialup prefixes (for a dialup entry).
  /// Nothing for credential::none or when disabled.
  void remember(std::string_view host, credential which, const digest& d, const digest& offline,
                std::vector<base::address_prefix> dialup = {});
  /// While the host store is unavailable: which of `host`'s live entries
  /// was made from the password whose offline_fingerprint() is `offline`
  /// (compared in constant time): the POP3 password's from anywhere, the
  /// dialup password's from one of the prefixes it was checked with.
  /// credential::none when neither.
  credential verified_offline(std::string_view host, const digest& offline, const boost::asio::ip::address& from);
  /// Drops both of `host`'s entries (its record in the host database changed).
  void forget(std::string_view host);
  /// Drops every entry (every host may have changed).
  void clear();

  /// Entries held now, expired ones not yet removed included.
  std::size_t size() const;

 private:
  struct entry {
    std::string key;  // host, a NUL, then 'p' or 'd'
    digest value;
    digest offline;
    std::vector<base::address_prefix> dialup;  // a dialup entry's prefixes
    clock::time_point expires;
  };
  using lru_list = std::list<entry>;

  static std::string key_of(std::string_view host, credential which);
  void erase_locked(lru_list::iterator it);

  const std::chrono::milliseconds ttl_;
  const std::size_t capacity_;
  const std::function<clock::time_point()> now_;
  std::array<unsigned char, 32> key_{};
  std::array<unsigned char, 32> offline_key_{};

  mutable std::mutex mutex_;  // guards the members below
  lru_list lru_;              // most recently used first
  std::unordered_map<std::string_view, lru_list::iterator> index_;  // views into lru_'s keys
};

}  // namespace sdps::auth
