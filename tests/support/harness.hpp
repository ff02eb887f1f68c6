#pragma once
// The chain harness for module unit tests: an in-memory spool (spool +
// maildrop_source + maildrop), a stand-in auth module, and a harness that
// builds module instances from inline YAML, runs them through the core's
// real chain and renders each reply as the client would read it (status
// line, dot-stuffed body, terminating dot).

#include "support/fakes.hpp"

#include "chain.hpp"
#include "config.hpp"
#include "dot_stuffer.hpp"
#include "loader.hpp"
#include "logging.hpp"

#include <sdps/maildrop.hpp>
#include <sdps/module.hpp>

#include <algorithm>
#include <cctype>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

namespace sdps::testing {

// ---------------------------------------------------------------------------
// An in-memory spool: one punt's messages, its lock and its maildrops.

/// One stored message.
struct fake_message {
  std::string uidl;
  std::int64_t arrival = 0;
  std::string text;  ///< the stored message, CRLF line ends
  std::string from;  ///< envelope sender, empty for <>
  std::string to;
  bool read = false;
};

/// Records lock and unlock calls of every fake spool in one order, and
/// counts the locks each spool holds.
struct lock_journal {
  std::vector<std::string> events;  ///< "lock finchley #1", "unlock finchley #1", "open docklands #2"
};

/// The state of one punt, shared by its spool instance and its maildrops
/// (which outlive neither the test).
struct fake_store {
  std::string punt;
  std::vector<fake_message> messages;
  std::shared_ptr<lock_journal> journal;
  bool down = false;                          ///< every call throws spool_error / lock says unavailable
  bool lock_throws = false;                   ///< lock() throws spool_error
  std::optional<std::uint64_t> other_holder;  ///< a session outside the test holds the lock
  std::set<std::uint64_t> holders;            ///< sessions holding the lock now
  std::set<std::string> stuck;                ///< uidls that remove_deleted cannot remove
  bool remove_throws = false;                 ///< remove_deleted throws spool_error
  bool require_lock = true;                   ///< open() refuses a session without the lock
  std::chrono::milliseconds lock_delay{0};    ///< lock() waits this long first
  std::vector<std::string> removed;           ///< uidls removed, in order
  std::vector<std::string> read_marks;        ///< uidls marked read, in order

  const fake_message* find(const std::string& uidl) const {
    for (const auto& m : messages)
      if (m.uidl == uidl) return &m;
    return nullptr;
  }
  fake_message* find(const std::string& uidl) {
    return const_cast<fake_message*>(static_cast<const fake_store*>(this)->find(uidl));
  }
  void note(std::string event) {
    if (journal) journal->events.push_back(std::move(event));
  }
};

inline std::string return_path(const std::string& from) { return "Return-Path: <" + from + ">\r\n"; }

/// The message as RETR sends it, or its header and `lines` body lines.
inline std::string render_message(const fake_message& m, std::optional<std::uint64_t> lines) {
  const std::string whole = return_path(m.from) + m.text;
  if (!lines) return whole;
  const auto blank = whole.find("\r\n\r\n");
  if (blank == std::string::npos) return whole;
  std::size_t at = blank + 4;
  for (std::uint64_t n = 0; n < *lines && at < whole.size(); ++n) {
    const auto eol = whole.find("\r\n", at);
    at = eol == std::string::npos ? whole.size() : eol + 2;
  }
  return whole.substr(0, at);
}

/// A snapshot of a fake_store, as a spool's maildrop_source would give.
class fake_maildrop final : public maildrop {
 public:
  explicit fake_maildrop(std::shared_ptr<fake_store> store) : store_(std::move(store)) {
    std::vector<fake_message> sorted = store_->messages;
    std::stable_sort(sorted.begin(), sorted.end(),
                     [](const fake_message& a, const fake_message& b) { return a.arrival < b.arrival; });
    for (const auto& m : sorted)
      infos_.push_back(message_info{m.uidl, return_path(m.from).size() + m.text.size(), m.arrival, store_->punt});
  }

  std::size_t count() const override { return infos_.size(); }
  const message_info& info(std::size_t index) const override { return infos_.at(index); }

  awaitable<std::unique_ptr<body_source>> retrieve(std::size_t index,
                                                   std::optional<std::uint64_t> body_lines) override {
    check();
    const fake_message* m = store_->find(infos_.at(index).uidl);
    ++retrievals;
    if (!m)
      co_return std::make_unique<string_body>("Message-ID: <gone@pop3.test>\r\n\r\nThis message was delivered by SMTP.\r\n");
    co_return std::make_unique<string_body>(render_message(*m, body_lines));
  }
  awaitable<void> mark_read(std::size_t index) override {
    check();
    if (fake_message* m = store_->find(infos_.at(index).uidl)) {
      m->read = true;
      store_->read_marks.push_back(m->uidl);
    }
    co_return;
  }
  awaitable<sdps::envelope> envelope(std::size_t index) override {
    check();
    const fake_message* m = store_->find(infos_.at(index).uidl);
    if (!m) throw spool_error("message " + infos_.at(index).uidl + " is gone");
    co_return sdps::envelope{m->read, store_->punt, m->from, m->to};
  }
  awaitable<removal_result> remove_deleted() override {
    check();
    if (store_->remove_throws) throw spool_error(store_->punt + ": cannot remove");
    removal_result out;
    for (std::size_t i = 0; i < count(); ++i) {
      if (!deleted(i)) continue;
      const std::string& uidl = infos_[i].uidl;
      if (store_->stuck.count(uidl)) {
        ++out.failed;
        continue;
      }
      auto& ms = store_->messages;
      ms.erase(std::remove_if(ms.begin(), ms.end(), [&](const fake_message& m) { return m.uidl == uidl; }), ms.end());
      store_->removed.push_back(uidl);
      ++out.removed;
    }
    co_return out;
  }

  std::size_t retrievals = 0;

 private:
  void check() const {
    if (store_->down) throw spool_error(store_->punt + " is down");
  }
  std::shared_ptr<fake_store> store_;
  std::vector<message_info> infos_;
};

/// A spool instance over a fake_store: provides sdps::spool and
/// sdps::maildrop_source, like local_spool. Construct with the punt name.
class fake_spool final : public sdps::module, public spool, public maildrop_source {
 public:
  fake_spool(module_config& config, std::string punt, std::shared_ptr<lock_journal> journal = nullptr)
      : store(std::make_shared<fake_store>()) {
    store->punt = std::move(punt);
    store->journal = std::move(journal);
    config.provide<spool>(this);
    config.provide<maildrop_source>(this);
  }

  /// Adds a stored message; returns its size as RETR sends it.
  std::uint64_t add(std::string uidl, std::int64_t arrival, std::string text, std::string from = "sender@example.com",
                    std::string to = "fred@sample.demon.co.uk") {
    store->messages.push_back(fake_message{std::move(uidl), arrival, std::move(text), std::move(from), std::move(to)});
    const auto& m = store->messages.back();
    return return_path(m.from).size() + m.text.size();
  }

  const std::string& punt() const override { return store->punt; }

  awaitable<lock_status> lock(session& s) override {
    const std::shared_ptr<fake_store> st = store;  // owned across the suspension
    const std::uint64_t id = s.id();
    if (st->lock_delay.count() > 0) {
      asio::steady_timer timer(s.get_executor(), st->lock_delay);
      co_await timer.async_wait(asio::use_awaitable);
    } else {
      // (A named executor, not a temporary: docs/toolchain.md.)
      const executor ex = s.get_executor();
      co_await asio::post(ex, asio::use_awaitable);
    }
    if (st->lock_throws) throw spool_error(st->punt + ": lock failed");
    if (st->down) {
      st->note("unavailable " + st->punt + " #" + std::to_string(id));
      co_return lock_status::unavailable;
    }
    const bool other = (st->other_holder && *st->other_holder != id) ||
                       std::any_of(st->holders.begin(), st->holders.end(), [id](auto h) { return h != id; });
    if (other) {
      st->note("in_use " + st->punt + " #" + std::to_string(id));
      co_return lock_status::in_use;
    }
    st->holders.insert(id);
    st->note("lock " + st->punt + " #" + std::to_string(id));
    co_return lock_status::acquired;
  }
  /// Releases the lock; the snapshot taken under it goes too.
  void unlock(session& s) override {
    store->note("unlock " + store->punt + " #" + std::to_string(s.id()));
    store->holders.erase(s.id());
    s.drop_slot(this);
  }

  awaitable<std::shared_ptr<maildrop>> open(session& s) override {
    const std::shared_ptr<fake_store> st = store;
    const executor ex = s.get_executor();
    co_await asio::post(ex, asio::use_awaitable);
    if (auto* cached = s.find_slot<std::shared_ptr<fake_maildrop>>(this); cached && *cached) co_return *cached;
    st->note("open " + st->punt + " #" + std::to_string(s.id()));
    if (st->down) throw spool_error(st->punt + " is down");
    if (st->require_lock && !st->holders.count(s.id()))
      throw spool_error(st->punt + ": the session does not hold the lock");
    auto drop = std::make_shared<fake_maildrop>(st);
    s.slot<std::shared_ptr<fake_maildrop>>(this) = drop;
    co_return drop;
  }
  std::shared_ptr<maildrop> current(session& s) override {
    auto* open = s.find_slot<std::shared_ptr<fake_maildrop>>(this);
    return open ? *open : nullptr;
  }
  /// The maildrop this spool opened for `s`, for inspecting its marks.
  fake_maildrop* opened(session& s) {
    auto* open = s.find_slot<std::shared_ptr<fake_maildrop>>(this);
    return open ? open->get() : nullptr;
  }

  std::shared_ptr<fake_store> store;
};

/// Stands in for the auth module: on PASS, sets the login from USER's
/// argument ("host" or "user+host") when the password is "pw", else -ERR.
class fake_auth final : public sdps::module {
 public:
  explicit fake_auth(module_config&) {}
  std::vector<command_spec> commands() const override {
    return {{"USER", static_cast<state_mask>(pop3_state::authorization)},
            {"PASS", static_cast<state_mask>(pop3_state::authorization)}};
  }
  awaitable<verdict> on_command(session& s, const command& cmd) override {
    if (cmd.name == "USER") {
      const auto plus = cmd.argument.find('+');
      if (plus == std::string::npos)
        s.login() = identity{cmd.argument, ""};
      else
        s.login() = identity{cmd.argument.substr(plus + 1), cmd.argument.substr(0, plus)};
      co_return verdict::answer(response::ok("send PASS"));
    }
    if (!s.login() || cmd.argument != "pw") co_return verdict::answer(response::err("[AUTH] invalid password"));
    co_return verdict::next();
  }
  void capabilities(session&, std::vector<std::string>& lines) const override {
    lines.insert(lines.end(), {"USER", "AUTH-RESP-CODE"});
  }
};

// ---------------------------------------------------------------------------
// The harness.

/// Builds a chain from module instances, in the order added, and runs POP3
/// transcripts through the core's chain dispatch on one io_context.
class harness {
 public:
  harness() : server_(io_), root_log_(log_level::error) {}
  ~harness() {
    // Let late (timed-out) module calls finish while everything exists.
    settle();
    for (auto& s : sessions_) s->clear_slots();
  }

  /// Creates instance `instance` of module type T from inline YAML settings
  /// at the next chain position; `extra` goes to T's constructor after the
  /// config. Refuses unread settings as the loader does.
  template <typename T, typename... Extra>
  T& add(const std::string& instance, const std::string& yaml = "{}", Extra&&... extra) {
    auto l = std::make_unique<core::module_instance>();
    l->module = instance;
    l->instance = instance;
    l->where = "test.yaml";
    l->timeout = timeout;
    l->log = root_log_.derive(instance);
    capture_log& log = *logs_.emplace(instance, std::make_unique<capture_log>()).first->second;
    fake_config config(instance, yaml, links_.size(), server_, log, services_);
    auto object = std::make_unique<T>(config, std::forward<Extra>(extra)...);
    config.yaml().refuse_unread(instance);
    T& out = *object;
    l->object = std::move(object);
    l->specs = l->object->commands();
    requirements_.push_back(config.requirements());
    links_.push_back(std::move(l));
    return out;
  }

  /// Checks requirements and starts every instance in order, as the loader
  /// does; throws config_error. Then builds the chain.
  void start() {
    for (std::size_t i = 0; i < links_.size(); ++i)
      for (const auto& [id, earlier] : requirements_[i]) {
        bool found = false;
        for (const auto& e : services_.entries())
          if (e.service == id && e.position != i && (!earlier || e.position < i)) found = true;
        if (!found) throw config_error(links_[i]->instance + " needs a module providing " + id);
      }
    for (auto& l : links_) l->object->start(services_);
    chain_ = std::make_unique<core::chain>(std::move(links_));
    chain_ptr_ = chain_.get();
  }

  /// A new connection.
  std::shared_ptr<fake_session> connect() {
    auto s = std::make_shared<fake_session>(++next_id_, io_.get_executor(), &chain_ptr_);
    sessions_.push_back(s);
    return s;
  }

  /// Sends one command line and returns the reply exactly as the client
  /// reads it: "+OK text\r\n", plus the dot-stuffed body and ".\r\n".
  std::string send(const std::shared_ptr<fake_session>& s, const std::string& line) {
    if (s->closed) throw std::logic_error("command on a closed session: " + line);
    command cmd;
    const auto space = line.find(' ');
    cmd.name = line.substr(0, space);
    if (space != std::string::npos) cmd.argument = line.substr(space + 1);
    for (char& c : cmd.name) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    core::dispatch_result result = run(chain_->dispatch(s, std::move(cmd)));
    // A call past its time limit ends the session, as in the core.
    if (result.late) late_[s.get()] = result.late;
    const bool close = result.reply.close;
    std::string out = run(render(std::move(result.reply)));
    if (close) s->closed = true;
    if (s->take_authenticated() && !s->closed) remember_late(s, run(chain_->fire(s, event::authenticated)));
    if (s->state() == pop3_state::update && !result.late) {
      remember_late(s, run(chain_->fire(s, event::quit)));
      s->closed = true;
    }
    return out;
  }

  /// Sends several lines and concatenates the replies (a pipelined burst).
  std::string send_all(const std::shared_ptr<fake_session>& s, const std::vector<std::string>& lines) {
    std::string out;
    for (const auto& line : lines) out += send(s, line);
    return out;
  }

  /// The connection ends: once a late call (past its time limit) has
  /// returned, the disconnect event, then the slots go.
  void disconnect(const std::shared_ptr<fake_session>& s) {
    s->closed = true;
    if (const auto it = late_.find(s.get()); it != late_.end()) {
      const std::shared_ptr<core::late_call> late = it->second;
      late_.erase(it);
      run(wait_for(late));
    }
    run(chain_->fire(s, event::disconnect));
    s->clear_slots();
  }

  /// Runs queued work (late, timed-out module calls) until none is left.
  void settle() {
    io_.restart();
    io_.run();
  }

  /// What instance `instance` logged.
  capture_log& log_of(const std::string& instance) { return *logs_.at(instance); }
  core::service_registry& services() { return services_; }
  asio::io_context& io() { return io_; }

  /// Each module call's time limit (the YAML `timeout`).
  std::chrono::milliseconds timeout{std::chrono::seconds(10)};

  /// Runs `op` on the io_context until it completes; returns its value or
  /// rethrows its exception. Other work stays queued for later runs.
  template <typename T>
  T run(awaitable<T> op) {
    std::optional<T> value;
    std::exception_ptr error;
    bool done = false;
    asio::co_spawn(io_, std::move(op), [&, this](std::exception_ptr e, T v) {
      done = true;
      error = e;
      if (!e) value.emplace(std::move(v));
      io_.stop();
    });
    io_.restart();
    io_.run();
    if (!done) throw std::logic_error("the operation never completed");
    if (error) std::rethrow_exception(error);
    return std::move(*value);
  }

 private:
  static awaitable<std::string> render(response r) {
    std::string out = r.positive ? "+OK" : "-ERR";
    if (!r.text.empty()) out += " " + r.text;
    out += "\r\n";
    if (r.multiline) {
      core::dot_stuffer stuffer;
      if (r.body) {
        std::string chunk(7, '\0');  // small pieces: exercise streaming
        for (;;) {
          const std::size_t n = co_await r.body->read(std::span<char>(chunk));
          if (n == 0) break;
          stuffer.append(std::string_view(chunk.data(), n), out);
        }
      }
      stuffer.finish(out);
    }
    co_return out;
  }

  void remember_late(const std::shared_ptr<fake_session>& s, const core::event_outcome& fired) {
    if (!fired.late) return;
    late_[s.get()] = fired.late;
    s->closed = true;
  }
  static awaitable<bool> wait_for(std::shared_ptr<core::late_call> late) {
    co_await late->wait();
    co_return true;
  }

  std::map<const fake_session*, std::shared_ptr<core::late_call>> late_;
  asio::io_context io_;
  fake_server server_;
  core::stderr_log root_log_;
  core::service_registry services_;
  std::map<std::string, std::unique_ptr<capture_log>> logs_;
  std::vector<std::unique_ptr<core::module_instance>> links_;
  std::vector<std::vector<std::pair<std::string, bool>>> requirements_;
  std::unique_ptr<core::chain> chain_;
  const core::chain* chain_ptr_ = nullptr;
  std::vector<std::shared_ptr<fake_session>> sessions_;
  std::uint64_t next_id_ = 0;
};

}  // namespace sdps::testing
