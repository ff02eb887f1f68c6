#include "client_stream.hpp"

#include <boost/asio/write.hpp>

namespace sdps::core {

awaitable<std::size_t> client_stream::read_some(asio::mutable_buffer into) {
  if (secure_) co_return co_await tls_->async_read_some(into, asio::use_awaitable);
  co_return co_await socket_.async_read_some(into, asio::use_awaitable);
}

awaitable<void> client_stream::write(asio::const_buffer data) {
  if (secure_) {
    co_await asio::async_write(*tls_, data, asio::use_awaitable);
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

awaitable<void> client_stream::handshake(std::shared_ptr<asio::ssl::context> context,
                                         std::chrono::milliseconds limit) {
  if (tls_) throw std::logic_error("a second TLS handshake on one connection");
  context_ = std::move(context);
  tls_ = std::make_unique<asio::ssl::stream<asio::ip::tcp::socket&>>(socket_, *context_);
  // Asio 1.74 has no per-operation cancellation: a timer closes the socket.
  auto timer = std::make_shared<asio::steady_timer>(socket_.get_executor());
  timer->expires_after(limit);
  auto expired = std::make_shared<bool>(false);
  timer->async_wait([this, expired](const boost::system::error_code& ec) {
    if (ec) return;
    *expired = true;
    close();
  });
  boost::system::error_code ec;
  co_await tls_->async_handshake(asio::ssl::stream_base::server, asio::redirect_error(asio::use_awaitable, ec));
  timer->cancel();
  if (*expired) throw boost::system::system_error(asio::error::timed_out, "TLS handshake");
  if (ec) throw boost::system::system_error(ec, "TLS handshake");
  secure_ = true;
}

awaitable<void> client_stream::goodbye() {
  if (!secure_ || !socket_.is_open()) co_return;
  auto timer = std::make_shared<asio::steady_timer>(socket_.get_executor());
  timer->expires_after(std::chrono::seconds(1));
  timer->async_wait([this](const boost::system::error_code& ec) {
    if (!ec) close();
  });
  boost::system::error_code ec;
  co_await tls_->async_shutdown(asio::redirect_error(asio::use_awaitable, ec));
  timer->cancel();
}

void client_stream::close() {
  boost::system::error_code ignored;
  socket_.shutdown(asio::ip::tcp::socket::shutdown_both, ignored);
  socket_.close(ignored);
}

std::string client_stream::description() const {
  if (!secure_) return "none";
  SSL* ssl = const_cast<asio::ssl::stream<asio::ip::tcp::socket&>&>(*tls_).native_handle();
  return std::string(SSL_get_version(ssl)) + " " + SSL_get_cipher_name(ssl);
}

}  // namespace sdps::core
