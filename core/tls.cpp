#include "tls.hpp"

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509err.h>

#include <sodium.h>

#include <algorithm>
#include <cstring>
#include <stdexcept>

namespace sdps::core {

const char* const intermediate_ciphers =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
    "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
    "DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384:DHE-RSA-CHACHA20-POLY1305";

namespace {

std::string openssl_error() {
  const unsigned long code = ERR_get_error();
  ERR_clear_error();
  if (!code) return "unknown OpenSSL error";
  char text[256];
  ERR_error_string_n(code, text, sizeof text);
  return text;
}

ticket_keys::key fresh_key() {
  ticket_keys::key k;
  if (RAND_bytes(k.name.data(), static_cast<int>(k.name.size())) != 1 ||
      RAND_bytes(k.cipher.data(), static_cast<int>(k.cipher.size())) != 1 ||
      RAND_bytes(k.mac.data(), static_cast<int>(k.mac.size())) != 1)
    throw std::runtime_error("TLS: no random octets for a session ticket key: " + openssl_error());
  return k;
}

void wipe(ticket_keys::key& k) { sodium_memzero(&k, sizeof k); }

// The ticket cipher, fetched once: OpenSSL's own ticket code fetches it by
// name for every ticket.
EVP_CIPHER* ticket_cipher() {
  static EVP_CIPHER* const cipher = EVP_CIPHER_fetch(nullptr, "AES-256-CBC", nullptr);
  return cipher;
}

// Where an SSL_CTX keeps its ticket_keys (ex_data slot), made once.
int keys_index() {
  static const int index = SSL_CTX_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return index;
}

// OpenSSL's ticket key callback (SSL_CTX_set_tlsext_ticket_key_evp_cb): on
// any event loop's thread, during a handshake.
int on_ticket_key(SSL* ssl, unsigned char key_name[16], unsigned char iv[EVP_MAX_IV_LENGTH], EVP_CIPHER_CTX* cipher,
                  EVP_MAC_CTX* mac, int sealing) {
  auto* keys = static_cast<ticket_keys*>(SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), keys_index()));
  EVP_CIPHER* aes = ticket_cipher();
  if (!keys || !aes) return -1;
  const auto now = ticket_keys::clock::now();
  bool renew = false;
  std::optional<ticket_keys::key> k;
  if (sealing) {
    k = keys->sealing(now);
    std::memcpy(key_name, k->name.data(), k->name.size());
    if (RAND_bytes(iv, EVP_CIPHER_get_iv_length(aes)) != 1) {
      wipe(*k);
      return -1;
    }
  } else {
    k = keys->opening(std::span<const unsigned char, 16>(key_name, 16), now, renew);
    if (!k) return 0;  // an unknown or retired key: a full handshake
  }
  char digest[] = "SHA256";
  const OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
                               OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, k->mac.data(), k->mac.size()),
                               OSSL_PARAM_construct_end()};
  const bool ready = EVP_MAC_CTX_set_params(mac, params) == 1 &&
                     (sealing ? EVP_EncryptInit_ex2(cipher, aes, k->cipher.data(), iv, nullptr)
                              : EVP_DecryptInit_ex2(cipher, aes, k->cipher.data(), iv, nullptr)) == 1;
  wipe(*k);
  if (!ready) return -1;
  // TLS 1.3: a fresh ticket after every resumption (RFC 8446 C.4: a
  // ticket used once cannot link a client's connections), as OpenSSL's own
  // ticket code does. TLS 1.2: only for a ticket sealed with the previous
  // key, so that a client's ticket outlives the key rotation.
  return renew || (!sealing && SSL_version(ssl) >= TLS1_3_VERSION) ? 2 : 1;
}

}  // namespace

// ---------------------------------------------------------------- ticket keys

ticket_keys::ticket_keys(std::chrono::seconds period, clock::time_point now)
    : period_(period), current_(fresh_key()), current_since_(now) {
  if (period_.count() <= 0) throw std::invalid_argument("a ticket key period must be positive");
}

ticket_keys::~ticket_keys() {
  wipe(current_);
  if (previous_) wipe(*previous_);
}

void ticket_keys::rotate_if_due(clock::time_point now) {
  if (now - current_since_ < period_) return;
  // The current key's period is over: it still opens tickets until the
  // next rotation, unless that second period is over too (a server that
  // sealed and opened nothing for so long keeps no old key). A ticket's
  // own lifetime (the period, checked by OpenSSL) ends before its key's.
  if (now - current_since_ < 2 * period_) {
    if (previous_) wipe(*previous_);
    previous_ = current_;
  } else if (previous_) {
    wipe(*previous_);
    previous_.reset();
  }
  key next = fresh_key();
  current_ = next;
  current_since_ = now;
  wipe(next);
}

ticket_keys::key ticket_keys::sealing(clock::time_point now) {
  std::lock_guard guard(lock_);
  rotate_if_due(now);
  return current_;
}

std::optional<ticket_keys::key> ticket_keys::opening(std::span<const unsigned char, 16> name, clock::time_point now,
                                                     bool& renew) {
  std::lock_guard guard(lock_);
  rotate_if_due(now);
  renew = false;
  if (std::equal(name.begin(), name.end(), current_.name.begin())) return current_;
  if (previous_ && std::equal(name.begin(), name.end(), previous_->name.begin())) {
    renew = true;
    return previous_;
  }
  return std::nullopt;
}

void ticket_keys::rotate(clock::time_point now) {
  key next = fresh_key();
  std::lock_guard guard(lock_);
  if (previous_) wipe(*previous_);
  previous_ = current_;
  current_ = next;
  current_since_ = now;
  wipe(next);
}

// ---------------------------------------------------------------- context

tls_context::tls_context(const tls_config& config, std::shared_ptr<ticket_keys> keys)
    : ctx_(SSL_CTX_new(TLS_server_method())), keys_(std::move(keys)) {
  if (!ctx_) throw config_error("tls: cannot make an OpenSSL context: " + openssl_error());
  try {
    SSL_CTX_set_min_proto_version(ctx_, TLS1_2_VERSION);
    SSL_CTX_set_max_proto_version(ctx_, TLS1_3_VERSION);
    SSL_CTX_set_options(ctx_, SSL_OP_ALL | SSL_OP_NO_COMPRESSION | SSL_OP_SINGLE_DH_USE | SSL_OP_NO_RENEGOTIATION);
    // The chain is the file's, sent as it is: no chain built from a
    // certificate store at each handshake when the file holds the leaf alone.
    SSL_CTX_set_mode(ctx_, SSL_MODE_NO_AUTO_CHAIN);
    // Resumption is stateless (tickets): no session cache to fill, lock and
    // flush. One ticket per handshake (OpenSSL's default is two, for
    // clients that open parallel connections; a POP3 client opens one).
    SSL_CTX_set_session_cache_mode(ctx_, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_num_tickets(ctx_, 1);
    if (SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx_, &on_ticket_key) != 1 || !ticket_cipher())
      throw config_error("tls: cannot set up session tickets: " + openssl_error());
    use_keys(keys_);
    const std::string ciphers = config.ciphers.empty() ? intermediate_ciphers : config.ciphers;
    ERR_clear_error();
    if (SSL_CTX_set_cipher_list(ctx_, ciphers.c_str()) != 1)
      throw config_error("tls: 'ciphers' names no usable cipher: " + openssl_error());
    if (SSL_CTX_use_certificate_chain_file(ctx_, config.certificate.c_str()) != 1)
      throw config_error("tls: cannot use the certificate " + config.certificate.string() + ": " + openssl_error());
    if (SSL_CTX_use_PrivateKey_file(ctx_, config.key.c_str(), SSL_FILETYPE_PEM) != 1) {
      if (ERR_GET_REASON(ERR_peek_last_error()) == X509_R_KEY_VALUES_MISMATCH) {
        ERR_clear_error();
        throw config_error("tls: the key " + config.key.string() + " does not match the certificate " +
                           config.certificate.string());
      }
      throw config_error("tls: cannot use the key " + config.key.string() + ": " + openssl_error());
    }
    if (SSL_CTX_check_private_key(ctx_) != 1)
      throw config_error("tls: the key " + config.key.string() + " does not match the certificate " +
                         config.certificate.string());
    X509* leaf = SSL_CTX_get0_certificate(ctx_);
    if (!leaf) throw config_error("tls: " + config.certificate.string() + " holds no certificate");
    if (X509_cmp_current_time(X509_get0_notAfter(leaf)) <= 0)
      throw config_error("tls: the certificate " + config.certificate.string() + " has expired");
    if (X509_cmp_current_time(X509_get0_notBefore(leaf)) >= 0)
      throw config_error("tls: the certificate " + config.certificate.string() + " is not valid yet");
    unsigned char* der = nullptr;
    const int length = i2d_X509(leaf, &der);
    if (length <= 0) throw config_error("tls: cannot encode the certificate " + config.certificate.string());
    leaf_.assign(reinterpret_cast<const char*>(der), static_cast<std::size_t>(length));
    OPENSSL_free(der);
    ERR_clear_error();
  } catch (...) {
    SSL_CTX_free(ctx_);
    throw;
  }
}

tls_context::~tls_context() { SSL_CTX_free(ctx_); }

void tls_context::use_keys(std::shared_ptr<ticket_keys> keys) {
  // A ticket is valid as long as its key seals new ones: it still opens
  // for a period after that, so it never outlives its key.
  SSL_CTX_set_timeout(ctx_, static_cast<long>(keys->period().count()));
  if (SSL_CTX_set_ex_data(ctx_, keys_index(), keys.get()) != 1)
    throw config_error("tls: cannot set up session tickets: " + openssl_error());
  keys_ = std::move(keys);
}

// ---------------------------------------------------------------- credentials

namespace {

std::chrono::seconds ticket_period(const tls_config& config) {
  return std::max(std::chrono::seconds(1), std::chrono::duration_cast<std::chrono::seconds>(config.ticket_key_rotation));
}

}  // namespace

tls_credentials::tls_credentials(tls_config config)
    : config_(std::move(config)),
      current_(std::make_shared<const tls_context>(config_, std::make_shared<ticket_keys>(ticket_period(config_)))) {}

void tls_credentials::reload(logger& log, const std::optional<tls_config>& changed) {
  const tls_config wanted = changed ? *changed : config();
  try {
    const auto before = current();
    auto fresh = std::make_shared<tls_context>(wanted, std::make_shared<ticket_keys>(ticket_period(wanted)));
    // The same certificate: the keys go on, rotated (tickets sealed before
    // still open, once). Another one: fresh keys, so that no session made
    // under the old certificate resumes under the new one.
    const bool same = fresh->certificate() == before->certificate() &&
                      before->keys()->period() == ticket_period(wanted);
    if (same) {
      fresh->use_keys(before->keys());
      before->keys()->rotate(ticket_keys::clock::now());
    }
    {
      std::lock_guard guard(lock_);
      current_ = std::move(fresh);
      config_ = wanted;
    }
    log.info("reload: TLS certificate ", wanted.certificate.string(), " loaded",
             same ? " (the same; session ticket keys rotated)" : "");
  } catch (const std::exception& e) {
    log.error("reload: ", e.what(), "; keeping the certificate loaded before");
  }
}

}  // namespace sdps::core
