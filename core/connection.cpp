#include "connection.hpp"

#include "metrics.hpp"
#include "proxy_header.hpp"

#include <boost/asio/read.hpp>
#include <poll.h>
#include <sodium.h>

#include <algorithm>
#include <sstream>

namespace sdps::core {

namespace {

std::string endpoint_text(const asio::ip::tcp::endpoint& e) {
  std::ostringstream out;
  out << e;
  return out.str();
}

/// Output buffer capacity a session keeps while it waits for its client.
constexpr std::size_t idle_output_capacity = 4096;

/// A balancer's PROXY v2 header may carry TLVs; more than this is refused.
constexpr std::size_t max_proxy_header = 16 * 1024;

/// How long a TLS close_notify may take at the end.
constexpr std::chrono::seconds goodbye_limit{1};

}  // namespace

connection::connection(asio::ip::tcp::socket socket, std::uint64_t id, const chain& modules,
                       std::shared_ptr<const connection_settings> settings, logging::source_log& server_log,
                       const listener_policy& policy)
    : stream_(std::move(socket)),
      dog_(stream_.socket().get_executor()),
      held_settings_(std::move(settings)),
      settings_(*held_settings_),
      policy_(policy),
      reader_(settings_.line_limit),
      engine_(id, modules, settings_.session, server_log, *this, dog_) {
  // The connection's own deadline, for whatever it is waiting on before
  // or around the session (a PROXY header, a handshake, the goodbye):
  // when it passes, the socket closes, which ends the wait with an error.
  deadline_ = dog_.add([this](base::watchdog::time_point) {
    expired_ = true;
    close();
  });
  boost::system::error_code ec;
  remote_ = stream_.socket().remote_endpoint(ec);
  local_ = stream_.socket().local_endpoint(ec);
}

connection::~connection() {
  reader_.wipe();
  sodium_memzero(in_.data(), in_.size());
}

awaitable<void> connection::run() {
  const auto self = shared_from_this();
  engine_.begin();
  bool ready = true;
  if (base::contains(settings_.proxy_protocol_from, remote_.address())) ready = co_await read_proxy_header();
  if (ready && policy_.implicit_tls) {
    try {
      co_await handshake();
      engine_.log().debug("TLS: ", stream_.description());
    } catch (const boost::system::system_error& e) {
      engine_.log().info("TLS handshake failed: ", e.code().message());
      ready = false;
    }
  }
  // Named, not a temporary inside the co_await: docs/toolchain.md.
  const std::weak_ptr<void> owner = self;
  co_await engine_.run(owner, ready);
}

void connection::close() {
  if (closed_) return;
  closed_ = true;
  stream_.close();
}

awaitable<void> connection::handshake() {
  expired_ = false;
  dog_.set_after(deadline_, policy_.tls->handshake_timeout());
  boost::system::error_code ec;
  try {
    co_await stream_.handshake(policy_.tls->current());
  } catch (const boost::system::system_error& e) {
    ec = e.code();
  }
  dog_.clear(deadline_);
  if (expired_) throw boost::system::system_error(asio::error::timed_out, "TLS handshake");
  if (ec) throw boost::system::system_error(ec, "TLS handshake");
}

awaitable<void> connection::start_tls() {
  // RFC 2595 section 4, CVE-2011-0411: nothing the client sent before the
  // handshake may run inside TLS.
  const std::size_t dropped = in_end_ - in_begin_ + reader_.buffered();
  if (dropped) engine_.log().info("STLS: discarding ", dropped, " octet(s) sent before the TLS handshake");
  sodium_memzero(in_.data(), in_.size());
  in_begin_ = in_end_ = 0;
  reader_.reset();
  co_await handshake();
  engine_.log().debug("STLS: ", stream_.description());
}

awaitable<void> connection::finish() {
  if (closed_ || !stream_.secure()) co_return;
  expired_ = false;
  dog_.set_after(deadline_, goodbye_limit);
  co_await stream_.goodbye();
  dog_.clear(deadline_);
}

bool connection::client_gone() {
  if (closed_) return true;
  // POLLRDHUP reports the client's FIN even while data it sent before is
  // still unread, which a read would only reach after all of it.
  pollfd p{stream_.socket().native_handle(), POLLRDHUP, 0};
  return ::poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR));
}

std::optional<session_transport::input> connection::line_now(std::string_view& line) {
  if (in_begin_ == in_end_ && !reader_.pending()) return std::nullopt;
  in_begin_ += reader_.feed(std::string_view(in_.data() + in_begin_, in_end_ - in_begin_));
  switch (reader_.next()) {
    case line_reader::status::line:
      line = reader_.line();
      return input::line;
    case line_reader::status::overlong:
      return input::overlong;
    case line_reader::status::need_more:
      break;
  }
  return std::nullopt;
}

awaitable<session_transport::input> connection::next_line(std::string_view& line) {
  for (;;) {
    if (const auto got = line_now(line)) co_return *got;
    // Everything read so far has been answered: the replies go out
    // together, and the input (which may have held a password) is wiped.
    sodium_memzero(in_.data(), in_end_);
    in_begin_ = in_end_ = 0;
    if (!flush_now()) co_await flush();
    // A session waiting for its client holds no big buffer (an idle
    // session costs a few KiB).
    if (out_.capacity() > idle_output_capacity) std::string().swap(out_);
    in_end_ = co_await stream_.read_some(asio::buffer(in_));
    // A PROXY header here comes from a peer not in proxy_protocol_from (or
    // from a client behind a balancer that already sent one): a spoofing
    // attempt, never believed. It is caught when the first read holds the
    // header's start whole; split smaller, it is an unknown command.
    if (std::exchange(first_read_, false) && proxy::starts_with_header(std::string_view(in_.data(), in_end_))) {
      sodium_memzero(in_.data(), in_end_);
      in_begin_ = in_end_ = 0;
      if (via_)
        throw session_aborted("client " + endpoint_text(remote_) + " sent a PROXY header of its own after the balancer's");
      throw session_aborted("a PROXY header from " + endpoint_text(remote_) + ", which is not in proxy_protocol_from");
    }
  }
}

awaitable<void> connection::flush() {
  if (out_.empty() || closed_) co_return;
  co_await write(asio::buffer(out_));
  out_.clear();
}

bool connection::flush_now() {
  if (out_.empty() || closed_) return true;
  const std::size_t n = stream_.write_now(asio::buffer(out_));
  if (n == 0) return false;
  sent_ += n;
  process_metrics().sent(n);
  if (n == out_.size()) {
    out_.clear();
    return true;
  }
  // (Plaintext only: a TLS write is all or nothing.)
  out_.erase(0, n);
  return false;
}

awaitable<void> connection::write(asio::const_buffer data) {
  if (closed_) co_return;
  writing_ = true;
  try {
    co_await stream_.write(data);
  } catch (...) {
    writing_ = false;
    throw;
  }
  writing_ = false;
  sent_ += data.size();
  process_metrics().sent(data.size());
}

awaitable<bool> connection::read_proxy_header() {
  expired_ = false;
  dog_.set_after(deadline_, settings_.proxy_header_timeout);
  // The header is read and nothing after it: the client's own octets (a
  // TLS ClientHello, pipelined commands) stay in the socket for the TLS
  // stream or the line reader. Each read peeks first and then takes only
  // the octets the header is still owed (all it peeked while incomplete:
  // an unfinished header is header to its last octet).
  std::string received;
  std::array<char, 4096> buffer;
  logger& log = engine_.log();
  for (;;) {
    boost::system::error_code ec;
    std::size_t n = co_await stream_.socket().async_receive(asio::buffer(buffer), asio::socket_base::message_peek,
                                                            asio::redirect_error(asio::use_awaitable, ec));
    proxy::result parsed;
    if (!ec) {
      received.append(buffer.data(), n);
      sodium_memzero(buffer.data(), n);
      parsed = proxy::parse(received, max_proxy_header);
      if (parsed.state == proxy::status::complete) {
        // Only the rest of the header: what the client sent after it (a
        // password, perhaps) stays in the socket, and leaves no copy here.
        const std::size_t beyond = received.size() - parsed.length;
        n -= beyond;
        sodium_memzero(received.data() + parsed.length, beyond);
        received.resize(parsed.length);
      }
      if (parsed.state != proxy::status::invalid)
        co_await asio::async_read(stream_.socket(), asio::buffer(buffer.data(), n),
                                  asio::redirect_error(asio::use_awaitable, ec));
      sodium_memzero(buffer.data(), n);
    }
    if (ec) {
      dog_.clear(deadline_);
      if (expired_)
        log.warning("no PROXY header from ", remote_, " within ", settings_.proxy_header_timeout.count(),
                            "ms: closing");
      else
        log.debug("the balancer ", remote_, " closed before sending a PROXY header");
      close();
      co_return false;
    }
    if (parsed.state == proxy::status::incomplete) continue;
    dog_.clear(deadline_);
    if (parsed.state == proxy::status::invalid) {
      log.warning("closing: ", parsed.error, " (from ", remote_, ", which must send a PROXY header)");
      sodium_memzero(received.data(), received.size());
      close();
      co_return false;
    }
    via_ = remote_;
    const auto& h = parsed.value;
    if (h.cmd == proxy::command::local) {
      // A health check: the balancer speaks for itself.
      log.debug("PROXY v2 LOCAL from ", remote_, ": the balancer's own connection");
    } else if (h.source) {
      remote_ = *h.source;
      log.debug("client ", remote_, " via ", *via_, " (PROXY v", h.version, ")");
      // Per-address limits count the client, not the balancer.
      if (ticket_ && !ticket_->rekey(remote_.address())) {
        log.info("too many connections from ", remote_.address(), " (via ", via_->address(), "): refused");
        out_ = "-ERR [SYS/TEMP] too many connections from your address, try again later\r\n";
        co_await flush();
        close();
        co_return false;
      }
    } else {
      log.debug("PROXY v", h.version, " header from ", remote_,
                        " names no TCP client: keeping the balancer's address");
    }
    // The balancer's word that it terminated TLS is not TLS to us.
    if (h.balancer_tls) log.debug("the balancer reports TLS with its client; not taken as TLS here");
    co_return true;
  }
}

}  // namespace sdps::core
