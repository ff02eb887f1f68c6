#include "remote_link.hpp"

#include <boost/asio/write.hpp>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <array>

namespace sdps::remote {

namespace {

constexpr std::size_t small_buffer = 8 * 1024;   // status and listing lines
constexpr std::size_t body_buffer = 64 * 1024;    // streaming a message
constexpr std::size_t status_limit = 1024;
constexpr std::size_t body_line_limit = 4096;

std::string seconds(std::chrono::milliseconds limit) {
  const auto ms = limit.count();
  if (ms % 1000 == 0) return std::to_string(ms / 1000) + "s";
  return std::to_string(ms) + "ms";
}

}  // namespace

std::shared_ptr<asio::ssl::context> make_client_context(const std::string& ca_file) {
  auto ctx = std::make_shared<asio::ssl::context>(asio::ssl::context::tls_client);
  SSL_CTX* native = ctx->native_handle();
  SSL_CTX_set_min_proto_version(native, TLS1_2_VERSION);
  ctx->set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_compression |
                   SSL_OP_NO_RENEGOTIATION);
  ERR_clear_error();
  // Only the file's certificates are trusted (not the system's store).
  if (SSL_CTX_load_verify_locations(native, ca_file.c_str(), nullptr) != 1) {
    const unsigned long code = ERR_get_error();
    ERR_clear_error();
    char text[256] = "no certificate in it";
    if (code) ERR_error_string_n(code, text, sizeof text);
    throw config_error("cannot use " + ca_file + " as the back ends' CA: " + text);
  }
  ctx->set_verify_mode(asio::ssl::verify_peer | asio::ssl::verify_fail_if_no_peer_cert);
  return ctx;
}

backend_link::backend_link(executor ex, link_options options, std::shared_ptr<const backend_secret> secret,
                           logger& log, std::string tag)
    : executor_(ex),
      options_(std::move(options)),
      secret_(std::move(secret)),
      log_(log),
      tag_(std::move(tag)),
      socket_(ex),
      watchdog_(ex),
      turn_wakeup_(ex),
      in_(new char[small_buffer]),
      capacity_(small_buffer),
      last_used_(clock::now()) {
  turn_wakeup_.expires_at(std::chrono::steady_clock::time_point::max());
}

backend_link::~backend_link() { close(); }

void backend_link::reserve(std::size_t capacity) {
  if (capacity <= capacity_) return;
  std::unique_ptr<char[]> bigger(new char[capacity]);
  std::copy(in_.get() + begin_, in_.get() + end_, bigger.get());
  end_ -= begin_;
  begin_ = 0;
  in_ = std::move(bigger);
  capacity_ = capacity;
}

void backend_link::close(const std::string& why) {
  if (closed_) return;
  closed_ = true;
  closed_why_ = why.empty() ? "closed" : why;
  boost::system::error_code ignored;
  socket_.shutdown(asio::ip::tcp::socket::shutdown_both, ignored);
  socket_.close(ignored);
  ++watch_generation_;
  watch_at_ = clock::time_point::max();
  watchdog_.cancel();
  turn_wakeup_.cancel();
}

spool_error backend_link::failure(const std::string& what) {
  close(what);
  return spool_error("punt " + options_.punt + " (back end " + options_.display + "): " + what);
}

void backend_link::arm(std::chrono::milliseconds limit) {
  timed_out_ = false;
  deadline_ = clock::now() + limit;
  watch(deadline_);
}

void backend_link::watch(clock::time_point when) {
  if (closed_ || when >= watch_at_) return;  // the watchdog wakes early enough
  watch_at_ = when;
  const std::uint64_t generation = ++watch_generation_;
  watchdog_.expires_at(when);
  watchdog_.async_wait([weak = weak_from_this(), generation](const boost::system::error_code& ec) {
    if (ec) return;  // replaced by an earlier wake-up, or the link closed
    auto self = weak.lock();
    if (!self || self->watch_generation_ != generation) return;
    self->watch_at_ = clock::time_point::max();
    self->on_watchdog();
  });
}

void backend_link::on_watchdog() {
  if (closed_) return;
  const auto now = clock::now();
  if (now >= deadline_) {
    // Closing the socket completes the late operation with an error.
    timed_out_ = true;
    deadline_ = clock::time_point::max();
    boost::system::error_code ignored;
    socket_.close(ignored);
    return;
  }
  if (keepalive_on_) {
    const auto due = last_used_ + options_.keepalive;
    if (now >= due && !held_ && !body_pending_) {
      asio::co_spawn(executor_, keepalive_noop(shared_from_this()), asio::detached);
    } else {
      // Busy means traffic: the back end's timer is being reset anyway.
      watch(now >= due ? now + options_.keepalive : due);
    }
  }
  if (deadline_ != clock::time_point::max()) watch(deadline_);
}

awaitable<void> backend_link::keepalive_noop(std::shared_ptr<backend_link> self) {
  try {
    co_await self->noop();
  } catch (const std::exception& e) {
    self->log_.warning(self->tag_, ": keepalive: ", e.what());
    co_return;
  }
  self->watch(self->last_used_ + self->options_.keepalive);
}

awaitable<void> backend_link::connect() {
  auto self = shared_from_this();
  if (closed_) fail("connection closed before it was opened");
  const auto start = clock::now();
  std::vector<asio::ip::tcp::endpoint> endpoints;
  boost::system::error_code ec;
  const auto literal = asio::ip::make_address(options_.backend.host, ec);
  if (!ec) {
    endpoints.emplace_back(literal, static_cast<unsigned short>(std::stoi(options_.backend.port)));
  } else {
    // A name: resolve it within the connect time limit (the resolver runs
    // on Asio's own thread; cancelling it ends the wait).
    auto resolver = std::make_shared<asio::ip::tcp::resolver>(executor_);
    auto timer = std::make_shared<asio::steady_timer>(executor_, options_.connect_timeout);
    timer->async_wait([resolver](const boost::system::error_code& e) {
      if (!e) resolver->cancel();
    });
    ec = {};
    const auto results = co_await resolver->async_resolve(options_.backend.host, options_.backend.port,
                                                          asio::redirect_error(asio::use_awaitable, ec));
    timer->cancel();
    if (ec) fail("cannot resolve " + options_.backend.host + ": " + ec.message());
    for (const auto& entry : results) endpoints.push_back(entry.endpoint());
  }

  std::string last_error = "no address";
  bool connected = false;
  for (const auto& endpoint : endpoints) {
    const auto spent = std::chrono::duration_cast<std::chrono::milliseconds>(clock::now() - start);
    if (spent >= options_.connect_timeout) {
      last_error = "no connection within " + seconds(options_.connect_timeout);
      break;
    }
    boost::system::error_code e;
    socket_.close(e);
    socket_.open(endpoint.protocol(), e);
    if (e) {
      last_error = e.message();
      continue;
    }
    arm(options_.connect_timeout - spent);
    co_await socket_.async_connect(endpoint, asio::redirect_error(asio::use_awaitable, e));
    disarm();
    if (closed_) fail("closed while connecting");
    if (!e) {
      connected = true;
      break;
    }
    last_error = timed_out_ ? "no connection within " + seconds(options_.connect_timeout) : e.message();
  }
  if (!connected) fail("cannot connect: " + last_error);
  boost::system::error_code ignored;
  socket_.set_option(asio::ip::tcp::no_delay(true), ignored);
  if (options_.tls) {
    const auto spent = std::chrono::duration_cast<std::chrono::milliseconds>(clock::now() - start);
    co_await handshake(std::max(options_.connect_timeout - spent, std::chrono::milliseconds(1)));
  }
  last_used_ = clock::now();
}

awaitable<void> backend_link::handshake(std::chrono::milliseconds limit) {
  auto self = shared_from_this();
  tls_ = std::make_unique<asio::ssl::stream<asio::ip::tcp::socket&>>(socket_, *options_.tls);
  SSL* ssl = tls_->native_handle();
  const std::string& name = options_.server_name;
  boost::system::error_code ec;
  asio::ip::make_address(name, ec);
  // The certificate must name what this link connects to: a DNS name
  // (also sent as SNI) or an IP address (matched against its IP entries).
  const bool set = ec ? SSL_set_tlsext_host_name(ssl, name.c_str()) == 1 && SSL_set1_host(ssl, name.c_str()) == 1
                      : X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), name.c_str()) == 1;
  if (!set) fail("TLS: cannot verify the name '" + printable(name, 80) + "'");
  SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
  ec = {};
  arm(limit);
  co_await tls_->async_handshake(asio::ssl::stream_base::client, asio::redirect_error(asio::use_awaitable, ec));
  disarm();
  if (closed_) fail("closed during the TLS handshake");
  if (!ec) co_return;
  const long verified = SSL_get_verify_result(ssl);
  ERR_clear_error();
  if (verified != X509_V_OK)
    fail(std::string("TLS: the back end's certificate is refused: ") + X509_verify_cert_error_string(verified) +
         " (it must be signed by the 'ca:' file and name " + printable(name, 80) + ")");
  if (timed_out_) fail("no TLS handshake within " + seconds(limit));
  fail("TLS handshake failed (is the back end's listener 'tls: implicit'?): " + ec.message());
}

void backend_link::end(bool quit) {
  if (closed_ || ending_) return;
  ending_ = true;
  keepalive_on_ = false;
  asio::co_spawn(executor_, ending(shared_from_this(), quit), asio::detached);
}

awaitable<void> backend_link::ending(std::shared_ptr<backend_link> self, bool quit) {
  try {
    if (quit) {
      while (self->held_ && !self->closed_) {
        boost::system::error_code ignored;
        co_await self->turn_wakeup_.async_wait(asio::redirect_error(asio::use_awaitable, ignored));
      }
      self->held_ = true;
      turn guard(*self);
      std::vector<std::string> bye{"QUIT"};
      co_await self->send(std::move(bye));
    }
    // Whatever is still to come (a reply nobody reads, QUIT's +OK) is
    // dropped; the back end's close ends the wait (fill() throws at EOF).
    for (;;) {
      self->begin_ = self->end_ = 0;
      co_await self->fill();
    }
  } catch (const std::exception&) {
  }
  self->close("ended");
}

awaitable<void> backend_link::acquire() {
  auto self = shared_from_this();
  while (held_ && !closed_) {
    boost::system::error_code ignored;
    co_await turn_wakeup_.async_wait(asio::redirect_error(asio::use_awaitable, ignored));
  }
  if (closed_ || ending_)
    throw spool_error("punt " + options_.punt + " (back end " + options_.display +
                      "): the connection was lost earlier (" + (closed_ ? closed_why_ : "ended") + ")");
  held_ = true;
  if (body_pending_) {
    try {
      co_await drain();
    } catch (...) {
      release();
      throw;
    }
  }
}

void backend_link::release() {
  held_ = false;
  turn_wakeup_.cancel();
}

awaitable<void> backend_link::send(std::vector<std::string> lines) {
  auto self = shared_from_this();
  if (closed_) fail("the connection was lost earlier (" + closed_why_ + ")");
  out_.clear();
  for (const auto& line : lines) {
    out_ += line;
    out_ += "\r\n";
  }
  boost::system::error_code ec;
  arm(options_.read_timeout);
  if (tls_)
    co_await asio::async_write(*tls_, asio::buffer(out_), asio::redirect_error(asio::use_awaitable, ec));
  else
    co_await asio::async_write(socket_, asio::buffer(out_), asio::redirect_error(asio::use_awaitable, ec));
  disarm();
  if (ec) fail(timed_out_ ? "could not send within " + seconds(options_.read_timeout) : "sending: " + ec.message());
  last_used_ = clock::now();
}

awaitable<void> backend_link::fill() {
  auto self = shared_from_this();
  if (closed_) fail("the connection was lost earlier (" + closed_why_ + ")");
  if (begin_ == end_) {
    begin_ = end_ = 0;
  } else if (begin_ > 0 && capacity_ - end_ < capacity_ / 4) {
    // Little room left at the end: move what is unread to the front.
    std::copy(in_.get() + begin_, in_.get() + end_, in_.get());
    end_ -= begin_;
    begin_ = 0;
  }
  boost::system::error_code ec;
  arm(options_.read_timeout);
  const auto into = asio::buffer(in_.get() + end_, capacity_ - end_);
  std::size_t n = 0;
  if (tls_)
    n = co_await tls_->async_read_some(into, asio::redirect_error(asio::use_awaitable, ec));
  else
    n = co_await socket_.async_read_some(into, asio::redirect_error(asio::use_awaitable, ec));
  disarm();
  if (ec) {
    if (timed_out_) fail("no answer within " + seconds(options_.read_timeout));
    if (ec == asio::error::eof || ec == asio::ssl::error::stream_truncated) fail("the back end closed the connection");
    fail("reading: " + ec.message());
  }
  end_ += n;
  last_used_ = clock::now();
}

awaitable<std::string> backend_link::read_line(std::size_t limit) {
  auto self = shared_from_this();
  for (;;) {
    const char* first = in_.get() + begin_;
    const char* last = in_.get() + end_;
    const char* newline = std::find(first, last, '\n');
    if (newline != last) {
      std::string line(first, newline);
      begin_ += line.size() + 1;
      if (!line.empty() && line.back() == '\r') line.pop_back();
      co_return line;
    }
    if (buffered() > limit) fail("a reply line longer than " + std::to_string(limit) + " octets");
    co_await fill();
  }
}

awaitable<status> backend_link::read_status() {
  auto self = shared_from_this();
  std::string line = co_await read_line(status_limit);
  status out;
  if (line == "+OK" || line.starts_with("+OK ")) {
    out.positive = true;
    out.text = line.size() > 4 ? line.substr(4) : std::string();
  } else if (line == "-ERR" || line.starts_with("-ERR ")) {
    out.text = line.size() > 5 ? line.substr(5) : std::string();
  } else {
    fail("not a POP3 status line: '" + printable(line, 80) + "'");
  }
  co_return out;
}

awaitable<std::optional<std::string>> backend_link::read_body_line() {
  auto self = shared_from_this();
  std::string line = co_await read_line(body_line_limit);
  if (line == ".") co_return std::nullopt;
  if (!line.empty() && line.front() == '.') line.erase(0, 1);
  co_return line;
}

std::uint64_t backend_link::begin_body() {
  reserve(body_buffer);
  body_pending_ = true;
  body_ = unstuffer{};
  return ++body_id_;
}

awaitable<std::size_t> backend_link::read_body(std::uint64_t id, std::span<char> out) {
  auto self = shared_from_this();
  if (id == body_id_ && !body_pending_) co_return 0;  // already at its end
  if (closed_) fail("the connection was lost earlier (" + closed_why_ + ")");
  if (id != body_id_ || held_)
    throw spool_error("punt " + options_.punt + ": a message body was read after its command was given up");
  held_ = true;
  turn guard(*this);
  for (;;) {
    if (buffered() > 0) {
      const auto step = body_.feed(std::string_view(in_.get() + begin_, buffered()), out);
      begin_ += step.consumed;
      if (body_.done()) body_pending_ = false;
      if (step.produced > 0 || body_.done()) co_return step.produced;
    }
    co_await fill();
  }
}

awaitable<void> backend_link::drain() {
  auto self = shared_from_this();
  std::array<char, 4096> scratch;
  std::size_t dropped = 0;
  while (body_pending_) {
    if (buffered() > 0) {
      const auto step = body_.feed(std::string_view(in_.get() + begin_, buffered()), scratch);
      begin_ += step.consumed;
      dropped += step.produced;
      if (body_.done()) body_pending_ = false;
      continue;
    }
    co_await fill();
  }
  log_.debug(tag_, ": skipped ", dropped, " octets of a reply nobody read");
}

awaitable<void> backend_link::noop() {
  auto self = shared_from_this();
  co_await acquire();
  turn guard(*this);
  std::vector<std::string> lines{"NOOP"};
  co_await send(std::move(lines));
  const status reply = co_await read_status();
  if (!reply.positive) log_.warning(tag_, ": keepalive NOOP answered -ERR ", printable(reply.text));
}

void backend_link::start_keepalive() {
  if (options_.keepalive.count() <= 0 || keepalive_on_ || closed_) return;
  keepalive_on_ = true;
  watch(last_used_ + options_.keepalive);
}

}  // namespace sdps::remote
