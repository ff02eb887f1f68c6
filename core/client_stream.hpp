#pragma once
// The byte stream of one client connection: the TCP socket, or TLS over it
// once a handshake has completed. The connection reads and writes through
// it and never asks which one it is, so every path (RETR's streaming
// included) is the same code with or without TLS.
//
// TLS is OpenSSL reading and writing the socket itself (no memory BIOs, no
// copies through intermediate buffers): a read or write that cannot go on
// waits for the socket on the event loop and tries again.

#include "tls.hpp"

#include <sdps/asio.hpp>

#include <openssl/ssl.h>

#include <chrono>
#include <memory>
#include <string>

namespace sdps::core {

class client_stream {
 public:
  explicit client_stream(asio::ip::tcp::socket socket) : socket_(std::move(socket)) {}
  ~client_stream();
  client_stream(const client_stream&) = delete;
  client_stream& operator=(const client_stream&) = delete;

  /// Reads what is available (at least one octet); throws on EOF (also a
  /// TLS close_notify) or error. Not a coroutine in plaintext: the
  /// socket's own operation is awaited.
  awaitable<std::size_t> read_some(asio::mutable_buffer into);
  /// Writes all of `data` (over TLS in records of up to 16 KiB); throws on
  /// error.
  awaitable<void> write(asio::const_buffer data);
  /// Writes what the socket takes now, without waiting: the octets written
  /// (over TLS all or none: a TLS write that cannot finish now is finished
  /// by write() with the same octets). Throws on error.
  std::size_t write_now(asio::const_buffer data);
  /// Runs the server side of a TLS handshake with `context`. From then on
  /// reads and writes go through TLS. Throws on failure. Only once. (The
  /// caller bounds it in time: a deadline that closes the socket, which
  /// ends the handshake with an error.)
  awaitable<void> handshake(std::shared_ptr<const tls_context> context);
  /// Sends TLS close_notify, when TLS is in force. It does not wait for
  /// the client's: the connection closes next. Bounded by the caller (a
  /// client that does not read leaves the socket full).
  awaitable<void> goodbye();
  /// Shuts down and closes the socket. Idempotent.
  void close();

  bool secure() const { return secure_; }
  /// The TCP socket underneath (addresses, poll(), options).
  asio::ip::tcp::socket& socket() { return socket_; }
  /// The protocol and cipher in force, for logs ("TLSv1.3 TLS_AES_256_GCM_SHA384").
  std::string description() const;

 private:
  awaitable<std::size_t> tls_read(asio::mutable_buffer into);
  asio::ip::tcp::socket socket_;
  std::shared_ptr<const tls_context> context_;  // kept alive past a SIGHUP
  SSL* ssl_ = nullptr;
  bool secure_ = false;
};

}  // namespace sdps::core
