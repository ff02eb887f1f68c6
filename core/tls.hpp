#pragma once
// The server's TLS credentials: one OpenSSL context built from the `tls:`
// section and shared by every event loop, replaced as a whole on SIGHUP
// (sessions keep the one they began with); and the keys that seal its
// session tickets, rotated on a timer and on SIGHUP.

#include "config.hpp"
#include "logging.hpp"

#include <openssl/ssl.h>

#include <array>
#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>

namespace sdps::core {

/// Mozilla's "intermediate" TLS 1.2 cipher list (TLS 1.3 suites stay
/// OpenSSL's defaults, which are the same three).
extern const char* const intermediate_ciphers;

/// The keys that seal and open session tickets (RFC 5077, RFC 8446 4.6.1):
/// resumption is stateless, the server keeps no session. New tickets are
/// sealed with the current key; a ticket sealed with the key before it
/// still opens (and is replaced by a fresh one) for one more period; older
/// ones do not, and their clients get a full handshake. A key is current
/// for `period`, or until rotate(). Thread-safe: every event loop's
/// handshakes use the one object.
class ticket_keys {
 public:
  using clock = std::chrono::steady_clock;

  /// One key: the name a ticket carries in clear, AES-256-CBC's key and
  /// HMAC-SHA256's.
  struct key {
    std::array<unsigned char, 16> name{};
    std::array<unsigned char, 32> cipher{}, mac{};
  };

  /// A first key, current from `now`.
  explicit ticket_keys(std::chrono::seconds period, clock::time_point now = clock::now());
  ~ticket_keys();
  ticket_keys(const ticket_keys&) = delete;
  ticket_keys& operator=(const ticket_keys&) = delete;

  /// The key to seal a new ticket with (a fresh one first if the current
  /// one's period is over).
  key sealing(clock::time_point now);
  /// The key named `name`, if tickets sealed with it still open; `renew`
  /// tells whether it is the previous key (the client should get a ticket
  /// sealed with the current one).
  std::optional<key> opening(std::span<const unsigned char, 16> name, clock::time_point now, bool& renew);
  /// A fresh current key now; the current one becomes the previous one.
  void rotate(clock::time_point now);
  /// How long a key seals tickets (and a ticket is valid).
  std::chrono::seconds period() const { return period_; }

 private:
  void rotate_if_due(clock::time_point now);  // under lock_

  const std::chrono::seconds period_;
  std::mutex lock_;  // guards the rest
  key current_;
  std::optional<key> previous_;
  clock::time_point current_since_;
};

/// A server SSL_CTX with the certificate, key and settings of one load of
/// the `tls:` section. Handshakes on every event loop share it.
class tls_context {
 public:
  /// Builds the context: TLS 1.2 and 1.3 only, the configured (or the
  /// intermediate) ciphers, the certificate chain exactly as the file has
  /// it, the key, no session cache, one ticket per handshake sealed with
  /// `keys`. Throws config_error naming the file when a file is unreadable,
  /// the key does not match the certificate, or the certificate is expired
  /// or not yet valid.
  tls_context(const tls_config& config, std::shared_ptr<ticket_keys> keys);
  ~tls_context();
  tls_context(const tls_context&) = delete;
  tls_context& operator=(const tls_context&) = delete;

  SSL_CTX* native() const { return ctx_; }
  /// Seals and opens tickets with `keys` from now on (before the context
  /// is shared: not thread-safe).
  void use_keys(std::shared_ptr<ticket_keys> keys);
  /// The leaf certificate (DER), to tell whether a reload changed it.
  const std::string& certificate() const { return leaf_; }
  const std::shared_ptr<ticket_keys>& keys() const { return keys_; }

 private:
  SSL_CTX* ctx_ = nullptr;
  std::string leaf_;
  std::shared_ptr<ticket_keys> keys_;
};

/// The context in force. Thread-safe: SIGHUP replaces it on the first
/// event loop while every loop's handshakes read it.
class tls_credentials {
 public:
  /// Loads the files; throws config_error.
  explicit tls_credentials(tls_config config);

  /// The context new handshakes use.
  std::shared_ptr<const tls_context> current() const {
    std::lock_guard guard(lock_);
    return current_;
  }
  /// The `tls:` section in force.
  tls_config config() const {
    std::lock_guard guard(lock_);
    return config_;
  }
  /// How long a client has to finish its handshake (`handshake_timeout`).
  std::chrono::milliseconds handshake_timeout() const {
    std::lock_guard guard(lock_);
    return config_.handshake_timeout;
  }
  /// SIGHUP: re-reads certificate and key, with the `tls:` section
  /// `changed` when the file's changed (other files, ciphers, time
  /// limits); on a problem logs it and keeps the context and the section
  /// in force. The ticket keys rotate (tickets sealed before still open,
  /// once); with another certificate, or another ticket_key_rotation, they
  /// start afresh (no session made under the old certificate resumes under
  /// the new one).
  void reload(logger& log, const std::optional<tls_config>& changed = std::nullopt);

 private:
  mutable std::mutex lock_;  // guards config_ and current_
  tls_config config_;
  std::shared_ptr<const tls_context> current_;
};

}  // namespace sdps::core
