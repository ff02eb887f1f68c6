#pragma once
// The server's TLS credentials: an OpenSSL context built from the `tls:`
// section, replaced as a whole on SIGHUP (sessions keep the one they began with).

#include "config.hpp"
#include "logging.hpp"

#include <sdps/asio.hpp>

#include <boost/asio/ssl.hpp>

#include <memory>
#include <mutex>
#include <string>

namespace sdps::core {

/// Mozilla's "intermediate" TLS 1.2 cipher list (TLS 1.3 suites stay
/// OpenSSL's defaults, which are the same three).
extern const char* const intermediate_ciphers;

/// Builds a server context: TLS 1.2 and 1.3 only, the configured (or the
/// intermediate) ciphers, the certificate chain and key. Throws
/// config_error naming the file when a file is unreadable, the key does not
/// match the certificate, or the certificate is expired or not yet valid.
std::shared_ptr<asio::ssl::context> make_server_context(const tls_config& config);

/// The context in force. Thread-safe: SIGHUP replaces it on the first
/// event loop while every loop's handshakes read it.
class tls_credentials {
 public:
  /// Loads the files; throws config_error.
  explicit tls_credentials(tls_config config);

  /// The context new handshakes use.
  std::shared_ptr<asio::ssl::context> current() const {
    std::lock_guard guard(lock_);
    return current_;
  }
  const tls_config& config() const { return config_; }
  /// SIGHUP: re-reads certificate and key; on a problem logs it and keeps
  /// the context in force.
  void reload(logger& log);

 private:
  tls_config config_;
  mutable std::mutex lock_;  // guards current_
  std::shared_ptr<asio::ssl::context> current_;
};

}  // namespace sdps::core
