#include "connection.hpp"

#include "bounded.hpp"
#include "command_line.hpp"
#include "dot_stuffer.hpp"
#include "metrics.hpp"
#include "proxy_header.hpp"

#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <poll.h>
#include <sodium.h>

#include <algorithm>

namespace sdps::core {

namespace {

/// A reply could not be completed (a body read failed half way): the only
/// honest thing left is to drop the connection.
class abort_session : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

std::string endpoint_text(const asio::ip::tcp::endpoint& e) {
  std::ostringstream out;
  out << e;
  return out.str();
}

constexpr std::size_t max_status_text = 512 - 7;  // "-ERR " + text + CRLF within 512 octets

/// Output buffer capacity a session keeps while it waits for its client.
constexpr std::size_t idle_output_capacity = 4096;

/// A balancer's PROXY v2 header may carry TLVs; more than this is refused.
constexpr std::size_t max_proxy_header = 16 * 1024;

}  // namespace

connection::connection(asio::ip::tcp::socket socket, std::uint64_t id, chain& modules,
                       const connection_limits& limits, const std::string& banner, stderr_log& server_log,
                       const listener_policy& policy)
    : stream_(std::move(socket)),
      idle_(stream_.socket().get_executor()),
      login_deadline_(stream_.socket().get_executor()),
      policy_(policy),
      id_(id),
      chain_(modules),
      limits_(limits),
      banner_(banner),
      log_(server_log.derive("session " + std::to_string(id))),
      reader_(limits.line_limit) {
  for (const auto& l : chain_.links())
    if (l->timeout.count() > 0) shortest_limit_ = std::min(shortest_limit_, l->timeout);
  boost::system::error_code ec;
  remote_ = stream_.socket().remote_endpoint(ec);
  local_ = stream_.socket().local_endpoint(ec);
}

connection::~connection() {
  reader_.wipe();
  sodium_memzero(in_.data(), in_.size());
}

bool connection::can_start_tls() const {
  return policy_.tls && !policy_.implicit_tls && !stream_.secure() && !tls_requested_;
}

void connection::start_tls() {
  if (!can_start_tls()) throw std::logic_error("STLS is not possible on this session");
  tls_requested_ = true;
}

bool connection::plaintext_auth_allowed() const {
  if (stream_.secure() || policy_.plaintext == plaintext_policy::always) return true;
  // remote_endpoint(), not remote_: the address the session answers for
  // (a PROXY header may have replaced the peer's).
  const auto address = remote_endpoint().address();
  return policy_.trusted && core::contains(*policy_.trusted, address);
}

awaitable<std::optional<std::string>> connection::continuation(std::string challenge) {
  out_ += "+ ";
  for (char c : challenge) out_ += (c == '\r' || c == '\n' || c == '\0') ? ' ' : c;
  out_ += "\r\n";
  line_reader::status status = line_reader::status::need_more;
  try {
    status = co_await next_input();
  } catch (const boost::system::system_error& e) {
    log_->debug("waiting for a continuation line: ", e.code().message());
    close();
    co_return std::nullopt;
  }
  rearm_idle_timer();
  if (status != line_reader::status::line || closed_) co_return std::nullopt;
  co_return reader_.line();
}

void connection::close() {
  if (closed_) return;
  closed_ = true;
  stream_.close();
  idle_.cancel();
  login_deadline_.cancel();
}

void connection::enter(pop3_state next) {
  if (state_ == pop3_state::authorization && next == pop3_state::transaction) {
    state_ = next;
    authenticated_pending_ = true;
    login_deadline_.cancel();
    return;
  }
  if (state_ == pop3_state::transaction && next == pop3_state::update) {
    state_ = next;
    return;
  }
  throw std::logic_error(std::string("illegal state change from ") + to_string(state_) + " to " + to_string(next));
}

std::shared_ptr<void>& connection::slot_storage(const void* owner) {
  if (auto* p = find_slot_storage(owner)) return *p;
  return slots_.emplace_back(owner, nullptr).second;
}

std::shared_ptr<void>* connection::find_slot_storage(const void* owner) {
  for (auto& [key, value] : slots_)
    if (key == owner) return &value;
  return nullptr;
}

void connection::drop_slot(const void* owner) {
  const auto it = std::find_if(slots_.begin(), slots_.end(), [owner](const auto& s) { return s.first == owner; });
  if (it != slots_.end()) slots_.erase(it);
}

awaitable<void> connection::run() {
  auto self = shared_from_this();
  log_->debug("connect from ", remote_);
  process_metrics().session_opened();
  rearm_idle_timer();
  idle_.expires_at(last_active_ + limits_.idle_timeout);
  asio::co_spawn(get_executor(), [self]() { return self->watchdog(); }, asio::detached);
  if (limits_.login_timeout.count() > 0) {
    login_deadline_.expires_after(limits_.login_timeout);
    asio::co_spawn(get_executor(), [self]() { return self->login_deadline(); }, asio::detached);
  }
  try {
    co_await serve();
  } catch (const abort_session& e) {
    record_.ended(session_end::reply_failed);
    log_->warning("closing: ", e.what());
  } catch (const boost::system::system_error& e) {
    // The client went away or the idle timer closed the socket.
    record_.ended(session_end::client_gone);
    log_->debug("connection ended: ", e.code().message());
  } catch (const std::exception& e) {
    record_.ended(session_end::error);
    log_->error("closing after unexpected error: ", e.what());
  }
  close();
  // A module call that overran its time limit is still running: the
  // modules hear of the end only once it has returned.
  if (late_) co_await late_->wait();
  // Modules hear of the end only of a session they heard begin (not of a
  // balancer's connection closed for want of a PROXY header).
  if (announced_) co_await chain_.fire(self, event::disconnect);
  // Newest slot first: later modules may hold on to earlier ones' state.
  while (!slots_.empty()) slots_.pop_back();
  reader_.wipe();
  log_->write_event(log_level::info, "logout",
                    record_.logout_fields(login_, state_ != pop3_state::authorization, remote_, local_, stream_.secure()));
  process_metrics().session_closed(record_.how());
}

awaitable<void> connection::watchdog() {
  auto self = shared_from_this();
  using clock = std::chrono::steady_clock;
  while (!closed_) {
    boost::system::error_code ec;
    co_await idle_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    if (closed_) break;
    const auto now = clock::now();
    if (call_deadline_ <= now) {
      co_await call_overrun();
      break;
    }
    const auto idle_at = last_active_ + limits_.idle_timeout;
    if (idle_at <= now) {
      // RFC 1939 section 3: the autologout timer ends the session without UPDATE.
      log_->info("idle for ", limits_.idle_timeout.count() / 1000, "s: closing without UPDATE");
      record_.ended(session_end::idle);
      close();
      break;
    }
    // While a read runs, its deadline; while commands keep coming, soon
    // enough that the next read's deadline is never earlier than this
    // wake; otherwise the idle timer alone.
    auto next = std::min(idle_at, call_deadline_);
    if (now - last_active_ < shortest_limit_) next = std::min(next, now + shortest_limit_);
    if (idle_.expiry() != next) idle_.expires_at(next);
  }
}

void connection::watch(std::chrono::steady_clock::time_point when) {
  // Moving the timer earlier cancels the watchdog's wait; it then sleeps
  // again until the new time.
  if (!closed_ && when < idle_.expiry()) idle_.expires_at(when);
}

void connection::call_started(const module_instance& l) {
  calling_ = &l;
  answer_overrun_ = true;
  call_deadline_ = std::chrono::steady_clock::now() + l.timeout;
  watch(call_deadline_);
}

bool connection::call_ended() {
  call_deadline_ = std::chrono::steady_clock::time_point::max();
  calling_ = nullptr;
  return overran_;
}

awaitable<void> connection::call_overrun() {
  auto self = shared_from_this();
  overran_ = true;
  call_deadline_ = std::chrono::steady_clock::time_point::max();
  record_.ended(session_end::module_timeout);
  if (calling_) {
    process_metrics().add("sdps_module_timeouts_total", {{"instance", calling_->instance}});
    calling_->log->error("session ", id_, ": ", answer_overrun_ ? "a command" : "reading a reply body",
                         ": no answer within ", calling_->timeout.count(),
                         "ms; ending the session once the call returns");
  }
  // The call is still running, and the session's own coroutine waits in
  // it: the stream is ours unless that call is writing (a continuation
  // line's challenge). Replies queued before still go out; a multi-line
  // reply already under way cannot become -ERR.
  std::string last;
  if (answer_overrun_ || !reply_flushed_) {
    if (!answer_overrun_) out_.resize(std::min(out_.size(), reply_start_));
    last.swap(out_);
    last += "-ERR [SYS/TEMP] the server took too long, try again later\r\n";
  }
  out_.clear();
  if (!last.empty() && !writing_ && !closed_) {
    try {
      co_await stream_.write(asio::buffer(last));
    } catch (const boost::system::system_error&) {
      // The client is gone: nothing more to tell it.
    }
  }
  close();
}

awaitable<void> connection::login_deadline() {
  auto self = shared_from_this();
  // Spawned (so posted) before serve() runs: a session that serve() has
  // already closed (a client that reset at once) must not wait on a timer
  // that close() could not cancel yet. Such a wait would hold the session,
  // and keep its event loop from stopping at shutdown, until the deadline.
  if (closed_ || state_ != pop3_state::authorization) co_return;
  boost::system::error_code ec;
  co_await login_deadline_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  // Cancelled by a login or by close(); commands never move the deadline,
  // so a client that keeps sending NOOP still goes.
  if (ec || closed_ || state_ != pop3_state::authorization) co_return;
  log_->info("no login within ", limits_.login_timeout.count() / 1000, "s: closing");
  close();
}

bool connection::still_open() {
  if (closed_) return false;
  // POLLRDHUP reports the client's FIN even while data it sent before is
  // still unread, which a read would only reach after all of it.
  pollfd p{stream_.socket().native_handle(), POLLRDHUP, 0};
  if (::poll(&p, 1, 0) <= 0 || !(p.revents & (POLLRDHUP | POLLHUP | POLLERR))) return true;
  log_->info("the client has gone: closing without running the commands it left behind");
  record_.ended(session_end::client_gone);
  close();
  return false;
}

awaitable<bool> connection::read_proxy_header() {
  auto self = shared_from_this();
  // Set once this function has decided, so a deadline already due then
  // closes nothing.
  auto decided = std::make_shared<bool>(false);
  auto expired = std::make_shared<bool>(false);
  asio::steady_timer deadline(get_executor());
  deadline.expires_after(limits_.proxy_header_timeout);
  deadline.async_wait([this, self, decided, expired](const boost::system::error_code& ec) {
    if (ec || *decided) return;
    *expired = true;
    close();
  });
  // The header is read and nothing after it: the client's own octets (a
  // TLS ClientHello, pipelined commands) stay in the socket for the TLS
  // stream or the line reader. Each read peeks first and then takes only
  // the octets the header is still owed (all it peeked while incomplete:
  // an unfinished header is header to its last octet).
  std::string received;
  std::array<char, 4096> buffer;
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
      *decided = true;
      if (*expired)
        log_->warning("no PROXY header from ", remote_, " within ", limits_.proxy_header_timeout.count(),
                      "ms: closing");
      else
        log_->debug("the balancer ", remote_, " closed before sending a PROXY header");
      close();
      co_return false;
    }
    if (parsed.state == proxy::status::incomplete) continue;
    *decided = true;
    deadline.cancel();
    if (parsed.state == proxy::status::invalid) {
      log_->warning("closing: ", parsed.error, " (from ", remote_, ", which must send a PROXY header)");
      sodium_memzero(received.data(), received.size());
      close();
      co_return false;
    }
    via_ = remote_;
    const auto& h = parsed.value;
    if (h.cmd == proxy::command::local) {
      // A health check: the balancer speaks for itself.
      log_->debug("PROXY v2 LOCAL from ", remote_, ": the balancer's own connection");
    } else if (h.source) {
      remote_ = *h.source;
      log_->debug("client ", remote_, " via ", *via_, " (PROXY v", h.version, ")");
      // Per-address limits count the client, not the balancer.
      if (ticket_ && !ticket_->rekey(remote_.address())) {
        log_->info("too many connections from ", remote_.address(), " (via ", via_->address(), "): refused");
        out_ = "-ERR [SYS/TEMP] too many connections from your address, try again later\r\n";
        co_await flush();
        close();
        co_return false;
      }
    } else {
      log_->debug("PROXY v", h.version, " header from ", remote_, " names no TCP client: keeping the balancer's address");
    }
    // The balancer's word that it terminated TLS is not TLS to us.
    if (h.balancer_tls) log_->debug("the balancer reports TLS with its client; not taken as TLS here");
    co_return true;
  }
}

awaitable<void> connection::serve() {
  auto self = shared_from_this();
  if (core::contains(limits_.proxy_protocol_from, remote_.address())) {
    const bool accepted = co_await read_proxy_header();
    if (!accepted) co_return;
  }
  announced_ = true;
  if (policy_.implicit_tls) {
    try {
      co_await stream_.handshake(policy_.tls->current(), policy_.tls->config().handshake_timeout);
    } catch (const boost::system::system_error& e) {
      log_->info("TLS handshake failed: ", e.code().message());
      co_return;
    }
    log_->debug("TLS: ", stream_.description());
  }
  auto greeting = co_await chain_.fire(self, event::connect);
  late_ = std::move(greeting.late);
  if (greeting.answer) {
    const bool refused = !greeting.answer->reply.positive;
    if (refused) greeting.answer->reply.close = true;
    if (refused) record_.ended(session_end::refused);
    if (!co_await send(std::move(*greeting.answer))) {
      co_await flush();
      co_return;
    }
  } else {
    out_ = "+OK " + banner_ + "\r\n";
  }
  co_await flush();

  for (;;) {
    const line_reader::status status = co_await next_input();
    rearm_idle_timer();
    if (status == line_reader::status::overlong) {
      out_ += "-ERR line too long (the limit is 512 octets)\r\n";
      continue;
    }
    // Shutdown, the idle timer or the client leaving may have closed the
    // session while earlier lines ran: what is still queued is dropped
    // unrun (above all a QUIT, whose UPDATE nobody would hear of).
    if (!still_open()) break;
    const bool going = co_await execute(reader_.line());
    if (!going) break;
    if (tls_requested_) co_await begin_tls();
  }
  co_await flush();
  // (After an overrun the watchdog may still be writing its -ERR.)
  if (!overran_) co_await stream_.goodbye();
}

awaitable<line_reader::status> connection::next_input() {
  for (;;) {
    if (in_begin_ < in_end_) {
      in_begin_ += reader_.feed(std::string_view(in_.data() + in_begin_, in_end_ - in_begin_));
      const line_reader::status status = reader_.next();
      if (status != line_reader::status::need_more) co_return status;
    }
    // Everything read so far has been answered: the replies go out
    // together, and the input (which may have held a password) is wiped.
    sodium_memzero(in_.data(), in_end_);
    in_begin_ = in_end_ = 0;
    co_await flush();
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
      if (via_) throw abort_session("client " + endpoint_text(remote_) + " sent a PROXY header of its own after the balancer's");
      throw abort_session("a PROXY header from " + endpoint_text(remote_) + ", which is not in proxy_protocol_from");
    }
  }
}

awaitable<void> connection::begin_tls() {
  tls_requested_ = false;
  co_await flush();
  // RFC 2595 section 4, CVE-2011-0411: nothing the client sent before the
  // handshake may run inside TLS.
  const std::size_t dropped = in_end_ - in_begin_ + reader_.buffered();
  if (dropped) log_->info("STLS: discarding ", dropped, " octet(s) sent before the TLS handshake");
  sodium_memzero(in_.data(), in_.size());
  in_begin_ = in_end_ = 0;
  reader_.reset();
  // A USER given in clear text does not carry over.
  login_.reset();
  try {
    co_await stream_.handshake(policy_.tls->current(), policy_.tls->config().handshake_timeout);
  } catch (const boost::system::system_error& e) {
    log_->info("STLS: TLS handshake failed: ", e.code().message());
    throw;
  }
  log_->debug("STLS: ", stream_.description());
  rearm_idle_timer();
}

awaitable<bool> connection::execute(const std::string& line) {
  command cmd = parse_command(line);
  if (cmd.name.empty()) {
    out_ += "-ERR empty command\r\n";
    co_return true;
  }
  log_->debug("command ", printable(cmd.name, 16));
  const std::string verb = cmd.name;
  auto result = co_await chain_.dispatch(shared_from_this(), std::move(cmd), this);
  if (result.overran) {
    // The watchdog answered -ERR [SYS/TEMP] and closed at the deadline;
    // the call has returned since.
    co_return false;
  }
  if (result.late) {
    // A module call overran its time limit: the session ends (-ERR
    // [SYS/TEMP], close); run() waits for the call before disconnect.
    late_ = result.late;
    record_.ended(session_end::module_timeout);
    co_await send(std::move(result));
    co_return false;
  }
  const bool known = result.by != nullptr, positive = result.reply.positive;
  if (state_ == pop3_state::update) {
    record_.ended(positive ? session_end::quit : session_end::update_failed);
    record_.command(verb, known, positive, 0);
    // UPDATE's work is done (the reply says how it went); let modules give
    // back what the session held, locks above all, before the client hears
    // +OK and can log in again.
    auto fired = co_await chain_.fire(shared_from_this(), event::quit);
    late_ = std::move(fired.late);
    co_await send(std::move(result));
    co_return false;
  }
  const bool keep_going = co_await send(std::move(result));
  record_.command(verb, known, positive, body_octets_);
  if (!keep_going) record_.ended(verb == "QUIT" ? session_end::quit : session_end::closed);
  if (authenticated_pending_) {
    authenticated_pending_ = false;
    process_metrics().login_ok();
    co_await flush();
    if (closed_) co_return false;
    auto fired = co_await chain_.fire(shared_from_this(), event::authenticated);
    if (fired.late) {
      late_ = std::move(fired.late);
      co_return false;
    }
  }
  co_return keep_going;
}

void connection::append_status(const response& r) {
  out_ += r.positive ? "+OK" : "-ERR";
  if (!r.text.empty()) {
    out_ += ' ';
    const std::size_t n = std::min(r.text.size(), max_status_text);
    for (std::size_t i = 0; i < n; ++i) {
      const char c = r.text[i];
      out_ += (c == '\r' || c == '\n' || c == '\0') ? ' ' : c;
    }
  }
  out_ += "\r\n";
}

awaitable<bool> connection::send(dispatch_result result) {
  response& r = result.reply;
  body_octets_ = 0;
  reply_start_ = out_.size();
  reply_flushed_ = false;
  append_status(r);
  if (r.multiline) {
    dot_stuffer stuffer;
    if (r.body) {
      // The module's reads are awaited here directly: no coroutine or
      // timer of their own. Their time limit is a deadline the watchdog
      // keeps (call_overrun()); a late read is still awaited here, so the
      // disconnect event can only come after it, as after any late call.
      std::unique_ptr<body_source> body(std::move(r.body));
      const auto limit = result.by ? result.by->timeout : std::chrono::milliseconds(std::chrono::seconds(60));
      // A body that knows its size gets a buffer just big enough (one more
      // octet to see its end): small messages cost one read.
      const std::optional<std::uint64_t> size = body->size();
      std::size_t want = limits_.body_chunk;
      if (size && *size < want) want = static_cast<std::size_t>(*size) + 1;
      // A small body goes out with its status line in one write: room for
      // it, its stuffing dots (rare) and the end line, made once.
      if (size && *size < limits_.flush_threshold)
        out_.reserve(out_.size() + static_cast<std::size_t>(*size) + static_cast<std::size_t>(*size / 64) + 8);
      std::unique_ptr<char[]> chunk(new char[want]);
      for (;;) {
        // Closed meanwhile (shutdown, the idle timer): nothing will be sent.
        if (closed_) co_return false;
        std::size_t n = 0;
        calling_ = result.by;
        answer_overrun_ = false;
        call_deadline_ = std::chrono::steady_clock::now() + limit;
        watch(call_deadline_);
        try {
          n = co_await body->read(std::span<char>(chunk.get(), want));
        } catch (const std::exception& e) {
          if (call_ended()) throw abort_session("a reply body's read overran its time limit");
          if (result.by) result.by->log->error("session ", id_, ": reading a reply body: ", e.what());
          throw abort_session("a multi-line reply failed half way");
        }
        if (call_ended()) throw abort_session("a reply body's read overran its time limit");
        if (n == 0) break;
        n = std::min(n, want);
        body_octets_ += n;
        const std::string_view piece(chunk.get(), n);
        if (n >= limits_.flush_threshold && stuffer.verbatim(piece)) {
          // A big piece with no line to stuff goes out from where it was
          // read: no copy through out_.
          co_await flush();
          co_await write_out(asio::buffer(piece));
          stuffer.passed(piece);
          continue;
        }
        stuffer.append(piece, out_);
        if (out_.size() >= limits_.flush_threshold) co_await flush();
      }
    }
    stuffer.finish(out_);
  }
  if (out_.size() >= limits_.flush_threshold) co_await flush();
  co_return !r.close;
}

awaitable<void> connection::flush() {
  if (out_.empty() || closed_) co_return;
  co_await write_out(asio::buffer(out_));
  out_.clear();
}

awaitable<void> connection::write_out(asio::const_buffer data) {
  if (closed_) co_return;
  reply_flushed_ = true;
  writing_ = true;
  try {
    co_await stream_.write(data);
  } catch (...) {
    writing_ = false;
    throw;
  }
  writing_ = false;
  process_metrics().sent(data.size());
  rearm_idle_timer();
}

}  // namespace sdps::core
