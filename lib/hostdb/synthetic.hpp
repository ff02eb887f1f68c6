#pragma once
// Big hosts files for tests and benchmarks (200,000 or 1,000,000 hosts).
//
// Hashing a million real passwords with Argon2id would take hours, so the
// hashes of most hosts are SYNTHETIC: Argon2id strings of the exact shape
// and length libsodium writes at the interactive cost (a random 16-octet
// salt and 32-octet hash, base64), which parse, store and compare like
// real ones but match no password. The first `real` hosts get real hashes
// of synthetic_password(name), so that a benchmark can log them in.
// Whatever uses these files says so.

#include "hostdb/password.hpp"

#include <cstddef>
#include <cstdint>
#include <iosfwd>
#include <string>

namespace sdps::hostdb {

struct synthetic_options {
  std::size_t hosts = 200000;
  std::size_t real = 0;        ///< hosts (the first ones) with real hashes
  cost real_cost = cost::min;  ///< the cost of those
  std::uint64_t seed = 1;      ///< same seed, same file (real hashes aside)
};

/// The name of the n-th host (0-based): "h0000042". In name order.
std::string synthetic_name(std::size_t n);
/// The password a real-hashed host's hashes hold: "pw-h0000042".
std::string synthetic_password(const std::string& name);
/// A syntactically valid Argon2id string that matches no password.
std::string synthetic_hash(std::uint64_t& state);

/// Writes a hosts file (format()'s header and lines, in name order): each
/// host has one dialup address (10.x.y.z) and both hashes.
void write_synthetic_hosts(std::ostream& out, const synthetic_options& options);

}  // namespace sdps::hostdb
