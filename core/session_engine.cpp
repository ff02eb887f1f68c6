#include "session_engine.hpp"

#include "command_line.hpp"
#include "dot_stuffer.hpp"
#include "login_pipeline.hpp"
#include "metrics.hpp"

#include <sodium.h>

#include <algorithm>

namespace sdps::core {

namespace {

constexpr std::size_t max_status_text = 512 - 7;  // "-ERR " + text + CRLF within 512 octets

/// The verb as the debug log shows it: a verb some module declared, or a
/// placeholder. Anything else came from the client and may be the start of
/// a password (a PASS with a tab, a PLAIN response after a refused AUTH).
std::string_view verb_for_log(const chain& modules, const std::string& verb) {
  return modules.route_for(verb).declared ? std::string_view(verb) : std::string_view("(not a known verb)");
}

response internal_error() { return response::err("[SYS/TEMP] internal server error, try again later"); }
constexpr std::string_view overrun_text = "-ERR [SYS/TEMP] the server took too long, try again later\r\n";

}  // namespace

/// session::log(): the session's lines, with the name of the instance
/// whose call is running, if one is.
class session_engine::session_log final : public logger {
 public:
  session_log(logging::source_log& base, const module_instance* const& calling) : base_(base), calling_(calling) {}
  void write(log_level level, std::string_view line) override {
    if (!calling_) {
      base_.write(level, line);
      return;
    }
    std::string text = calling_->instance;
    text += ": ";
    text += line;
    base_.write(level, text);
  }
  bool enabled(log_level level) const override { return base_.enabled(level); }

 private:
  logging::source_log& base_;
  const module_instance* const& calling_;
};

session_engine::session_engine(std::uint64_t id, const chain& modules, const engine_settings& settings,
                               logging::source_log& server_log, session_transport& transport, base::watchdog& dog)
    : id_(id),
      chain_(modules),
      settings_(settings),
      server_log_(server_log),
      transport_(transport),
      dog_(dog),
      base_log_(server_log.derive("session " + std::to_string(id))),
      log_holder_(std::make_unique<session_log>(*base_log_, calling_)),
      log_(*log_holder_) {
  idle_deadline_ = dog_.add([this](base::watchdog::time_point) { on_idle_deadline(); });
  login_deadline_ = dog_.add([this](base::watchdog::time_point) { on_login_deadline(); });
  call_deadline_ = dog_.add([this](base::watchdog::time_point) { on_call_deadline(); });
}

void session_engine::begin() {
  if (begun_) return;
  begun_ = true;
  active();
  dog_.set(idle_deadline_, last_active_ + settings_.idle_timeout);
  if (settings_.login_timeout.count() > 0) dog_.set_after(login_deadline_, settings_.login_timeout);
}

session_engine::~session_engine() {
  dog_.stop();
  // Newest first: later modules may hold on to earlier ones' state.
  while (!slots_.empty()) slots_.pop_back();
}

// -- the session's life -------------------------------------------------------

awaitable<void> session_engine::run(std::weak_ptr<void> owner, bool connected) {
  owner_ = std::move(owner);
  const std::shared_ptr<void> keep = owner_.lock();
  begin();
  process_metrics().session_opened();
  if (connected && !closed_) {
    log_.debug("connect from ", remote_endpoint());
    try {
      co_await serve();
    } catch (const session_aborted& e) {
      record_.ended(session_end::reply_failed);
      log_.warning("closing: ", e.what());
    } catch (const boost::system::system_error& e) {
      // The client went away, or a deadline closed the connection.
      record_.ended(session_end::client_gone);
      log_.debug("connection ended: ", e.code().message());
    } catch (const std::exception& e) {
      record_.ended(session_end::error);
      log_.error("closing after unexpected error: ", e.what());
    }
    close(nullptr);
    // Every module call was awaited where it was made, a late one
    // included: the modules hear of the end only now.
    co_await fire(event::disconnect);
  } else {
    close(nullptr);
  }
  while (!slots_.empty()) slots_.pop_back();
  const identity* shown = login_ ? &*login_ : tried_ ? &*tried_ : nullptr;
  server_log_.write_event(log_level::info, "logout",
                          record_.logout_fields(shown, login_.has_value(), remote_endpoint(), local_endpoint(),
                                                transport_.secure()));
  process_metrics().session_closed(record_.how());
}

awaitable<void> session_engine::serve() {
  std::optional<outcome> greeting = co_await fire(event::connect);
  if (overran_) co_return;
  if (greeting) {
    if (!greeting->reply.positive) {
      greeting->reply.close = true;
      record_.ended(session_end::refused);
    }
    if (!co_await send(std::move(*greeting))) {
      if (!transport_.flush_now()) co_await transport_.flush();
      co_return;
    }
  } else {
    std::string& out = transport_.output();
    out += "+OK ";
    out += settings_.banner;
    out += "\r\n";
  }
  if (!transport_.flush_now()) co_await transport_.flush();

  for (;;) {
    std::string_view line;
    // A line already buffered (pipelined) is taken without a coroutine.
    std::optional<session_transport::input> ready = transport_.line_now(line);
    const session_transport::input got = ready ? *ready : co_await transport_.next_line(line);
    active();
    if (got == session_transport::input::overlong) {
      transport_.output() += "-ERR line too long (the limit is 512 octets)\r\n";
      continue;
    }
    // Shutdown, a deadline or the client leaving may have closed the
    // session while earlier lines ran: what is still queued is dropped
    // unrun (above all a QUIT, whose UPDATE nobody would hear of).
    if (closed_) break;
    if (transport_.client_gone()) {
      log_.info("the client has gone: closing without running the commands it left behind");
      close(session_end::client_gone);
      break;
    }
    if (!co_await execute(line)) break;
    if (tls_requested_) co_await begin_tls();
  }
  if (overran_) co_return;  // the watchdog is telling the client
  if (!transport_.flush_now()) co_await transport_.flush();
  co_await transport_.finish();
}

void session_engine::close(const char* why) {
  if (why) record_.ended(why);
  if (closed_) return;
  closed_ = true;
  dog_.clear(idle_deadline_);
  dog_.clear(login_deadline_);
  transport_.close();
}

awaitable<void> session_engine::begin_tls() {
  tls_requested_ = false;
  if (!transport_.flush_now()) co_await transport_.flush();
  // RFC 2595 section 4: nothing learnt from the client before TLS counts
  // after it: every module's per-session state goes (a USER given, a
  // challenge answered), and the transport drops unread input.
  while (!slots_.empty()) slots_.pop_back();
  tried_.reset();
  try {
    co_await transport_.start_tls();
  } catch (const boost::system::system_error& e) {
    log_.info("STLS: TLS handshake failed: ", e.code().message());
    throw;
  }
  active();
}

// -- one command ----------------------------------------------------------------

awaitable<bool> session_engine::execute(std::string_view line) {
  command cmd = parse_command(line);
  if (cmd.name.empty()) {
    transport_.output() += "-ERR empty command\r\n";
    co_return true;
  }
  log_.debug("command ", verb_for_log(chain_, cmd.name));

  // The command through the instances that declared it, in chain order,
  // until one answers. (Here rather than in a coroutine of its own: every
  // command passes this way, and a frame per call is what it would cost.)
  outcome result;
  bool answered = false;
  const chain::route& r = chain_.route_for(cmd.name);
  // (No structured bindings in coroutines: docs/toolchain.md.)
  for (const auto& stop : r.visit) {
    const module_instance* l = stop.first;
    if (!stop.second.contains(state_)) continue;
    call_started(*l, true);
    std::optional<verdict> v;
    try {
      v.emplace(co_await l->object->on_command(*this, cmd));
    } catch (const std::exception& e) {
      if (!call_ended()) l->log->error("session ", id_, ": ", cmd.name, ": ", e.what());
    } catch (...) {
      if (!call_ended()) l->log->error("session ", id_, ": ", cmd.name, ": unknown exception");
    }
    // The watchdog answered -ERR [SYS/TEMP] and closed at the deadline;
    // the call has returned since.
    if (call_ended()) co_return false;
    result.by = l;
    answered = true;
    if (!v) {
      result.reply = internal_error();
      break;
    }
    if (v->answered()) {
      result.reply = std::move(v->reply());
      break;
    }
    if (v->is_login()) {
      if (state_ != pop3_state::authorization) {
        l->log->error("session ", id_, ": ", cmd.name, ": a login outside AUTHORIZATION");
        result.reply = internal_error();
        break;
      }
      login_pipeline login(*this);
      result.reply = co_await login.run(std::move(v->login_credentials()));
      if (overran_) co_return false;
      break;
    }
    answered = false;
  }
  if (!answered) {
    result.by = nullptr;
    if (!r.declared)
      result.reply = response::err("unknown command");
    else if (!r.states.contains(state_))
      result.reply = response::err(std::string("command not valid in the ") + to_string(state_) + " state");
    else
      result.reply = response::err("command not available");
  }

  const std::string& verb = cmd.name;
  const bool known = result.by != nullptr, positive = result.reply.positive;
  if (state_ == pop3_state::update) {
    record_.ended(positive ? session_end::quit : session_end::update_failed);
    record_.command(verb, known, positive, 0);
    // UPDATE's work is done (the reply says how it went); modules give
    // back what the session held, locks above all, before the client
    // hears the reply and can log in again.
    co_await fire(event::quit);
    if (overran_) co_return false;
    co_await send(std::move(result));
    co_return false;
  }
  if (logout_pending_) {
    // The login ends before its reply goes out: what it held is free when
    // the front end reads +OK and hands the link to its next session.
    logout_pending_ = false;
    co_await fire(event::logout);
    if (overran_) co_return false;
    state_ = pop3_state::authorization;
    login_.reset();
    maildrop_.reset();
    marks_.reset();
    log_.debug("the login ended; the session goes on");
  }
  bool keep_going;
  if (!result.reply.multiline) {
    // A status line alone: queued at once, without send()'s coroutine.
    body_octets_ = 0;
    append_status(result.reply);
    if (transport_.output().size() >= settings_.flush_threshold && !transport_.flush_now())
      co_await transport_.flush();
    keep_going = !result.reply.close;
  } else {
    keep_going = co_await send(std::move(result));
  }
  record_.command(verb, known, positive, body_octets_);
  if (!keep_going) record_.ended(verb == "QUIT" ? session_end::quit : session_end::closed);
  if (authenticated_pending_) {
    authenticated_pending_ = false;
    if (!transport_.flush_now()) co_await transport_.flush();
    active();
    if (closed_) co_return false;
    co_await fire(event::authenticated);
    if (overran_) co_return false;
  }
  co_return keep_going;
}

awaitable<std::optional<session_engine::outcome>> session_engine::fire(event e) {
  for (const module_instance* l : chain_.hearing(e)) {
    std::optional<verdict> v = co_await guarded(*l, to_string(e), l->object->on_event(*this, e));
    // At disconnect every instance hears of the end, a late one's
    // neighbours too; otherwise an overrun ends the delivery.
    if (e == event::disconnect) continue;
    if (overran_) co_return std::nullopt;
    if (e != event::connect) continue;
    if (!v) co_return outcome{internal_error().and_close(), l};
    if (v->answered()) co_return outcome{std::move(v->reply()), l};
  }
  co_return std::nullopt;
}

template <typename T>
awaitable<std::optional<T>> session_engine::guarded(const module_instance& l, const char* what, awaitable<T> op) {
  // Awaited here, with the watchdog keeping the deadline: no coroutine or
  // timer of its own, and a late call still runs to its end before
  // anything else of the session does.
  call_started(l, true);
  std::optional<T> out;
  try {
    out.emplace(co_await std::move(op));
  } catch (const std::exception& e) {
    if (!call_ended()) l.log->error("session ", id_, ": ", what, ": ", e.what());
    co_return std::nullopt;
  } catch (...) {
    if (!call_ended()) l.log->error("session ", id_, ": ", what, ": unknown exception");
    co_return std::nullopt;
  }
  if (call_ended()) co_return std::nullopt;
  co_return out;
}

template awaitable<std::optional<login_verdict>> session_engine::guarded(const module_instance&, const char*,
                                                                       awaitable<login_verdict>);

// -- replies ----------------------------------------------------------------------

void session_engine::append_status(const response& r) {
  std::string& out = transport_.output();
  out += r.positive ? "+OK" : "-ERR";
  if (!r.text.empty()) {
    out += ' ';
    const std::size_t n = std::min(r.text.size(), max_status_text);
    for (std::size_t i = 0; i < n; ++i) {
      const char c = r.text[i];
      out += (c == '\r' || c == '\n' || c == '\0') ? ' ' : c;
    }
  }
  out += "\r\n";
}

awaitable<bool> session_engine::send(outcome result) {
  response& r = result.reply;
  std::string& out = transport_.output();
  body_octets_ = 0;
  reply_start_ = out.size();
  reply_flushed_ = false;
  append_status(r);
  if (r.multiline) {
    dot_stuffer stuffer;
    if (r.body) {
      std::unique_ptr<body_source> body(std::move(r.body));
      // A body that knows its size gets a buffer just big enough (one more
      // octet to see its end): small messages cost one read.
      const std::optional<std::uint64_t> size = body->size();
      std::size_t want = settings_.body_chunk;
      if (size && *size < want) want = static_cast<std::size_t>(*size) + 1;
      // A small body goes out with its status line in one write: room for
      // it, its stuffing dots (rare) and the end line, made once.
      if (size && *size < settings_.flush_threshold)
        out.reserve(out.size() + static_cast<std::size_t>(*size) + static_cast<std::size_t>(*size / 64) + 8);
      std::unique_ptr<char[]> chunk(new char[want]);
      for (;;) {
        // Closed meanwhile (shutdown, the idle timer): nothing will be sent.
        if (closed_) co_return false;
        std::size_t n = 0;
        const std::span<char> room(chunk.get(), want);
        // A body at hand (a file in the page cache) is read without a
        // coroutine; else the read is awaited, bounded by the answering
        // instance's time limit, by the same deadline as its calls.
        std::optional<std::size_t> at_hand;
        try {
          at_hand = body->read_now(room);
        } catch (const std::exception& e) {
          if (result.by) result.by->log->error("session ", id_, ": reading a reply body: ", e.what());
          throw session_aborted("a multi-line reply failed half way");
        }
        if (at_hand) {
          n = *at_hand;
        } else {
          if (result.by) call_started(*result.by, false);
          try {
            n = co_await body->read(room);
          } catch (const std::exception& e) {
            if (result.by && call_ended()) throw session_aborted("a reply body's read overran its time limit");
            if (result.by) result.by->log->error("session ", id_, ": reading a reply body: ", e.what());
            throw session_aborted("a multi-line reply failed half way");
          }
          if (result.by && call_ended()) throw session_aborted("a reply body's read overran its time limit");
        }
        if (n == 0) break;
        n = std::min(n, want);
        body_octets_ += n;
        const std::string_view piece(chunk.get(), n);
        if (body->stuffed()) {
          // Already in POP3's form (a relayed body): as it is.
          stuffer.passed(piece);
          if (n >= settings_.flush_threshold) {
            reply_flushed_ = true;
            if (!transport_.flush_now()) co_await transport_.flush();
            co_await transport_.write(asio::buffer(piece));
            active();
            continue;
          }
          out.append(piece);
          if (out.size() >= settings_.flush_threshold) {
            reply_flushed_ = true;
            if (!transport_.flush_now()) co_await transport_.flush();
            active();
          }
          continue;
        }
        if (n >= settings_.flush_threshold && stuffer.verbatim(piece)) {
          // A big piece with no line to stuff goes out from where it was
          // read: no copy through the output buffer.
          reply_flushed_ = true;
          if (!transport_.flush_now()) co_await transport_.flush();
          co_await transport_.write(asio::buffer(piece));
          active();
          stuffer.passed(piece);
          continue;
        }
        stuffer.append(piece, out);
        if (out.size() >= settings_.flush_threshold) {
          reply_flushed_ = true;
          if (!transport_.flush_now()) co_await transport_.flush();
          active();
        }
      }
    }
    stuffer.finish(out);
  }
  if (out.size() >= settings_.flush_threshold) {
    reply_flushed_ = true;
    if (!transport_.flush_now()) co_await transport_.flush();
    active();
  }
  co_return !r.close;
}

// -- deadlines ------------------------------------------------------------------------

void session_engine::call_started(const module_instance& l, bool command) {
  calling_ = &l;
  answer_overrun_ = command;
  if (l.timeout.count() > 0) dog_.set_after(call_deadline_, l.timeout);
}

bool session_engine::call_ended() {
  dog_.clear(call_deadline_);
  calling_ = nullptr;
  return overran_;
}

void session_engine::on_call_deadline() {
  if (!calling_) return;
  process_metrics().add("sdps_module_timeouts_total", {{"instance", calling_->instance}});
  calling_->log->error("session ", id_, ": ", answer_overrun_ ? "a call" : "reading a reply body", ": no answer within ",
                       calling_->timeout.count(), "ms; ending the session once the call returns");
  // Already ending (the client left, shutdown, an earlier overrun): the
  // late call is simply waited for.
  if (overran_ || closed_) return;
  overran_ = true;
  record_.ended(session_end::module_timeout);
  // The call is still running, and the session's own coroutine waits in
  // it: the output is ours unless that call is writing (a continuation's
  // challenge). Replies queued before still go out; a multi-line reply
  // already under way cannot become -ERR.
  std::string& out = transport_.output();
  std::string last;
  if (answer_overrun_ || !reply_flushed_) {
    if (!answer_overrun_) out.resize(std::min(out.size(), reply_start_));
    last.swap(out);
    last += overrun_text;
  }
  out.clear();
  closed_ = true;
  dog_.clear(idle_deadline_);
  dog_.clear(login_deadline_);
  if (last.empty() || transport_.writing()) {
    transport_.close();
    return;
  }
  const std::shared_ptr<void> keep = owner_.lock();
  if (!keep) {
    transport_.close();
    return;
  }
  asio::co_spawn(
      get_executor(),
      [this, keep, text = std::move(last)]() mutable -> awaitable<void> { co_await overrun_reply(std::move(text)); },
      asio::detached);
}

awaitable<void> session_engine::overrun_reply(std::string text) {
  try {
    co_await transport_.write(asio::buffer(text));
  } catch (const boost::system::system_error&) {
    // The client is gone: nothing more to tell it.
  }
  transport_.close();
}

void session_engine::on_idle_deadline() {
  if (closed_) return;
  const auto idle_at = last_active_ + settings_.idle_timeout;
  if (idle_at > base::watchdog::clock::now()) {
    // Activity since the deadline was set: it moves, lazily.
    dog_.set(idle_deadline_, idle_at);
    return;
  }
  // RFC 1939 section 3: the autologout timer ends the session without UPDATE.
  log_.info("idle for ", settings_.idle_timeout.count() / 1000, "s: closing without UPDATE");
  close(session_end::idle);
}

void session_engine::on_login_deadline() {
  // Commands never move it, so a client that keeps sending NOOP still goes.
  if (closed_ || state_ != pop3_state::authorization) return;
  log_.info("no login within ", settings_.login_timeout.count() / 1000, "s: closing");
  close(nullptr);
}

// -- sdps::session ------------------------------------------------------------------

void session_engine::end_login() {
  if (state_ != pop3_state::transaction)
    throw std::logic_error(std::string("a login can only end in TRANSACTION, not ") + to_string(state_));
  logout_pending_ = true;
}

void session_engine::enter_update() {
  if (state_ != pop3_state::transaction)
    throw std::logic_error(std::string("UPDATE can only follow TRANSACTION, not ") + to_string(state_));
  state_ = pop3_state::update;
}

bool session_engine::can_start_tls() const {
  return state_ == pop3_state::authorization && transport_.tls_available() && !transport_.secure() && !tls_requested_;
}

void session_engine::start_tls() {
  if (!can_start_tls()) throw std::logic_error("STLS is not possible on this session");
  tls_requested_ = true;
}

bool session_engine::plaintext_auth_allowed() const {
  if (transport_.secure() || settings_.plaintext == plaintext_policy::always) return true;
  // The address the session answers for (a PROXY header may have
  // replaced the peer's).
  return base::contains(settings_.trusted, remote_endpoint().address());
}

awaitable<std::optional<std::string>> session_engine::continuation(std::string challenge) {
  std::string& out = transport_.output();
  out += "+ ";
  for (char c : challenge) out += (c == '\r' || c == '\n' || c == '\0') ? ' ' : c;
  out += "\r\n";
  session_transport::input got = session_transport::input::overlong;
  std::string_view line;
  try {
    got = co_await transport_.next_line(line);
  } catch (const std::exception& e) {
    log_.debug("waiting for a continuation line: ", e.what());
    close(nullptr);
    co_return std::nullopt;
  }
  active();
  if (closed_) co_return std::nullopt;
  if (got == session_transport::input::overlong) {
    log_.info("a continuation line over 512 octets was refused");
    co_return std::nullopt;
  }
  co_return std::string(line);
}

std::shared_ptr<void>& session_engine::slot_storage(const void* key) {
  if (auto* p = find_slot_storage(key)) return *p;
  return slots_.emplace_back(key, nullptr).second;
}

std::shared_ptr<void>* session_engine::find_slot_storage(const void* key) {
  for (auto& [k, value] : slots_)
    if (k == key) return &value;
  return nullptr;
}

void session_engine::drop_slot_storage(const void* key) {
  const auto it = std::find_if(slots_.begin(), slots_.end(), [key](const auto& s) { return s.first == key; });
  if (it != slots_.end()) slots_.erase(it);
}

}  // namespace sdps::core
