#include "auth_cache.hpp"

#include <sodium.h>

#include <cstdint>
#include <stdexcept>

namespace sdps::auth {

auth_cache::auth_cache(std::chrono::milliseconds ttl, std::size_t capacity,
                       std::function<clock::time_point()> now)
    : ttl_(ttl), capacity_(capacity), now_(std::move(now)) {
  if (sodium_init() < 0) throw std::runtime_error("libsodium failed to initialise");
  static_assert(sizeof(key_) == crypto_generichash_KEYBYTES);
  static_assert(sizeof(digest) == crypto_generichash_BYTES);
  crypto_generichash_keygen(key_.data());
  crypto_generichash_keygen(offline_key_.data());
  if (enabled()) index_.reserve(capacity_ < 4096 ? capacity_ : 4096);
}

auth_cache::~auth_cache() {
  sodium_memzero(key_.data(), key_.size());
  sodium_memzero(offline_key_.data(), offline_key_.size());
  for (entry& e : lru_) {
    sodium_memzero(e.value.data(), e.value.size());
    sodium_memzero(e.offline.data(), e.offline.size());
  }
}

auth_cache::digest auth_cache::fingerprint(std::string_view stored_hash, std::string_view password) const {
  // The stored hash's length first, so that no (hash, password) pair can
  // be cut differently into the same octets.
  unsigned char length[8];
  std::uint64_t n = stored_hash.size();
  for (unsigned char& octet : length) {
    octet = static_cast<unsigned char>(n & 0xff);
    n >>= 8;
  }
  crypto_generichash_state state;
  crypto_generichash_init(&state, key_.data(), key_.size(), sizeof(digest));
  crypto_generichash_update(&state, length, sizeof(length));
  crypto_generichash_update(&state, reinterpret_cast<const unsigned char*>(stored_hash.data()), stored_hash.size());
  crypto_generichash_update(&state, reinterpret_cast<const unsigned char*>(password.data()), password.size());
  digest out;
  crypto_generichash_final(&state, out.data(), out.size());
  sodium_memzero(&state, sizeof(state));
  return out;
}

auth_cache::digest auth_cache::offline_fingerprint(std::string_view password) const {
  digest out;
  crypto_generichash(out.data(), out.size(), reinterpret_cast<const unsigned char*>(password.data()), password.size(),
                     offline_key_.data(), offline_key_.size());
  return out;
}

std::string auth_cache::key_of(std::string_view host, credential which) {
  std::string key;
  key.reserve(host.size() + 2);
  key.append(host);
  key.push_back('\0');
  key.push_back(which == credential::pop3 ? 'p' : 'd');
  return key;
}

void auth_cache::erase_locked(lru_list::iterator it) {
  index_.erase(std::string_view(it->key));
  sodium_memzero(it->value.data(), it->value.size());
  sodium_memzero(it->offline.data(), it->offline.size());
  lru_.erase(it);
}

bool auth_cache::verified(std::string_view host, credential which, const digest& d) {
  if (!enabled() || which == credential::none) return false;
  const std::string key = key_of(host, which);
  const clock::time_point now = now_();
  std::lock_guard guard(mutex_);
  const auto found = index_.find(std::string_view(key));
  if (found == index_.end()) return false;
  const lru_list::iterator it = found->second;
  if (now >= it->expires) {
    erase_locked(it);
    return false;
  }
  if (sodium_memcmp(it->value.data(), d.data(), d.size()) != 0) return false;
  lru_.splice(lru_.begin(), lru_, it);
  return true;
}

void auth_cache::remember(std::string_view host, credential which, const digest& d, const digest& offline,
                          std::vector<base::address_prefix> dialup) {
  if (!enabled() || which == credential::none) return;
  std::string key = key_of(host, which);
  const clock::time_point expires = now_() + ttl_;
  if (which != credential::dialup) dialup.clear();
  // The node is made before the lock is taken: the critical section only
  // links it in.
  lru_list fresh;
  fresh.push_back(entry{std::move(key), d, offline, std::move(dialup), expires});
  std::lock_guard guard(mutex_);
  if (const auto found = index_.find(std::string_view(fresh.front().key)); found != index_.end())
    erase_locked(found->second);
  while (lru_.size() >= capacity_) erase_locked(std::prev(lru_.end()));
  lru_.splice(lru_.begin(), fresh);
  index_.emplace(std::string_view(lru_.front().key), lru_.begin());
}

credential auth_cache::verified_offline(std::string_view host, const digest& offline,
                                        const boost::asio::ip::address& from) {
  if (!enabled()) return credential::none;
  const clock::time_point now = now_();
  for (const credential which : {credential::pop3, credential::dialup}) {
    const std::string key = key_of(host, which);
    std::lock_guard guard(mutex_);
    const auto found = index_.find(std::string_view(key));
    if (found == index_.end()) continue;
    const lru_list::iterator it = found->second;
    if (now >= it->expires) {
      erase_locked(it);
      continue;
    }
    if (sodium_memcmp(it->offline.data(), offline.data(), offline.size()) != 0) continue;
    if (which == credential::dialup && !base::contains(it->dialup, from)) continue;
    lru_.splice(lru_.begin(), lru_, it);
    return which;
  }
  return credential::none;
}

void auth_cache::clear() {
  std::lock_guard guard(mutex_);
  while (!lru_.empty()) erase_locked(lru_.begin());
}

void auth_cache::forget(std::string_view host) {
  if (!enabled()) return;
  const std::string keys[] = {key_of(host, credential::pop3), key_of(host, credential::dialup)};
  std::lock_guard guard(mutex_);
  for (const std::string& key : keys)
    if (const auto found = index_.find(std::string_view(key)); found != index_.end()) erase_locked(found->second);
}

std::size_t auth_cache::size() const {
  std::lock_guard guard(mutex_);
  return lru_.size();
}

}  // namespace sdps::auth
