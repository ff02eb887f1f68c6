#include "metrics_http.hpp"

#include <boost/asio/write.hpp>

#include <sstream>

namespace sdps::core {

namespace {

constexpr std::size_t max_request = 8192;

std::string reply(const char* status, const std::string& type, const std::string& body) {
  return std::string("HTTP/1.0 ") + status + "\r\nContent-Type: " + type +
         "\r\nContent-Length: " + std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body;
}

awaitable<void> answer(std::shared_ptr<asio::ip::tcp::socket> socket, metrics_registry& registry) {
  // A slow or silent client gets 5 seconds, then the socket is closed.
  asio::steady_timer deadline(socket->get_executor());
  deadline.expires_after(std::chrono::seconds(5));
  deadline.async_wait([socket](const boost::system::error_code& ec) {
    if (ec) return;
    boost::system::error_code ignored;
    socket->close(ignored);
  });
  std::string request;
  std::array<char, 1024> buffer;
  boost::system::error_code ec;
  while (request.find("\r\n\r\n") == std::string::npos && request.find("\n\n") == std::string::npos &&
         request.size() < max_request) {
    const std::size_t n =
        co_await socket->async_read_some(asio::buffer(buffer), asio::redirect_error(asio::use_awaitable, ec));
    if (ec) break;
    request.append(buffer.data(), n);
  }
  std::string response;
  if (ec) {
    deadline.cancel();
    co_return;
  }
  std::istringstream first(request.substr(0, request.find('\n')));
  std::string method, target, protocol;
  first >> method >> target >> protocol;
  if (request.size() >= max_request) response = reply("413 Request Too Large", "text/plain", "request too large\n");
  else if (method != "GET" && method != "HEAD") response = reply("405 Method Not Allowed", "text/plain", "GET only\n");
  else if (target != "/metrics" && target.rfind("/metrics?", 0) != 0)
    response = reply("404 Not Found", "text/plain", "try /metrics\n");
  else {
    response = reply("200 OK", "text/plain; version=0.0.4; charset=utf-8", registry.render());
    if (method == "HEAD") response.erase(response.find("\r\n\r\n") + 4);
  }
  co_await asio::async_write(*socket, asio::buffer(response), asio::redirect_error(asio::use_awaitable, ec));
  socket->shutdown(asio::ip::tcp::socket::shutdown_both, ec);
  socket->close(ec);
  deadline.cancel();
}

}  // namespace

metrics_endpoint::metrics_endpoint(asio::io_context& io, const asio::ip::tcp::endpoint& where,
                                   metrics_registry& registry, stderr_log& log)
    : acceptor_(io), registry_(registry), log_(log) {
  boost::system::error_code ec;
  acceptor_.open(where.protocol(), ec);
  if (!ec) acceptor_.set_option(asio::ip::tcp::acceptor::reuse_address(true), ec);
  if (!ec) acceptor_.bind(where, ec);
  if (!ec) acceptor_.listen(64, ec);
  if (ec) {
    std::ostringstream text;
    text << "cannot listen for metrics on " << where << ": " << ec.message();
    throw std::runtime_error(text.str());
  }
  if (!where.address().is_loopback())
    log_.warning("metrics_listen ", where, " is not a loopback address: anyone who reaches it can read the metrics");
  log_.info("metrics on http://", acceptor_.local_endpoint(), "/metrics");
}

void metrics_endpoint::start() {
  asio::co_spawn(acceptor_.get_executor(), accept_loop(), asio::detached);
}

void metrics_endpoint::close() {
  boost::system::error_code ignored;
  acceptor_.close(ignored);
}

awaitable<void> metrics_endpoint::accept_loop() {
  for (;;) {
    boost::system::error_code ec;
    auto socket = co_await acceptor_.async_accept(asio::redirect_error(asio::use_awaitable, ec));
    if (ec == asio::error::operation_aborted || !acceptor_.is_open()) co_return;
    if (ec) {
      log_.warning("metrics accept: ", ec.message());
      asio::steady_timer pause(acceptor_.get_executor());
      pause.expires_after(std::chrono::milliseconds(100));
      co_await pause.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      continue;
    }
    auto shared = std::make_shared<asio::ip::tcp::socket>(std::move(socket));
    asio::co_spawn(acceptor_.get_executor(), answer(shared, registry_), asio::detached);
  }
}

}  // namespace sdps::core
