#include "hostdb/synthetic.hpp"

#include "hostdb/file.hpp"

#include <sodium.h>

#include <array>
#include <cstdio>
#include <ostream>

namespace sdps::hostdb {

namespace {

// splitmix64: fast, seeded, good enough for salts nobody will attack.
std::uint64_t next(std::uint64_t& state) {
  std::uint64_t z = (state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

template <std::size_t N>
std::string base64(std::uint64_t& state) {
  std::array<unsigned char, N> bytes{};
  for (std::size_t i = 0; i < N; i += 8) {
    const std::uint64_t v = next(state);
    for (std::size_t k = 0; k < 8 && i + k < N; ++k) bytes[i + k] = static_cast<unsigned char>(v >> (8 * k));
  }
  std::array<char, N * 2 + 4> text{};
  sodium_bin2base64(text.data(), text.size(), bytes.data(), bytes.size(), sodium_base64_VARIANT_ORIGINAL_NO_PADDING);
  return text.data();
}

}  // namespace

std::string synthetic_name(std::size_t n) {
  char name[16];
  std::snprintf(name, sizeof name, "h%07zu", n);
  return name;
}

std::string synthetic_password(const std::string& name) { return std::string("pw-").append(name); }

std::string synthetic_hash(std::uint64_t& state) {
  // What crypto_pwhash_str writes at the interactive cost (m=64 MiB, t=2).
  std::string out = "$argon2id$v=19$m=65536,t=2,p=1$";
  out += base64<16>(state);
  out += '$';
  out += base64<32>(state);
  return out;
}

void write_synthetic_hosts(std::ostream& out, const synthetic_options& options) {
  std::uint64_t state = options.seed;
  std::string text(format_header());
  for (std::size_t n = 0; n < options.hosts; ++n) {
    host_record r;
    r.name = synthetic_name(n);
    std::string address("10.");
    address.append(std::to_string((n >> 16) & 255)).append(".").append(std::to_string((n >> 8) & 255));
    address.append(".").append(std::to_string(n & 255));
    r.dialup.push_back(*prefix::parse(address));
    if (n < options.real) {
      const std::string password = synthetic_password(r.name);
      r.dialup_hash = hash_password(password, options.real_cost);
      r.pop3_hash = hash_password(password, options.real_cost);
    } else {
      r.dialup_hash = synthetic_hash(state);
      r.pop3_hash = synthetic_hash(state);
    }
    append_line(text, r);
    if (text.size() >= (1u << 20)) {
      out << text;
      text.clear();
    }
  }
  out << text;
  out.flush();
}

}  // namespace sdps::hostdb
