#include "client_stream.hpp"

#include <boost/asio/ssl/error.hpp>
#include <boost/asio/write.hpp>

#include <openssl/err.h>

#include <cerrno>

namespace sdps::core {

namespace {

// OpenSSL's thread-local error queue must be empty before a call whose
// outcome SSL_get_error() reads. Peeking is much cheaper than clearing in
// OpenSSL 3, and the queue is nearly always empty already.
void clear_errors() {
  if (ERR_peek_error() != 0) ERR_clear_error();
}

[[noreturn]] void throw_tls_error(int code, const char* what) {
  if (code == SSL_ERROR_ZERO_RETURN) throw boost::system::system_error(asio::error::eof, what);  // close_notify
  const int error = errno;
  const unsigned long reason = ERR_get_error();
  ERR_clear_error();
  if (reason != 0)
    throw boost::system::system_error(
        boost::system::error_code(static_cast<int>(reason), asio::error::get_ssl_category()), what);
  if (code == SSL_ERROR_SYSCALL && error != 0)
    throw boost::system::system_error(boost::system::error_code(error, boost::system::system_category()), what);
  // The client closed the connection without close_notify.
  throw boost::system::system_error(asio::ssl::error::stream_truncated, what);
}

// What OpenSSL waits for after a call on `ssl` returned `result`; throws
// when it is not a wait but the end (EOF, an error). Called right after the
// call, while errno is still its.
asio::socket_base::wait_type wanted(SSL* ssl, int result, const char* what) {
  const int code = SSL_get_error(ssl, result);
  if (code == SSL_ERROR_WANT_READ) return asio::socket_base::wait_read;
  if (code == SSL_ERROR_WANT_WRITE) return asio::socket_base::wait_write;
  throw_tls_error(code, what);
}

}  // namespace

client_stream::~client_stream() {
  if (ssl_) SSL_free(ssl_);  // the socket is the connection's to close
}

awaitable<std::size_t> client_stream::read_some(asio::mutable_buffer into) {
  if (!secure_) return socket_.async_read_some(into, asio::use_awaitable);
  return tls_read(into);
}

awaitable<std::size_t> client_stream::tls_read(asio::mutable_buffer into) {
  // OpenSSL reads the socket itself (read-ahead: whatever has arrived, in
  // one read); it waits for the socket only when it has no whole record.
  for (;;) {
    clear_errors();
    std::size_t n = 0;
    const int result = SSL_read_ex(ssl_, into.data(), into.size(), &n);
    if (result == 1) co_return n;
    co_await socket_.async_wait(wanted(ssl_, result, "TLS read"), asio::use_awaitable);
  }
}

std::size_t client_stream::write_now(asio::const_buffer data) {
  if (data.size() == 0) return 0;
  if (secure_) {
    clear_errors();
    std::size_t n = 0;
    const int result = SSL_write_ex(ssl_, data.data(), data.size(), &n);
    if (result == 1) return n;
    wanted(ssl_, result, "TLS write");  // throws unless it is a wait
    return 0;
  }
  boost::system::error_code ec;
  if (!socket_.non_blocking()) socket_.non_blocking(true, ec);
  if (ec) return 0;
  const std::size_t n = socket_.write_some(data, ec);
  if (ec && ec != asio::error::would_block && ec != asio::error::try_again)
    throw boost::system::system_error(ec, "write");
  return ec ? 0 : n;
}

awaitable<void> client_stream::write(asio::const_buffer data) {
  if (secure_) {
    // Each SSL_write_ex seals `data` in records of up to 16 KiB and writes
    // them to the socket as they are made, without a copy in between. One
    // that cannot go on is retried with the same arguments, as OpenSSL
    // requires, once the socket takes more.
    while (data.size() > 0) {
      clear_errors();
      std::size_t n = 0;
      const int result = SSL_write_ex(ssl_, data.data(), data.size(), &n);
      if (result == 1) {
        data += n;
        continue;
      }
      co_await socket_.async_wait(wanted(ssl_, result, "TLS write"), asio::use_awaitable);
    }
    co_return;
  }
  // Most replies fit in the socket's buffer: written now, without a round
  // through the event loop (an asynchronous write that completes at once
  // still queues its completion). What does not fit waits for the socket.
  boost::system::error_code ec;
  if (!socket_.non_blocking()) socket_.non_blocking(true, ec);
  if (!ec) {
    const std::size_t n = socket_.write_some(data, ec);
    if (ec && ec != asio::error::would_block && ec != asio::error::try_again)
      throw boost::system::system_error(ec, "write");
    data += n;
  }
  if (data.size() > 0) co_await asio::async_write(socket_, data, asio::use_awaitable);
}

awaitable<void> client_stream::handshake(std::shared_ptr<const tls_context> context) {
  if (ssl_) throw std::logic_error("a second TLS handshake on one connection");
  context_ = std::move(context);
  clear_errors();
  ssl_ = SSL_new(context_->native());
  boost::system::error_code ec;
  if (ssl_) socket_.non_blocking(true, ec);  // OpenSSL's reads and writes must not block the loop
  if (!ssl_ || ec || SSL_set_fd(ssl_, socket_.native_handle()) != 1) {
    if (ec) throw boost::system::system_error(ec, "TLS handshake");
    throw_tls_error(SSL_ERROR_SSL, "TLS handshake");
  }
  SSL_set_accept_state(ssl_);
  SSL_set_read_ahead(ssl_, 1);
  // Record buffers (16 KiB each way) are given back once empty: a session
  // waiting for its client holds none. A read goes on by itself past
  // records that carry no data (a key update), so OpenSSL asks to wait for
  // the socket only when a read found it empty: the event loop's
  // edge-triggered wait then sees the next octet arrive.
  // A write that could not finish now (write_now) is finished by write()
  // with the same octets, from wherever the caller's buffer then is.
  SSL_set_mode(ssl_, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_AUTO_RETRY | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  for (;;) {
    clear_errors();
    const int result = SSL_do_handshake(ssl_);
    if (result == 1) break;
    const asio::socket_base::wait_type wait = wanted(ssl_, result, "TLS handshake");
    co_await socket_.async_wait(wait, asio::redirect_error(asio::use_awaitable, ec));
    if (ec) break;
  }
  if (ec) throw boost::system::system_error(ec, "TLS handshake");
  secure_ = true;
}

awaitable<void> client_stream::goodbye() {
  if (!secure_ || !socket_.is_open()) co_return;
  // Our close_notify, written now as a rule. The client's is not awaited:
  // the connection is closed next, and a client that answers has read
  // everything before it.
  clear_errors();
  int result = SSL_shutdown(ssl_);
  if (result >= 0) co_return;
  if (SSL_get_error(ssl_, result) != SSL_ERROR_WANT_WRITE) {
    ERR_clear_error();  // the client has gone: nothing to say goodbye to
    co_return;
  }
  // The socket is full: the caller's deadline bounds the wait.
  for (;;) {
    boost::system::error_code ec;
    co_await socket_.async_wait(asio::socket_base::wait_write, asio::redirect_error(asio::use_awaitable, ec));
    if (ec) break;
    clear_errors();
    result = SSL_shutdown(ssl_);
    if (result >= 0) break;
    if (SSL_get_error(ssl_, result) != SSL_ERROR_WANT_WRITE) {
      ERR_clear_error();
      break;
    }
  }
}

void client_stream::close() {
  boost::system::error_code ignored;
  socket_.shutdown(asio::ip::tcp::socket::shutdown_both, ignored);
  socket_.close(ignored);
}

std::string client_stream::description() const {
  if (!secure_) return "none";
  return std::string(SSL_get_version(ssl_)) + " " + SSL_get_cipher_name(ssl_);
}

}  // namespace sdps::core
