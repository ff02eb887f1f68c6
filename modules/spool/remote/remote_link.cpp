#include "remote_link.hpp"

#include <boost/asio/write.hpp>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace sdps::remote {

namespace {

constexpr std::size_t small_buffer = 8 * 1024;   // status and listing lines; a body's odd octets
constexpr std::size_t status_limit = 1024;
/// A body is read straight into the core's buffer when it offers at least
/// this much; smaller ones go through the link's.
constexpr std::size_t direct_read = 512;

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
      dog_(ex),
      turn_wakeup_(ex),
      in_(new char[small_buffer]),
      capacity_(small_buffer),
      last_used_(clock::now()) {
  turn_wakeup_.expires_at(std::chrono::steady_clock::time_point::max());
  // An operation past its time: closing the socket completes it with an error.
  operation_ = dog_.add([this](clock::time_point) {
    timed_out_ = true;
    boost::system::error_code ignored;
    socket_.close(ignored);
  });
  keepalive_ = dog_.add([this](clock::time_point now) { on_keepalive(now); });
  resolving_ = dog_.add([this](clock::time_point) {
    if (resolver_) resolver_->cancel();
  });
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
  dog_.stop();
  turn_wakeup_.cancel();
}

spool_error backend_link::failure(const std::string& what) {
  close(what);
  return spool_error("punt " + options_.punt + " (back end " + options_.display + "): " + what);
}

void backend_link::arm(std::chrono::milliseconds limit) {
  timed_out_ = false;
  dog_.set_after(operation_, limit);
}

void backend_link::on_keepalive(clock::time_point now) {
  if (closed_ || !keepalive_on_) return;
  const auto due = last_used_ + options_.keepalive;
  if (now >= due && !held_ && !body_pending_) {
    asio::co_spawn(executor_, keepalive_noop(shared_from_this(), lease_), asio::detached);
  } else {
    // Busy means traffic: the back end's timer is being reset anyway.
    dog_.set(keepalive_, now >= due ? now + options_.keepalive : due);
  }
}

awaitable<void> backend_link::keepalive_noop(std::shared_ptr<backend_link> self, std::uint64_t lease) {
  try {
    co_await self->noop(lease);
  } catch (const std::exception& e) {
    self->log_.warning(self->tag_, ": keepalive: ", e.what());
    co_return;
  }
  if (self->keepalive_on_) self->dog_.set(self->keepalive_, self->last_used_ + self->options_.keepalive);
}

awaitable<void> backend_link::connect() {
  auto self = shared_from_this();
  if (closed_) fail("connection closed before it was opened");
  const auto start = clock::now();
  std::vector<asio::ip::tcp::endpoint> endpoints;
  boost::system::error_code ec;
  if (const auto literal = options_.backend.address()) {
    endpoints.emplace_back(*literal, options_.backend.port);
  } else {
    // A name: resolve it within the connect time limit (the resolver runs
    // on Asio's own thread; cancelling it ends the wait).
    resolver_ = std::make_shared<asio::ip::tcp::resolver>(executor_);
    const std::shared_ptr<asio::ip::tcp::resolver> resolver = resolver_;
    dog_.set_after(resolving_, options_.connect_timeout);
    ec = {};
    const auto results = co_await resolver->async_resolve(options_.backend.host, std::to_string(options_.backend.port),
                                                          asio::redirect_error(asio::use_awaitable, ec));
    dog_.clear(resolving_);
    resolver_.reset();
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

awaitable<void> backend_link::open() {
  auto self = shared_from_this();
  co_await connect();
  greeting_ = co_await read_status();
}

void backend_link::park() {
  keepalive_on_ = false;
  parked_ = true;
  dog_.clear_all();
  // A big listing grew the buffer: an idle link keeps a small one.
  if (capacity_ > small_buffer && buffered() == 0) {
    in_.reset(new char[small_buffer]);
    capacity_ = small_buffer;
    begin_ = end_ = 0;
  }
}

bool backend_link::idle_check() {
  if (closed_ || ending_ || held_ || body_pending_ || buffered() > 0) return false;
  // A back end sends nothing unasked: octets waiting here mean it closed
  // its side (a restart, its idle timer) or broke the protocol.
  char probe = 0;
  const ssize_t n = ::recv(socket_.native_handle(), &probe, 1, MSG_PEEK | MSG_DONTWAIT);
  if (n == 0) return false;
  if (n > 0) return static_cast<bool>(tls_);  // over TLS it may be a record of TLS's own
  return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
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
  // An operation that ended after park() (its time limit was a deadline
  // of the watchdog): no wait may stay pending on an idle link's loop.
  if (parked_) dog_.clear_all();
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

awaitable<std::size_t> backend_link::read_some(asio::mutable_buffer into) {
  auto self = shared_from_this();
  if (closed_) fail("the connection was lost earlier (" + closed_why_ + ")");
  boost::system::error_code ec;
  arm(options_.read_timeout);
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
  last_used_ = clock::now();
  co_return n;
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
  if (end_ == capacity_) reserve(capacity_ * 2);
  end_ += co_await read_some(asio::buffer(in_.get() + end_, capacity_ - end_));
}

void backend_link::unread(const char* data, std::size_t size) {
  if (size == 0) return;
  if (begin_ >= size) {
    begin_ -= size;
  } else {
    reserve(buffered() + size);
    std::copy_backward(in_.get() + begin_, in_.get() + end_, in_.get() + size + buffered());
    end_ = size + buffered();
    begin_ = 0;
  }
  std::copy(data, data + size, in_.get() + begin_);
}

awaitable<status> backend_link::read_status() {
  auto self = shared_from_this();
  for (;;) {
    const char* first = in_.get() + begin_;
    const void* newline = std::memchr(first, '\n', buffered());
    if (newline) {
      std::string_view line(first, static_cast<std::size_t>(static_cast<const char*>(newline) - first));
      begin_ += line.size() + 1;
      if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
      ++replies_;
      status out;
      if (line == "+OK" || line.starts_with("+OK ")) {
        out.positive = true;
        if (line.size() > 4) out.text.assign(line.substr(4));
      } else if (line == "-ERR" || line.starts_with("-ERR ")) {
        if (line.size() > 5) out.text.assign(line.substr(5));
      } else {
        fail("not a POP3 status line: '" + printable(line, 80) + "'");
      }
      co_return out;
    }
    if (buffered() > status_limit) fail("a status line longer than " + std::to_string(status_limit) + " octets");
    co_await fill();
  }
}

awaitable<std::string_view> backend_link::read_block(std::size_t limit) {
  auto self = shared_from_this();
  body_scanner scanner;
  std::size_t scanned = 0;  // octets after begin_ known to be body
  for (;;) {
    const auto r = scanner.scan(std::string_view(in_.get() + begin_ + scanned, buffered() - scanned));
    scanned += r.body;
    if (r.end) {
      const std::string_view body(in_.get() + begin_, scanned);
      begin_ += scanned + body_scanner::terminator_size;
      co_return body;
    }
    if (scanned > limit) fail("a multi-line reply longer than " + std::to_string(limit) + " octets");
    co_await fill();
  }
}

std::uint64_t backend_link::begin_body() {
  body_pending_ = true;
  body_ = body_scanner{};
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
      // What the link holds already (the start of the body came with its
      // status line): copy what is decided.
      const auto r = body_.scan(std::string_view(in_.get() + begin_, buffered()), out.size());
      std::copy(in_.get() + begin_, in_.get() + begin_ + r.body, out.data());
      begin_ += r.body;
      if (r.end) {
        begin_ += body_scanner::terminator_size;
        body_pending_ = false;
      }
      if (r.body > 0 || r.end) co_return r.body;
      co_await fill();  // only the start of a line that may end the body is here
      continue;
    }
    if (out.size() < direct_read) {
      co_await fill();
      continue;
    }
    // Nothing buffered: the back end's octets go straight into the core's
    // buffer, and from there to the client, as they came.
    const std::size_t n = co_await read_some(asio::buffer(out.data(), out.size()));
    const auto r = body_.scan(std::string_view(out.data(), n), n);
    if (r.end) {
      body_pending_ = false;
      const std::size_t after = r.body + body_scanner::terminator_size;
      unread(out.data() + after, n - after);  // the next reply's, if any
      co_return r.body;
    }
    unread(out.data() + r.body, n - r.body);  // a line start that may end the body
    if (r.body > 0) co_return r.body;
  }
}

awaitable<void> backend_link::drain() {
  auto self = shared_from_this();
  std::size_t dropped = 0;
  while (body_pending_) {
    if (buffered() > 0) {
      const auto r = body_.scan(std::string_view(in_.get() + begin_, buffered()));
      begin_ += r.body;
      dropped += r.body;
      if (r.end) {
        begin_ += body_scanner::terminator_size;
        body_pending_ = false;
        break;
      }
    }
    co_await fill();
  }
  log_.debug(tag_, ": skipped ", dropped, " octets of a reply nobody read");
}

awaitable<void> backend_link::noop(std::uint64_t lease) {
  auto self = shared_from_this();
  co_await acquire();
  turn guard(*this);
  // The session that wanted it ended while the NOOP waited for its turn:
  // the link was reset (a NOOP now would be refused in the AUTHORIZATION
  // state) and may be idle in its pool, where nothing may run.
  if (lease != lease_ || !keepalive_on_) co_return;
  std::vector<std::string> lines{"NOOP"};
  co_await send(std::move(lines));
  const status reply = co_await read_status();
  if (!reply.positive) log_.warning(tag_, ": keepalive NOOP answered -ERR ", printable(reply.text));
}

void backend_link::start_keepalive() {
  if (options_.keepalive.count() <= 0 || keepalive_on_ || closed_) return;
  keepalive_on_ = true;
  dog_.set(keepalive_, last_used_ + options_.keepalive);
}

}  // namespace sdps::remote
