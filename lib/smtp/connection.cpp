#include "smtp/connection.hpp"

#include <boost/asio/write.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

namespace sdps::smtp {

namespace {

/// Octets asked of the socket at once.
constexpr std::size_t read_chunk = 16 * 1024;

/// Small replies go out at once: no Nagle delay behind an unacknowledged
/// segment (fails harmlessly on a unix socket).
void no_delay(connection::socket_type& socket) {
  const int one = 1;
  ::setsockopt(socket.native_handle(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

}  // namespace

connection::connection(socket_type socket, std::chrono::milliseconds timeout)
    : socket_(std::move(socket)), dog_(socket_.get_executor()), timeout_(timeout) {
  // Cancelled rather than closed: the LMTP server still says 421 on it.
  deadline_ = dog_.add([this](base::watchdog::time_point) {
    timed_out_ = true;
    boost::system::error_code ignored;
    socket_.cancel(ignored);
  });
  if (socket_.is_open()) no_delay(socket_);
}

awaitable<std::unique_ptr<connection>> connection::open(executor ex, base::endpoint to,
                                                        std::chrono::milliseconds timeout) {
  const auto address = to.address();
  if (!address) throw network_error(to.host + " is not a numeric address");
  const asio::generic::stream_protocol::endpoint peer(asio::ip::tcp::endpoint(*address, to.port));
  auto c = std::make_unique<connection>(socket_type(ex), timeout);
  boost::system::error_code ec;
  c->dog_.set_after(c->deadline_, timeout);
  co_await c->socket_.async_connect(peer, asio::redirect_error(asio::use_awaitable, ec));
  c->dog_.clear(c->deadline_);
  if (ec) {
    std::string message = "connect to " + to.to_string() + ": ";
    message += c->timed_out_ ? "timed out" : ec.message();
    throw network_error(message);
  }
  no_delay(c->socket_);
  co_return c;
}

std::string connection::limit_text() const {
  const auto ms = timeout_.count();
  return ms % 1000 == 0 ? std::to_string(ms / 1000) + "s" : std::to_string(ms) + "ms";
}

void connection::fail(const char* what, const boost::system::error_code& ec) const {
  if (timed_out_) throw network_error(std::string(what).append(" within ").append(limit_text()));
  throw network_error(std::string(what).append(": ").append(ec.message()));
}

awaitable<std::string> connection::read_line(std::size_t max) {
  for (;;) {
    const std::string_view pending(in_.data() + in_pos_, in_.size() - in_pos_);
    const auto lf = pending.substr(0, max).find('\n');
    if (lf != std::string_view::npos || pending.size() >= max) {
      const std::size_t take = lf != std::string_view::npos ? lf + 1 : max;
      std::string line(pending.substr(0, take));
      in_pos_ += take;
      co_return line;
    }
    if (in_pos_ > 0) {
      in_.erase(0, in_pos_);
      in_pos_ = 0;
    }
    const std::size_t had = in_.size();
    in_.resize(had + read_chunk);
    boost::system::error_code ec;
    timed_out_ = false;
    dog_.set_after(deadline_, timeout_);
    const std::size_t n =
        co_await socket_.async_read_some(asio::buffer(in_.data() + had, read_chunk), asio::redirect_error(asio::use_awaitable, ec));
    dog_.clear(deadline_);
    in_.resize(had + n);
    if (ec == asio::error::eof) {
      std::string rest = in_;
      in_.clear();
      co_return rest;
    }
    if (ec) fail(timed_out_ ? "no answer" : "receive", ec);
  }
}

awaitable<void> connection::flush() {
  if (out_.empty()) co_return;
  boost::system::error_code ec;
  timed_out_ = false;
  dog_.set_after(deadline_, timeout_);
  co_await asio::async_write(socket_, asio::buffer(out_), asio::redirect_error(asio::use_awaitable, ec));
  dog_.clear(deadline_);
  out_.clear();
  if (ec) fail(timed_out_ ? "the peer took nothing" : "send", ec);
}

void connection::cancel() {
  boost::system::error_code ignored;
  socket_.cancel(ignored);
}

void connection::close() {
  boost::system::error_code ignored;
  socket_.close(ignored);
}

std::string connection::peer() const {
  boost::system::error_code ec;
  const auto remote = socket_.remote_endpoint(ec);
  if (ec) return "?";
  // A client on a unix socket has no name of its own.
  if (remote.data()->sa_family == AF_UNIX) return "local";
  return base::socket_address_text(remote.data());
}

}  // namespace sdps::smtp
