#pragma once
// Passwords: Argon2id hashes (libsodium) at a configured cost, and
// passwords in memory that are wiped when done with. Safe on any thread;
// hashing and verifying are slow on purpose (run them off an event loop).

#include <compare>
#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace sdps::hostdb {

/// Argon2id cost, from the top-level config key `password_cost`.
/// `min` is libsodium's minimum (1 pass, 8 KiB): it makes hashes cheap to
/// crack and exists ONLY for tests and benchmarks.
enum class cost { min, interactive, moderate, sensitive };

/// "interactive", "moderate", "sensitive", "min"; nullopt otherwise.
std::optional<cost> parse_cost(std::string_view name);
const char* to_string(cost c);

/// The longest password a client can send: a POP3 command line is at most
/// 512 octets, and "PASS " and CRLF take 7.
constexpr std::size_t max_password = 505;

/// A password in memory: one fixed buffer, wiped with sodium_memzero when
/// destroyed or cleared. Never copied by accident (move-only).
class secret {
 public:
  secret() = default;
  explicit secret(std::string_view text);
  ~secret();
  secret(secret&& other) noexcept;
  secret& operator=(secret&& other) noexcept;
  secret(const secret&) = delete;
  secret& operator=(const secret&) = delete;

  std::string_view view() const { return {data_.get(), size_}; }
  std::size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  /// Wipes and empties.
  void clear();

 private:
  std::unique_ptr<char[]> data_;
  std::size_t size_ = 0;
};

/// Hashes `password` with Argon2id at `c` (crypto_pwhash_str_alg).
/// Throws std::runtime_error if libsodium fails (out of memory).
std::string hash_password(std::string_view password, cost c);

/// True if `hash` is an Argon2id hash string (the shape stored in the
/// file); says nothing about which password it holds.
bool is_hash(std::string_view hash);

/// The Argon2id parameters a hash was made with (its `t=` and `m=`).
struct hash_cost {
  unsigned long long ops = 0;
  std::size_t memory_kib = 0;
  auto operator<=>(const hash_cost&) const = default;
};

/// The parameters in `hash`; nullopt if it is not an Argon2id hash string.
std::optional<hash_cost> cost_of(std::string_view hash);
/// The parameters `hash_password(.., c)` uses.
hash_cost parameters(cost c);
/// Hashes with explicit parameters (for a dummy that costs what a stored
/// hash costs). Throws std::runtime_error if libsodium fails.
std::string hash_password(std::string_view password, hash_cost c);

/// Constant-time (in the password) Argon2id check. False for a wrong
/// password, and for an empty or malformed hash.
bool verify_password(const std::string& hash, std::string_view password);

}  // namespace sdps::hostdb
