// sdps-tls-floor: what OpenSSL itself costs a server per TLS handshake,
// with sdps's own server context (core/tls.*: the same options, ticket
// keys and callback), measured in memory, without sockets, kernel or event
// loop: the floor under sdpsd's figures for new and resumed handshakes, set
// beside the cryptography a handshake cannot avoid (one signature, one
// X25519 key generation and one key agreement), timed in the same process
// the way `openssl speed` times them.
//
//   sdps-tls-floor [--key ecdsa|rsa] [--handshakes N] [--tls-max 1.2|1.3]
//
// Each handshake: the server's SSL_new, its SSL_do_handshake calls, the
// greeting's SSL_write (which carries the session ticket), SSL_shutdown and
// SSL_free are timed on the thread's CPU clock; the client's calls, which
// run in between, are not. A resumed handshake offers the ticket of the
// handshake before. Prints one RESULT line of JSON and a readable summary.

#include "config.hpp"
#include "tls.hpp"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

[[noreturn]] void fail(const std::string& what) {
  std::string detail;
  while (const unsigned long e = ERR_get_error()) {
    char text[256];
    ERR_error_string_n(e, text, sizeof text);
    detail += std::string("; ") + text;
  }
  throw std::runtime_error(what + detail);
}

double thread_seconds() {
  timespec t{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_nsec) * 1e-9;
}

/// Adds the thread CPU time of the calls made in its life to `total`.
class timed {
 public:
  explicit timed(double& total) : total_(total), start_(thread_seconds()) {}
  ~timed() { total_ += thread_seconds() - start_; }
  timed(const timed&) = delete;
  timed& operator=(const timed&) = delete;

 private:
  double& total_;
  double start_;
};

struct pkey_free {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
using pkey_ptr = std::unique_ptr<EVP_PKEY, pkey_free>;

pkey_ptr make_key(const std::string& kind) {
  EVP_PKEY* key = kind == "rsa" ? EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", static_cast<size_t>(2048))
                                : EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256");
  if (!key) fail("key generation");
  return pkey_ptr(key);
}

/// A self-signed certificate for `key`, valid for a day, and its key, as
/// PEM files in `dir` (tls_context reads files, as sdpsd does).
sdps::core::tls_config write_credentials(EVP_PKEY* key, const std::filesystem::path& dir) {
  X509* cert = X509_new();
  if (!cert) fail("X509_new");
  X509_set_version(cert, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(cert), 1);
  X509_gmtime_adj(X509_getm_notBefore(cert), -3600);
  X509_gmtime_adj(X509_getm_notAfter(cert), 86400);
  X509_set_pubkey(cert, key);
  X509_NAME* name = X509_get_subject_name(cert);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>("pop3.test"), -1, -1, 0);
  X509_set_issuer_name(cert, name);
  if (X509_sign(cert, key, EVP_sha256()) == 0) fail("X509_sign");
  sdps::core::tls_config config;
  config.certificate = dir / "cert.pem";
  config.key = dir / "key.pem";
  FILE* c = std::fopen(config.certificate.c_str(), "w");
  FILE* k = std::fopen(config.key.c_str(), "w");
  if (!c || !k) throw std::runtime_error("cannot write the credentials in " + dir.string());
  const bool written = PEM_write_X509(c, cert) == 1 && PEM_write_PrivateKey(k, key, nullptr, nullptr, 0, nullptr, nullptr) == 1;
  std::fclose(c);
  std::fclose(k);
  X509_free(cert);
  if (!written) fail("PEM_write");
  return config;
}

/// The client's newest session (ticket), kept by on_new_session: in TLS
/// 1.3 a ticket arrives after the handshake, so SSL_get1_session at its end
/// may hold none yet.
SSL_SESSION* newest = nullptr;

int on_new_session(SSL*, SSL_SESSION* session) {
  if (newest) SSL_SESSION_free(newest);
  newest = session;  // ours now
  return 1;
}

struct costs {
  double server = 0;  // seconds of the server's calls
  int handshakes = 0;
  int resumed = 0;
};

/// One connection in memory: handshake, greeting (with the ticket), the
/// client's QUIT, the server's reply and close_notify.
void connection(SSL_CTX* server_ctx, SSL_CTX* client_ctx, bool resume, costs& out) {
  BIO* server_io = nullptr;
  BIO* client_io = nullptr;
  if (BIO_new_bio_pair(&server_io, 1 << 17, &client_io, 1 << 17) != 1) fail("BIO_new_bio_pair");
  SSL* server = nullptr;
  {
    timed t(out.server);
    server = SSL_new(server_ctx);
    if (!server) fail("SSL_new (server)");
    SSL_set_bio(server, server_io, server_io);
    SSL_set_accept_state(server);
  }
  SSL* client = SSL_new(client_ctx);
  if (!client) fail("SSL_new (client)");
  SSL_set_bio(client, client_io, client_io);
  SSL_set_connect_state(client);
  if (resume && newest && SSL_set_session(client, newest) != 1) fail("SSL_set_session");

  bool server_done = false;
  bool client_done = false;
  for (int turn = 0; !(server_done && client_done); ++turn) {
    if (turn > 20) fail("the handshake does not end");
    if (!client_done) {
      const int r = SSL_do_handshake(client);
      if (r == 1) client_done = true;
      else if (SSL_get_error(client, r) != SSL_ERROR_WANT_READ) fail("client handshake");
    }
    if (!server_done) {
      timed t(out.server);
      const int r = SSL_do_handshake(server);
      if (r == 1) server_done = true;
      else if (SSL_get_error(server, r) != SSL_ERROR_WANT_READ) fail("server handshake");
    }
  }
  const char greeting[] = "+OK pop3.test POP3 server ready\r\n";
  const char quit[] = "QUIT\r\n";
  const char bye[] = "+OK pop3.test POP3 server signing off\r\n";
  char buffer[512];
  size_t n = 0;
  {
    timed t(out.server);
    if (SSL_write_ex(server, greeting, sizeof greeting - 1, &n) != 1) fail("server write");
  }
  if (SSL_read_ex(client, buffer, sizeof buffer, &n) != 1) fail("client read");
  if (SSL_write_ex(client, quit, sizeof quit - 1, &n) != 1) fail("client write");
  {
    timed t(out.server);
    if (SSL_read_ex(server, buffer, sizeof buffer, &n) != 1) fail("server read");
    if (SSL_write_ex(server, bye, sizeof bye - 1, &n) != 1) fail("server write");
    SSL_shutdown(server);
  }
  if (SSL_read_ex(client, buffer, sizeof buffer, &n) != 1) fail("client read");
  // The server's close_notify, and the client's: a client freed before it
  // has sent one leaves its session (the ticket) unresumable.
  if (SSL_read_ex(client, buffer, sizeof buffer, &n) == 1 || SSL_get_error(client, 0) != SSL_ERROR_ZERO_RETURN)
    fail("client: no close_notify");
  SSL_shutdown(client);
  out.handshakes += 1;
  if (SSL_session_reused(client)) out.resumed += 1;
  SSL_free(client);
  {
    timed t(out.server);
    SSL_free(server);
  }
}

/// Mean seconds of `op`, run `count` times.
template <typename Op>
double mean_seconds(int count, Op op) {
  const double start = thread_seconds();
  for (int i = 0; i < count; ++i) op();
  return (thread_seconds() - start) / count;
}

double sign_seconds(EVP_PKEY* key, int count) {
  // As `openssl speed ecdsa`/`rsa` does: a digest's worth of octets signed.
  unsigned char digest[32] = {1};
  std::vector<unsigned char> signature(EVP_PKEY_get_size(key));
  EVP_PKEY_CTX* ctx = EVP_PKEY_CTX_new(key, nullptr);
  if (!ctx || EVP_PKEY_sign_init(ctx) != 1) fail("EVP_PKEY_sign_init");
  if (EVP_PKEY_get_base_id(key) == EVP_PKEY_RSA) EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING);
  const double s = mean_seconds(count, [&] {
    size_t length = signature.size();
    if (EVP_PKEY_sign(ctx, signature.data(), &length, digest, sizeof digest) != 1) fail("EVP_PKEY_sign");
  });
  EVP_PKEY_CTX_free(ctx);
  return s;
}

/// One X25519 key generation and one key agreement with a fixed peer.
double x25519_seconds(int count, double& derive_only) {
  pkey_ptr peer(EVP_PKEY_Q_keygen(nullptr, nullptr, "X25519"));
  if (!peer) fail("X25519 peer");
  unsigned char secret[32];
  const auto agree = [&](EVP_PKEY* mine) {
    EVP_PKEY_CTX* ctx = EVP_PKEY_CTX_new(mine, nullptr);
    size_t length = sizeof secret;
    if (!ctx || EVP_PKEY_derive_init(ctx) != 1 || EVP_PKEY_derive_set_peer(ctx, peer.get()) != 1 ||
        EVP_PKEY_derive(ctx, secret, &length) != 1)
      fail("X25519 derive");
    EVP_PKEY_CTX_free(ctx);
  };
  pkey_ptr fixed(EVP_PKEY_Q_keygen(nullptr, nullptr, "X25519"));
  derive_only = mean_seconds(count, [&] { agree(fixed.get()); });
  return mean_seconds(count, [&] {
    pkey_ptr mine(EVP_PKEY_Q_keygen(nullptr, nullptr, "X25519"));
    if (!mine) fail("X25519 keygen");
    agree(mine.get());
  });
}

int usage() {
  std::fprintf(stderr, "usage: sdps-tls-floor [--key ecdsa|rsa] [--handshakes N] [--tls-max 1.2|1.3]\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  std::string kind = "ecdsa";
  std::string tls_max = "1.3";
  int handshakes = 2000;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (i + 1 >= argc) return usage();
    if (arg == "--key") kind = argv[++i];
    else if (arg == "--handshakes") handshakes = std::atoi(argv[++i]);
    else if (arg == "--tls-max") tls_max = argv[++i];
    else return usage();
  }
  if ((kind != "ecdsa" && kind != "rsa") || handshakes < 10 || (tls_max != "1.2" && tls_max != "1.3")) return usage();
  char dir_template[] = "/tmp/sdps-tls-floor-XXXXXX";
  if (!mkdtemp(dir_template)) return std::perror("mkdtemp"), 1;
  const std::filesystem::path dir = dir_template;
  try {
    const pkey_ptr key = make_key(kind);
    const sdps::core::tls_config config = write_credentials(key.get(), dir);
    auto keys = std::make_shared<sdps::core::ticket_keys>(std::chrono::hours(1));
    const sdps::core::tls_context server(config, keys);

    SSL_CTX* client_ctx = SSL_CTX_new(TLS_client_method());
    if (!client_ctx) fail("SSL_CTX_new (client)");
    SSL_CTX_set_max_proto_version(client_ctx, tls_max == "1.2" ? TLS1_2_VERSION : TLS1_3_VERSION);
    SSL_CTX_set_verify(client_ctx, SSL_VERIFY_NONE, nullptr);
    SSL_CTX_set_session_cache_mode(client_ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(client_ctx, on_new_session);

    costs warm, fresh, resumed;
    for (int i = 0; i < 20; ++i) connection(server.native(), client_ctx, i % 2 == 1, warm);
    for (int i = 0; i < handshakes; ++i) connection(server.native(), client_ctx, false, fresh);
    for (int i = 0; i < handshakes; ++i) connection(server.native(), client_ctx, true, resumed);
    if (newest) SSL_SESSION_free(newest);
    SSL_CTX_free(client_ctx);

    const int ops = kind == "rsa" ? 400 : 4000;
    const double sign = sign_seconds(key.get(), ops);
    double derive = 0;
    const double x25519 = x25519_seconds(4000, derive);
    const double new_us = 1e6 * fresh.server / fresh.handshakes;
    const double resumed_us = 1e6 * resumed.server / resumed.handshakes;
    const double crypto_us = 1e6 * (sign + x25519);
    std::printf(
        "RESULT {\"key\":\"%s\",\"tls_max\":\"%s\",\"handshakes\":%d,\"new_us\":%.1f,\"resumed_us\":%.1f,"
        "\"resumed_share\":%.1f,\"sign_us\":%.1f,\"x25519_keygen_derive_us\":%.1f,\"x25519_derive_us\":%.1f}\n",
        kind.c_str(), tls_max.c_str(), handshakes, new_us, resumed_us, resumed.resumed * 100.0 / resumed.handshakes,
        1e6 * sign, 1e6 * x25519, 1e6 * derive);
    std::printf("%s, TLS up to %s, sdps's server context, in memory (no sockets), %d handshakes each:\n",
                kind == "rsa" ? "RSA-2048" : "ECDSA P-256", tls_max.c_str(), handshakes);
    std::printf("  server CPU per connection, new handshake:      %8.1f us (%.0f/s on one core)\n", new_us,
                1e6 / new_us);
    std::printf("  server CPU per connection, resumed handshake:  %8.1f us (%.0f/s; %.0f%% of the offers resumed)"
                " = %.0f%% of a new one\n",
                resumed_us, 1e6 / resumed_us, resumed.resumed * 100.0 / resumed.handshakes,
                100.0 * resumed_us / new_us);
    std::printf("  the cryptography alone: sign %.1f us, X25519 key generation + agreement %.1f us (agreement %.1f):"
                " %.1f us = %.0f/s on one core\n",
                1e6 * sign, 1e6 * x25519, 1e6 * derive, crypto_us, 1e6 / crypto_us);
    std::printf("  so OpenSSL's handshake, with nothing of sdps's around it, runs at %.0f%% of the"
                " cryptography's rate\n",
                100.0 * crypto_us / new_us);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "sdps-tls-floor: %s\n", e.what());
    std::filesystem::remove_all(dir);
    return 1;
  }
  std::filesystem::remove_all(dir);
  return 0;
}
