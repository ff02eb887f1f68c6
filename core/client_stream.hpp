#pragma once
// The byte stream of one client connection: the TCP socket, or TLS over it
// once a handshake has completed. The connection reads and writes through
// it and never asks which one it is, so every path (RETR's streaming
// included) is the same code with or without TLS.

#include <sdps/asio.hpp>

#include <boost/asio/ssl.hpp>

#include <chrono>
#include <memory>

namespace sdps::core {

class client_stream {
 public:
  explicit client_stream(asio::ip::tcp::socket socket) : socket_(std::move(socket)) {}

  /// Reads what is available (at least one octet); throws on EOF or error.
  awaitable<std::size_t> read_some(asio::mutable_buffer into);
  /// Writes all of `data`; throws on error.
  awaitable<void> write(asio::const_buffer data);
  /// Runs the server side of a TLS handshake with `context`, within
  /// `limit` (the socket is closed when it runs out). From then on reads
  /// and writes go through TLS. Throws on failure or time out. Only once.
  awaitable<void> handshake(std::shared_ptr<asio::ssl::context> context, std::chrono::milliseconds limit);
  /// Sends TLS close_notify (within a second), when TLS is in force.
  awaitable<void> goodbye();
  /// Shuts down and closes the socket. Idempotent.
  void close();

  bool secure() const { return secure_; }
  /// The TCP socket underneath (addresses, poll(), options).
  asio::ip::tcp::socket& socket() { return socket_; }
  /// The protocol and cipher in force, for logs ("TLSv1.3 TLS_AES_256_GCM_SHA384").
  std::string description() const;

 private:
  asio::ip::tcp::socket socket_;
  std::shared_ptr<asio::ssl::context> context_;  // kept alive past a SIGHUP
  std::unique_ptr<asio::ssl::stream<asio::ip::tcp::socket&>> tls_;
  bool secure_ = false;
};

}  // namespace sdps::core
