#include "hostdb/password.hpp"

#include <sodium.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cstring>
#include <stdexcept>
#include <utility>

namespace sdps::hostdb {

namespace {

struct cost_params {
  unsigned long long ops;
  std::size_t mem;
};

cost_params params(cost c) {
  switch (c) {
    case cost::min: return {crypto_pwhash_argon2id_OPSLIMIT_MIN, crypto_pwhash_argon2id_MEMLIMIT_MIN};
    case cost::interactive:
      return {crypto_pwhash_argon2id_OPSLIMIT_INTERACTIVE, crypto_pwhash_argon2id_MEMLIMIT_INTERACTIVE};
    case cost::moderate: return {crypto_pwhash_argon2id_OPSLIMIT_MODERATE, crypto_pwhash_argon2id_MEMLIMIT_MODERATE};
    case cost::sensitive:
      return {crypto_pwhash_argon2id_OPSLIMIT_SENSITIVE, crypto_pwhash_argon2id_MEMLIMIT_SENSITIVE};
  }
  throw std::logic_error("unknown password cost");
}

}  // namespace

// --- passwords ------------------------------------------------------------------

std::optional<cost> parse_cost(std::string_view name) {
  if (name == "interactive") return cost::interactive;
  if (name == "moderate") return cost::moderate;
  if (name == "sensitive") return cost::sensitive;
  if (name == "min") return cost::min;
  return std::nullopt;
}

const char* to_string(cost c) {
  switch (c) {
    case cost::min: return "min";
    case cost::interactive: return "interactive";
    case cost::moderate: return "moderate";
    case cost::sensitive: return "sensitive";
  }
  return "?";
}

secret::secret(std::string_view text) : data_(std::make_unique<char[]>(text.size() + 1)), size_(text.size()) {
  std::memcpy(data_.get(), text.data(), text.size());
}

secret::~secret() { clear(); }

secret::secret(secret&& other) noexcept : data_(std::move(other.data_)), size_(std::exchange(other.size_, 0)) {}

secret& secret::operator=(secret&& other) noexcept {
  if (this != &other) {
    clear();
    data_ = std::move(other.data_);
    size_ = std::exchange(other.size_, 0);
  }
  return *this;
}

void secret::clear() {
  if (data_) sodium_memzero(data_.get(), size_ + 1);
  size_ = 0;
}

std::string hash_password(std::string_view password, cost c) {
  const cost_params p = params(c);
  std::array<char, crypto_pwhash_STRBYTES> out{};
  if (crypto_pwhash_str_alg(out.data(), password.data(), password.size(), p.ops, p.mem,
                            crypto_pwhash_ALG_ARGON2ID13) != 0)
    throw std::runtime_error(std::string("Argon2id hashing failed (out of memory?) at cost ") + to_string(c));
  return std::string(out.data());
}

hash_cost parameters(cost c) {
  const cost_params p = params(c);
  return {p.ops, p.mem / 1024};
}

std::optional<hash_cost> cost_of(std::string_view hash) {
  // $argon2id$v=19$m=65536,t=2,p=1$SALT$HASH
  if (!is_hash(hash)) return std::nullopt;
  const auto m = hash.find("$m=");
  if (m == std::string_view::npos) return std::nullopt;
  std::string_view rest = hash.substr(m + 3);
  hash_cost out;
  auto number = [&rest](auto& value) {
    std::size_t i = 0;
    value = 0;
    while (i < rest.size() && rest[i] >= '0' && rest[i] <= '9' && i < 12) value = value * 10 + (rest[i++] - '0');
    rest.remove_prefix(i);
    return i > 0;
  };
  if (!number(out.memory_kib) || rest.substr(0, 3) != ",t=") return std::nullopt;
  rest.remove_prefix(3);
  if (!number(out.ops)) return std::nullopt;
  return out;
}

std::string hash_password(std::string_view password, hash_cost c) {
  std::array<char, crypto_pwhash_STRBYTES> out{};
  if (crypto_pwhash_str_alg(out.data(), password.data(), password.size(), c.ops, c.memory_kib * 1024,
                            crypto_pwhash_ALG_ARGON2ID13) != 0)
    throw std::runtime_error("Argon2id hashing failed (out of memory?) at t=" + std::to_string(c.ops) +
                             ", m=" + std::to_string(c.memory_kib) + " KiB");
  return std::string(out.data());
}

bool is_hash(std::string_view hash) {
  static constexpr std::string_view head = crypto_pwhash_argon2id_STRPREFIX;
  if (hash.size() <= head.size() || hash.size() >= crypto_pwhash_STRBYTES || hash.substr(0, head.size()) != head)
    return false;
  return std::all_of(hash.begin(), hash.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '$' || c == '=' || c == ',' || c == '+' || c == '/';
  });
}

bool verify_password(const std::string& hash, std::string_view password) {
  if (!is_hash(hash)) return false;
  return crypto_pwhash_str_verify(hash.c_str(), password.data(), password.size()) == 0;
}

}  // namespace sdps::hostdb
