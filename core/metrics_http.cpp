#include "metrics_http.hpp"

#include "base/watchdog.hpp"

#include <boost/asio/write.hpp>

#include <sstream>

namespace sdps::core {

namespace {

constexpr std::size_t max_request = 8192;

std::string reply(const char* status, const std::string& type, const std::string& body) {
  return std::string("HTTP/1.0 ") + status + "\r\nContent-Type: " + type +
         "\r\nContent-Length: " + std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body;
}

// `admitted` false: the client is outside metrics_allow; its request is
// read all the same, so that it gets the 403 rather than a reset.
awaitable<void> answer(std::shared_ptr<asio::ip::tcp::socket> socket, metrics_registry& registry, bool admitted) {
  // A slow or silent client gets 5 seconds, then the socket is closed
  // (which ends the read or write it is stuck in).
  base::watchdog dog(socket->get_executor());
  const auto deadline = dog.add([socket](base::watchdog::time_point) {
    boost::system::error_code ignored;
    socket->close(ignored);
  });
  dog.set_after(deadline, std::chrono::seconds(5));
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
  if (ec) co_return;
  std::istringstream first(request.substr(0, request.find('\n')));
  std::string method, target, protocol;
  first >> method >> target >> protocol;
  if (!admitted) response = reply("403 Forbidden", "text/plain", "not in metrics_allow\n");
  else if (request.size() >= max_request) response = reply("413 Request Too Large", "text/plain", "request too large\n");
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
}

}  // namespace

metrics_endpoint::metrics_endpoint(asio::io_context& io, const asio::ip::tcp::endpoint& where,
                                   std::vector<base::address_prefix> allow, metrics_registry& registry,
                                   logging::source_log& log)
    : acceptor_(io), allow_(std::move(allow)), registry_(registry), log_(log) {
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
  log_.info("metrics on http://", acceptor_.local_endpoint(), "/metrics");
}

void metrics_endpoint::start() {
  asio::co_spawn(acceptor_.get_executor(), accept_loop(), asio::detached);
}

void metrics_endpoint::allow(std::vector<base::address_prefix> allow) {
  allow_ = std::move(allow);
  refusal_logged_ = false;
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
    const auto peer = socket.remote_endpoint(ec);
    if (ec) continue;  // gone already
    const bool admitted = base::contains(allow_, peer.address());
    if (!admitted && !refusal_logged_) {
      // Once per list, so that a scraper left out is seen without a line
      // per scrape; the rest at debug.
      refusal_logged_ = true;
      log_.warning("metrics: refused ", peer.address(), ": not in metrics_allow (further refusals are logged at debug)");
    } else if (!admitted) {
      log_.debug("metrics: refused ", peer.address(), ": not in metrics_allow");
    }
    auto shared = std::make_shared<asio::ip::tcp::socket>(std::move(socket));
    asio::co_spawn(acceptor_.get_executor(), answer(shared, registry_, admitted), asio::detached);
  }
}

}  // namespace sdps::core
