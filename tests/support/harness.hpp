#pragma once
// The chain harness for module unit tests: an in-memory spool (spool +
// maildrop_source + maildrop), a stand-in auth module, and a harness that
// builds module instances from inline YAML, assembles them into a chain
// as the loader does, and runs POP3 transcripts through the core's own
// session engine over in-memory connections: what a test sees is exactly
// what a client of sdpsd would read (status lines, dot-stuffed bodies,
// terminating dots), with the core's state machine, login stages, event
// order and time limits.

#include "support/fakes.hpp"
#include "support/session.hpp"

#include "chain.hpp"
#include "config.hpp"
#include "loader.hpp"
#include "logging.hpp"

#include <sdps/maildrop.hpp>
#include <sdps/module.hpp>

#include <algorithm>
#include <cctype>
#include <functional>
#include <map>
#include <memory>
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

/// Records the prepare, lock, unlock and open calls of every fake spool in
/// one order.
struct lock_journal {
  std::vector<std::string> events;  ///< "prepare finchley #1", "lock finchley #1", "unlock finchley #1", "open docklands #2"
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
  std::function<void()> on_unlock;            ///< called at every unlock()
  bool prepare_throws = false;                ///< prepare() throws (after noting it)
  std::set<std::uint64_t> holders;            ///< sessions holding the lock now
  std::set<std::string> stuck;                ///< uidls that remove() cannot remove
  bool remove_throws = false;                 ///< remove() throws spool_error
  bool require_lock = true;                   ///< open() refuses a session without the lock
  std::chrono::milliseconds lock_delay{0};    ///< lock() waits this long first
  std::vector<std::string> removed;           ///< uidls removed, in order
  std::vector<std::string> read_marks;        ///< uidls marked read, in order
  std::vector<std::string> prepared;          ///< "sample #1" for each prepare()

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

  awaitable<std::unique_ptr<body_source>> retrieve(std::size_t index, retrieval how) override {
    check();
    fake_message* m = store_->find(infos_.at(index).uidl);
    ++retrievals;
    if (!m)
      co_return std::make_unique<string_body>("Message-ID: <gone@pop3.test>\r\n\r\nThis message was delivered by SMTP.\r\n");
    if (how.mark_read) {
      m->read = true;
      store_->read_marks.push_back(m->uidl);
    }
    co_return std::make_unique<string_body>(render_message(*m, how.body_lines));
  }
  awaitable<sdps::envelope> envelope(std::size_t index) override {
    check();
    const fake_message* m = store_->find(infos_.at(index).uidl);
    if (!m) throw spool_error("message " + infos_.at(index).uidl + " is gone");
    co_return sdps::envelope{m->read, store_->punt, m->from, m->to};
  }
  awaitable<removal_result> remove(std::vector<std::size_t> indexes) override {
    check();
    if (store_->remove_throws) throw spool_error(store_->punt + ": cannot remove");
    removal_result out;
    for (const std::size_t i : indexes) {
      const std::string& uidl = infos_.at(i).uidl;
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

  void prepare(session& s, const identity& who) override {
    store->prepared.push_back(who.display() + " #" + std::to_string(s.id()));
    store->note("prepare " + store->punt + " #" + std::to_string(s.id()));
    if (store->prepare_throws) throw std::runtime_error(store->punt + ": prepare failed");
  }
  awaitable<lock_status> lock(session& s, const identity&) override {
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
  void unlock(session& s) override {
    store->note("unlock " + store->punt + " #" + std::to_string(s.id()));
    store->holders.erase(s.id());
    if (store->on_unlock) store->on_unlock();
  }

  awaitable<std::shared_ptr<maildrop>> open(session& s, const identity&) override {
    const std::shared_ptr<fake_store> st = store;
    const executor ex = s.get_executor();
    co_await asio::post(ex, asio::use_awaitable);
    st->note("open " + st->punt + " #" + std::to_string(s.id()));
    if (st->down) throw spool_error(st->punt + " is down");
    if (st->require_lock && !st->holders.count(s.id()))
      throw spool_error(st->punt + ": the session does not hold the lock");
    co_return std::make_shared<fake_maildrop>(st);
  }

  std::shared_ptr<fake_store> store;
};

/// Stands in for the auth module: USER remembers the name ("host" or
/// "user+host"), PASS hands the core a login; in the verify stage the
/// password "pw" is good and anything else refused (-ERR [AUTH] invalid
/// password, reason "wrong password").
class fake_auth final : public sdps::module {
 public:
  explicit fake_auth(module_config&) {}
  std::vector<command_spec> commands() const override {
    return {{"USER", pop3_state::authorization}, {"PASS", pop3_state::authorization}};
  }
  stage_set login_stages() const override { return {login_stage::verify}; }
  awaitable<verdict> on_command(session& s, const command& cmd) override {
    if (cmd.name == "USER") {
      const auto plus = cmd.argument.find('+');
      s.slot(user_).who = plus == std::string::npos
                              ? identity{cmd.argument, ""}
                              : identity{cmd.argument.substr(plus + 1), cmd.argument.substr(0, plus)};
      co_return verdict::answer(response::ok("send PASS"));
    }
    auto* named = s.find_slot(user_);
    if (!named || !named->who) co_return verdict::answer(response::err("send USER first"));
    identity who = *named->who;
    s.drop_slot(user_);
    co_return verdict::login(credentials(std::move(who), "USER", cmd.argument));
  }
  awaitable<login_verdict> on_login(session&, login_stage, login_attempt& attempt) override {
    if (attempt.password() != "pw")
      co_return login_verdict::refuse(response::err("[AUTH] invalid password"), "wrong password");
    attempt.accept("the test password");
    co_return login_verdict::proceed();
  }
  // As the auth module: USER only where it can be used (RFC 2449).
  void capabilities(session& s, std::vector<std::string>& lines) const override {
    if (s.state() == pop3_state::authorization) lines.push_back("USER");
    lines.push_back("AUTH-RESP-CODE");
  }

 private:
  struct named {
    std::optional<identity> who;
  };
  slot_key<named> user_;
};

// ---------------------------------------------------------------------------
// The harness.

/// One client of the harness: a session of the real engine over an
/// in-memory connection.
class client {
 public:
  client(asio::io_context& io, std::uint64_t id, const core::chain& modules, core::engine_settings settings,
         logging::source_log& log)
      : session_(io, id, &modules, std::move(settings), &log) {}

  sdps::session& session() { return session_.get(); }
  core::session_engine& engine() { return session_.engine(); }
  memory_transport& connection() { return session_.client(); }

  pop3_state state() const { return const_cast<test_session&>(session_).engine().state(); }
  const identity* login() { return session_.engine().login(); }
  sdps::marks& marks() { return session_.engine().marks(); }
  std::shared_ptr<sdps::maildrop> maildrop() { return session_.engine().maildrop(); }
  std::size_t slot_count() const { return const_cast<test_session&>(session_).engine().slot_count(); }
  /// The server closed the connection (QUIT, a refusal, a time limit).
  bool closed() { return session_.client().closed(); }
  /// The session's run() has returned: disconnect delivered, slots gone.
  bool finished() const { return session_.finished(); }
  /// What the server sent before the first command (the greeting).
  std::string greeting;

 private:
  friend class harness;
  test_session session_;
};

/// Builds a chain from module instances, in the order added, and runs POP3
/// transcripts through the core's session engine on one io_context.
class harness {
 public:
  /// `site_yaml`: the config file's top level, as server_context::site()
  /// shows it to the modules (auth's `hosts:`, say).
  explicit harness(const std::string& site_yaml = "{}")
      : server_(io_, site_yaml), root_log_(log_level::error, "harness") {
    root_log_.copy_to(&core_log_);
  }
  ~harness() {
    // Every session ends (disconnect, slots) while the chain exists.
    for (auto& c : clients_)
      if (!c->finished()) c->connection().hang_up();
    try {
      settle();
    } catch (const std::exception&) {
      // A stuck session: the chain goes anyway (the test has failed).
    }
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
    l->events = l->object->events();
    l->stages = l->object->login_stages();
    if (config.is_terminal() && terminal_at_ == SIZE_MAX) terminal_at_ = links_.size();
    requirements_.push_back(config.requirements());
    services_.add_instance({l->instance, l->module, links_.size(), l->stages});
    links_.push_back(std::move(l));
    return out;
  }

  /// Checks the chain and starts every instance as the loader does
  /// (core::assemble_chain); throws config_error.
  void start() {
    for (auto& l : links_) l->timeout = std::min(l->timeout, timeout);
    chain_ = core::assemble_chain(std::move(links_), requirements_, services_, terminal_at_);
  }

  /// A new connection, run up to its greeting (in client::greeting).
  std::shared_ptr<client> connect() {
    if (!chain_) throw std::logic_error("harness::connect before start()");
    auto c = std::make_shared<client>(io_, ++next_id_, *chain_, settings, root_log_);
    clients_.push_back(c);
    c->session_.run_engine();
    run_until_idle(*c);
    c->greeting = std::exchange(c->connection().sent(), {});
    return c;
  }

  /// Sends one command line and returns what the client reads in answer:
  /// "+OK text\r\n", plus the dot-stuffed body and ".\r\n" (and, for a
  /// continuation, the "+ " line; a reply that closes the connection
  /// closes it).
  std::string send(const std::shared_ptr<client>& c, const std::string& line) {
    if (c->closed()) throw std::logic_error("command on a closed connection: " + line);
    c->connection().push(line);
    run_until_idle(*c);
    return std::exchange(c->connection().sent(), {});
  }

  /// Sends several lines in one go (pipelined) and returns every reply.
  std::string send_all(const std::shared_ptr<client>& c, const std::vector<std::string>& lines) {
    for (const auto& line : lines) c->connection().push(line);
    run_until_idle(*c);
    return std::exchange(c->connection().sent(), {});
  }

  /// The client goes away: the session ends as in sdpsd (once any late
  /// call has returned, the disconnect event, then the slots go).
  void disconnect(const std::shared_ptr<client>& c) {
    c->connection().hang_up();
    run_until_idle(*c);
  }

  /// Runs queued work until every session waits for its client or has
  /// ended (late, timed-out module calls included).
  void settle() {
    io_.restart();
    io_.poll();
    for (auto& c : clients_) run_until_idle(*c);
  }

  /// What instance `instance` logged through its config's logger.
  capture_log& log_of(const std::string& instance) { return *logs_.at(instance); }
  /// What the core logged (sessions, logins, instances' calls): "session
  /// 1: login sample from ...".
  capture_log& core_log() { return core_log_; }
  core::service_registry& services() { return services_; }
  asio::io_context& io() { return io_; }
  server_context& server() { return server_; }
  const core::chain& modules() const { return *chain_; }

  /// Each module call's time limit (the YAML `timeout`), at most.
  std::chrono::milliseconds timeout{std::chrono::seconds(10)};
  /// What every session works under (set before connect()).
  core::engine_settings settings = test_engine_settings();

  /// Runs `op` on the io_context until it completes; returns its value or
  /// rethrows its exception. Other work stays queued for later runs.
  template <typename T>
  T run(awaitable<T> op) {
    std::optional<T> value;
    std::exception_ptr error;
    bool done = false;
    asio::co_spawn(io_, std::move(op), [&](std::exception_ptr e, T v) {
      done = true;
      error = e;
      if (!e) value.emplace(std::move(v));
    });
    io_.restart();
    while (!done && io_.run_one() > 0) {
    }
    if (!done) throw std::logic_error("the operation never completed");
    if (error) std::rethrow_exception(error);
    return std::move(*value);
  }

  /// Lets `span` of time pass with the sessions running (their deadlines
  /// come due).
  void pass_time(std::chrono::milliseconds span) {
    asio::steady_timer pause(io_, span);
    run(pause.async_wait(asio::use_awaitable));
  }

  /// The same for an operation without a value (a timer's wait, say).
  void run(awaitable<void> op) {
    auto wrapped = [](awaitable<void> inner) -> awaitable<bool> {
      co_await std::move(inner);
      co_return true;
    };
    run(wrapped(std::move(op)));
  }

 private:
  /// Runs the loop until the session waits for the client with nothing
  /// queued, or has ended.
  void run_until_idle(client& c) {
    io_.restart();
    while (!c.finished() && !c.connection().idle()) {
      if (io_.run_one() == 0) throw std::logic_error("the session is stuck: nothing left to run");
      io_.restart();
    }
  }

  asio::io_context io_;
  fake_server server_;
  capture_log core_log_;
  logging::source_log root_log_;
  core::service_registry services_;
  std::map<std::string, std::unique_ptr<capture_log>> logs_;
  std::vector<std::unique_ptr<core::module_instance>> links_;
  core::requirement_list requirements_;
  std::size_t terminal_at_ = SIZE_MAX;
  std::unique_ptr<core::chain> chain_;
  std::vector<std::shared_ptr<client>> clients_;
  std::uint64_t next_id_ = 0;
};

}  // namespace sdps::testing
