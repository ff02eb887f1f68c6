#include "tls.hpp"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509err.h>

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

}  // namespace

std::shared_ptr<asio::ssl::context> make_server_context(const tls_config& config) {
  auto ctx = std::make_shared<asio::ssl::context>(asio::ssl::context::tls_server);
  SSL_CTX* native = ctx->native_handle();
  SSL_CTX_set_min_proto_version(native, TLS1_2_VERSION);
  SSL_CTX_set_max_proto_version(native, TLS1_3_VERSION);
  ctx->set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_compression |
                   asio::ssl::context::single_dh_use |
                   SSL_OP_NO_RENEGOTIATION);
  const std::string ciphers = config.ciphers.empty() ? intermediate_ciphers : config.ciphers;
  ERR_clear_error();
  if (SSL_CTX_set_cipher_list(native, ciphers.c_str()) != 1)
    throw config_error("tls: 'ciphers' names no usable cipher: " + openssl_error());
  if (SSL_CTX_use_certificate_chain_file(native, config.certificate.c_str()) != 1)
    throw config_error("tls: cannot use the certificate " + config.certificate.string() + ": " + openssl_error());
  if (SSL_CTX_use_PrivateKey_file(native, config.key.c_str(), SSL_FILETYPE_PEM) != 1) {
    if (ERR_GET_REASON(ERR_peek_last_error()) == X509_R_KEY_VALUES_MISMATCH) {
      ERR_clear_error();
      throw config_error("tls: the key " + config.key.string() + " does not match the certificate " +
                         config.certificate.string());
    }
    throw config_error("tls: cannot use the key " + config.key.string() + ": " + openssl_error());
  }
  if (SSL_CTX_check_private_key(native) != 1)
    throw config_error("tls: the key " + config.key.string() + " does not match the certificate " +
                       config.certificate.string());
  X509* leaf = SSL_CTX_get0_certificate(native);
  if (!leaf) throw config_error("tls: " + config.certificate.string() + " holds no certificate");
  if (X509_cmp_current_time(X509_get0_notAfter(leaf)) <= 0)
    throw config_error("tls: the certificate " + config.certificate.string() + " has expired");
  if (X509_cmp_current_time(X509_get0_notBefore(leaf)) >= 0)
    throw config_error("tls: the certificate " + config.certificate.string() + " is not valid yet");
  ERR_clear_error();
  return ctx;
}

tls_credentials::tls_credentials(tls_config config)
    : config_(std::move(config)), current_(make_server_context(config_)) {}

void tls_credentials::reload(logger& log) {
  try {
    auto fresh = make_server_context(config_);
    {
      std::lock_guard guard(lock_);
      current_ = std::move(fresh);
    }
    log.info("reload: TLS certificate ", config_.certificate.string(), " loaded");
  } catch (const std::exception& e) {
    log.error("reload: ", e.what(), "; keeping the certificate loaded before");
  }
}

}  // namespace sdps::core
