#pragma once
// The session engine: RFC 1939's state machine over the chain, with no
// socket in it. It is fed client lines by a transport (the connection, or
// a test's in-memory one) and gives back replies and body streams; it
// owns the session's state (login, maildrop, marks, slots), the order of
// commands, login stages and events, and the one deadline mechanism that
// bounds every module call, the idle time and the login time.

#include "chain.hpp"
#include "config.hpp"
#include "logging.hpp"
#include "base/address_prefix.hpp"
#include "session_record.hpp"

#include "base/watchdog.hpp"

#include <sdps/maildrop.hpp>
#include <sdps/session.hpp>

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sdps::core {

/// A session must end at once, for a reason the log gives (a reply that
/// failed half way, a spoofed PROXY header).
class session_aborted : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// What the engine reads from and writes to: one client connection.
/// Event loop only.
class session_transport {
 public:
  enum class input { line, overlong };
  /// The next line the client sent, CRLF removed, in `line` (valid until
  /// the next call). When no whole line is buffered, the output queued so
  /// far is sent first (pipelined commands get their replies together).
  /// `overlong` for a line over the limit (its octets are dropped). Throws
  /// boost::system::system_error when the connection ends, session_aborted
  /// when what came cannot be served.
  virtual awaitable<input> next_line(std::string_view& line) = 0;
  /// The next line if a whole one (or an overlong report) is buffered
  /// already, without waiting: what next_line() would give; nullopt
  /// otherwise (nothing is flushed or read).
  virtual std::optional<input> line_now(std::string_view& line) = 0;
  /// Output not yet sent: the engine appends replies here.
  virtual std::string& output() = 0;
  /// Sends output(). Nothing if the connection is closed.
  virtual awaitable<void> flush() = 0;
  /// Sends what of output() the connection takes now, without waiting;
  /// true when nothing is left to send (then flush() is not needed).
  virtual bool flush_now() = 0;
  /// Sends `data` now (a big body piece, straight from where it was read),
  /// after output() has been flushed.
  virtual awaitable<void> write(asio::const_buffer data) = 0;
  /// A write is under way (a deadline must not write beside it).
  virtual bool writing() const = 0;
  /// The client has gone (FIN or reset), even with lines of its still
  /// buffered. Checked before each command.
  virtual bool client_gone() = 0;
  /// Closes the connection (idempotent); reads and writes then fail.
  virtual void close() = 0;
  virtual bool secure() const = 0;
  /// TLS is configured and this listener is plain: STLS is possible
  /// (until TLS is in force).
  virtual bool tls_available() const = 0;
  /// STLS answered: drops what the client sent after the command, then
  /// runs the TLS handshake. Throws when it fails.
  virtual awaitable<void> start_tls() = 0;
  /// The session is over and its last reply sent: ends the connection
  /// politely (TLS close_notify). Not called after an overrun.
  virtual awaitable<void> finish() = 0;
  virtual asio::ip::tcp::endpoint remote_endpoint() const = 0;
  virtual asio::ip::tcp::endpoint local_endpoint() const = 0;
  virtual executor get_executor() = 0;

 protected:
  ~session_transport() = default;
};

/// Limits and texts a session works under (from the server config).
struct engine_settings {
  std::chrono::milliseconds idle_timeout{std::chrono::minutes(30)};
  /// Connect to successful login, not extended by commands; 0 is none.
  std::chrono::milliseconds login_timeout{std::chrono::seconds(60)};
  /// Output is flushed to the client once this much is buffered.
  std::size_t flush_threshold = 64 * 1024;
  /// Body octets asked of a module per read() call (at most; a body that
  /// says its size gets a buffer just big enough).
  std::size_t body_chunk = 256 * 1024;
  std::string banner = "POP3 server ready";
  plaintext_policy plaintext = plaintext_policy::tls_or_trusted;
  std::vector<base::address_prefix> trusted;
};

/// One session. It lives as long as its owner (the connection) and is
/// driven by run(); every call on the transport's executor.
class session_engine final : public sdps::session {
 public:
  /// `dog` carries the engine's deadlines (idle, login, module calls)
  /// beside the transport's own.
  session_engine(std::uint64_t id, const chain& modules, const engine_settings& settings,
                 logging::source_log& server_log,
                 session_transport& transport, base::watchdog& dog);
  ~session_engine() override;
  session_engine(const session_engine&) = delete;
  session_engine& operator=(const session_engine&) = delete;

  /// The connection's first moment: the idle and login deadlines start,
  /// so they bound a PROXY header or a TLS handshake too. run() calls it
  /// if the transport has not. Idempotent.
  void begin();
  /// Serves the session: the connect event (or greeting), commands until
  /// the client quits, the connection drops, a deadline passes or close()
  /// is called; then, once any late module call has returned, the
  /// disconnect event, the slots' end and the logout line. A closed
  /// session runs no further command (lines already read are dropped).
  /// `connected`: false when the connection ended before the session
  /// began (a balancer that sent no PROXY header): the modules hear
  /// nothing of it, and only the logout line is written.
  /// `owner` keeps the engine, the transport and the watchdog alive: what
  /// the engine spawns (a late call's -ERR) holds it.
  awaitable<void> run(std::weak_ptr<void> owner, bool connected = true);
  /// Ends the session without UPDATE (shutdown, an admin's kick);
  /// `why` goes into the logout line. Idempotent.
  void close(const char* why);
  bool closed() const { return closed_; }
  /// Says why the session is ending, for its logout line (first one wins).
  void end_reason(const char* how) { record_.ended(how); }
  /// The login the client tried last, if it never logged in (logs).
  const std::optional<identity>& tried() const { return tried_; }
  /// Module slots alive now (tests, and `sdps who`'s curious admin).
  std::size_t slot_count() const { return slots_.size(); }

  // sdps::session
  std::uint64_t id() const override { return id_; }
  asio::ip::tcp::endpoint remote_endpoint() const override { return transport_.remote_endpoint(); }
  asio::ip::tcp::endpoint local_endpoint() const override { return transport_.local_endpoint(); }
  executor get_executor() override { return transport_.get_executor(); }
  logger& log() override { return log_; }
  pop3_state state() const override { return state_; }
  const identity* login() const override { return login_ ? &*login_ : nullptr; }
  std::shared_ptr<sdps::maildrop> maildrop() override { return maildrop_; }
  sdps::marks& marks() override { return marks_; }
  void end_login() override;
  void enter_update() override;
  std::vector<std::string> capabilities() override { return chain_.capabilities(*this); }
  bool secure() const override { return transport_.secure(); }
  bool can_start_tls() const override;
  void start_tls() override;
  bool plaintext_auth_allowed() const override;
  awaitable<std::optional<std::string>> continuation(std::string challenge) override;

 protected:
  std::shared_ptr<void>& slot_storage(const void* key) override;
  std::shared_ptr<void>* find_slot_storage(const void* key) override;
  void drop_slot_storage(const void* key) override;

 private:
  friend class login_pipeline;
  class session_log;

  /// The session proper, after the connect event; throws when the
  /// connection fails.
  awaitable<void> serve();
  /// Runs one command line; false when the session must end.
  awaitable<bool> execute(std::string_view line);
  /// STLS was answered: TLS, and nothing of before it.
  awaitable<void> begin_tls();
  /// What a command came to.
  struct outcome {
    response reply;
    const module_instance* by = nullptr;  // who answered (its limit bounds the body)
  };
  /// Delivers an event to the instances that want it, in chain order. For
  /// `connect`, the first answer ends the delivery and is returned.
  awaitable<std::optional<outcome>> fire(event e);
  /// Queues a reply, streaming its body; false when it asked to close.
  awaitable<bool> send(outcome result);
  void append_status(const response& r);

  // -- the deadlines (one watchdog) --
  /// A module call starts: it must return within `l`'s time limit.
  /// `command`: an overrun answers -ERR whatever part of the reply went
  /// out (a command, an event, a login stage); otherwise (a body read) only
  /// if nothing did.
  void call_started(const module_instance& l, bool command);
  /// The call returned or threw; true if it overran (the session has been
  /// ended: discard what it returned).
  bool call_ended();
  void on_call_deadline();
  awaitable<void> overrun_reply(std::string text);
  void on_idle_deadline();
  void on_login_deadline();
  /// Calls `op` (a module's on_command, on_event, on_login) bounded by
  /// `l`'s time limit; nullopt when it threw (logged) or overran.
  template <typename T>
  awaitable<std::optional<T>> guarded(const module_instance& l, const char* what, awaitable<T> op);
  void active() { last_active_ = base::watchdog::clock::now(); }

  std::uint64_t id_;
  const chain& chain_;
  const engine_settings& settings_;
  logging::source_log& server_log_;
  session_transport& transport_;
  base::watchdog& dog_;
  std::weak_ptr<void> owner_;
  std::unique_ptr<logging::source_log> base_log_;
  std::unique_ptr<session_log> log_holder_;
  logger& log_;

  base::watchdog::id idle_deadline_, login_deadline_, call_deadline_;
  base::watchdog::time_point last_active_;
  /// While a module call or a body read() runs: whose it is, and whether
  /// its overrun answers -ERR whatever was sent of the reply (see
  /// call_started()).
  const module_instance* calling_ = nullptr;
  bool answer_overrun_ = false;
  /// A call overran its time limit: the session is over.
  bool overran_ = false;
  /// Where the reply being sent begins in the output, and whether part of
  /// it has been written already.
  std::size_t reply_start_ = 0;
  bool reply_flushed_ = false;

  pop3_state state_ = pop3_state::authorization;
  bool closed_ = false;
  bool begun_ = false;
  bool authenticated_pending_ = false;
  bool logout_pending_ = false;
  bool tls_requested_ = false;
  std::optional<identity> login_;
  std::optional<identity> tried_;
  std::shared_ptr<sdps::maildrop> maildrop_;
  sdps::marks marks_;
  std::vector<std::pair<const void*, std::shared_ptr<void>>> slots_;
  session_record record_;
  std::uint64_t body_octets_ = 0;  // of the reply being sent
};

}  // namespace sdps::core
