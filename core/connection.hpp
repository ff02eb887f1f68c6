#pragma once
// One client connection: reads command lines, runs them through the chain,
// writes replies with backpressure, and owns the POP3 state.

#include "address_limits.hpp"
#include "chain.hpp"
#include "client_stream.hpp"
#include "config.hpp"
#include "line_reader.hpp"
#include "logging.hpp"
#include "tls.hpp"
#include "networks.hpp"
#include "session_record.hpp"

#include <sdps/session.hpp>

#include <array>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace sdps::core {

/// Limits a connection works under (from the server config).
struct connection_limits {
  std::chrono::milliseconds idle_timeout{std::chrono::minutes(30)};
  /// Connect to successful login, not extended by commands; 0 is none.
  std::chrono::milliseconds login_timeout{std::chrono::seconds(60)};
  std::size_t line_limit = 512;
  /// Output is flushed to the socket once this much is buffered.
  std::size_t flush_threshold = 64 * 1024;
  /// Body octets asked of a module per read() call (at most; a body that
  /// says its size gets a buffer just big enough).
  std::size_t body_chunk = 256 * 1024;
  /// Peers whose connections begin with a PROXY protocol header (load
  /// balancers), and how long one has to send it.
  std::vector<network> proxy_protocol_from;
  std::chrono::milliseconds proxy_header_timeout{std::chrono::seconds(5)};
};

/// How sessions on one listener treat TLS and passwords (from the config;
/// outlives every connection).
struct listener_policy {
  /// The server's credentials; null when `tls:` is not configured.
  tls_credentials* tls = nullptr;
  /// Implicit TLS: handshake before the greeting. Otherwise STLS is
  /// offered when `tls` is set.
  bool implicit_tls = false;
  plaintext_policy plaintext = plaintext_policy::tls_or_trusted;
  const std::vector<network>* trusted = nullptr;
};

class connection final : public sdps::session,
                         public call_watch,
                         public std::enable_shared_from_this<connection> {
 public:
  connection(asio::ip::tcp::socket socket, std::uint64_t id, chain& modules, const connection_limits& limits,
             const std::string& banner, stderr_log& server_log, const listener_policy& policy);
  ~connection() override;

  /// Serves the client until it quits, the connection drops, the idle
  /// timer fires, a module call overruns its time limit or close() is
  /// called. Whatever ends it, a closed session runs no further command
  /// (lines already read are dropped), and the disconnect event comes
  /// after any late module call has returned. Spawn it with co_spawn.
  awaitable<void> run();
  /// Ends the session without UPDATE (server shutdown). Idempotent.
  void close();
  /// Says why the session is ending, for its logout line (first one wins).
  void end_reason(const char* how) { record_.ended(how); }
  /// Keeps the session's place in the per-address table until the
  /// connection object goes. Call before run().
  void hold(std::unique_ptr<address_limits::ticket> ticket) { ticket_ = std::move(ticket); }
  /// That place (null when none was given), e.g. to rekey it.
  address_limits::ticket* address_ticket() { return ticket_.get(); }

  // sdps::session
  std::uint64_t id() const override { return id_; }
  /// The client: the peer, or the client a PROXY header named.
  asio::ip::tcp::endpoint remote_endpoint() const override { return remote_; }
  /// The balancer the client came through, when a PROXY header was read.
  const std::optional<asio::ip::tcp::endpoint>& via() const { return via_; }
  asio::ip::tcp::endpoint local_endpoint() const override { return local_; }
  executor get_executor() override { return stream_.socket().get_executor(); }
  logger& log() override { return *log_; }
  pop3_state state() const override { return state_; }
  void enter(pop3_state next) override;
  std::vector<std::string> capabilities() override { return chain_.capabilities(*this); }
  bool secure() const override { return stream_.secure(); }
  bool can_start_tls() const override;
  void start_tls() override;
  bool plaintext_auth_allowed() const override;
  awaitable<std::optional<std::string>> continuation(std::string challenge) override;
  std::optional<identity>& login() override { return login_; }
  void drop_slot(const void* owner) override;

  // call_watch: the commands' module calls, bounded by the watchdog.
  void call_started(const module_instance& l) override;
  bool call_ended() override;

 protected:
  std::shared_ptr<void>& slot_storage(const void* owner) override;
  std::shared_ptr<void>* find_slot_storage(const void* owner) override;

 private:
  awaitable<void> serve();
  /// The next command line (or overlong report) from the client, reading
  /// when what was read before is used up; before each read the replies
  /// queued so far are sent (pipelined commands get theirs together).
  awaitable<line_reader::status> next_input();
  /// STLS accepted: drops unread input, runs the handshake.
  awaitable<void> begin_tls();
  /// The session's one timer: the idle timer (RFC 1939's autologout) and
  /// the time limit of a reply body's read(), both kept lazily: activity
  /// and reads only note times, and the timer wakes at the earliest moment
  /// something may be due, so a command costs no timer system call.
  awaitable<void> watchdog();
  /// A module call (a command's, or a body read()) overran its instance's
  /// time limit: ends the session at once. The client gets the replies
  /// queued before and -ERR [SYS/TEMP] (for a body read, only if nothing
  /// of its reply went out yet; else just the closed connection). The call
  /// runs on; the session ends for good when it returns.
  awaitable<void> call_overrun();
  /// Makes the watchdog wake by `when` (no system call if it already will).
  void watch(std::chrono::steady_clock::time_point when);
  /// Reads the PROXY header a listed balancer must send before the
  /// greeting, within the time limit; takes its client address. Returns
  /// false, having logged why and closed the session, if none came.
  awaitable<bool> read_proxy_header();
  /// Closes a session still in AUTHORIZATION at login_timeout.
  awaitable<void> login_deadline();
  /// False once the session is closed, and closes it when the client has
  /// gone (sent FIN or a reset), even with its lines still queued here:
  /// checked before each command, so nothing runs for a client that left.
  bool still_open();
  /// Runs one command line; returns false when the session must end.
  awaitable<bool> execute(const std::string& line);
  /// Queues a reply (streaming its body); returns false if it asked to close.
  awaitable<bool> send(dispatch_result result);
  awaitable<void> flush();
  /// Writes `data` to the client (flush()'s write, also used for a body
  /// piece sent straight from its read buffer).
  awaitable<void> write_out(asio::const_buffer data);
  void append_status(const response& r);
  /// Activity: the idle timer starts again (a note, not a timer call).
  void rearm_idle_timer() { last_active_ = std::chrono::steady_clock::now(); }

  client_stream stream_;
  /// The watchdog's timer (see watchdog()).
  asio::steady_timer idle_;
  std::chrono::steady_clock::time_point last_active_;
  /// While a module call or a body read() runs: when it must have
  /// returned, whose it is, and whether its overrun answers -ERR whatever
  /// was sent of the reply (a command) or only if nothing was (a read).
  std::chrono::steady_clock::time_point call_deadline_ = std::chrono::steady_clock::time_point::max();
  const module_instance* calling_ = nullptr;
  bool answer_overrun_ = false;
  /// The shortest time limit in the chain: while commands keep coming the
  /// watchdog wakes at least this often, so a read's deadline is never
  /// earlier than its next wake (no timer call per read).
  std::chrono::milliseconds shortest_limit_{std::chrono::seconds(60)};
  /// A call overran its time limit (call_overrun() ran).
  bool overran_ = false;
  /// flush() is writing (call_overrun() must not write beside it).
  bool writing_ = false;
  /// Where the reply being sent begins in out_, and whether part of it
  /// has been written already.
  std::size_t reply_start_ = 0;
  bool reply_flushed_ = false;
  asio::steady_timer login_deadline_;
  const listener_policy& policy_;
  std::uint64_t id_;
  chain& chain_;
  const connection_limits& limits_;
  const std::string& banner_;
  std::unique_ptr<stderr_log> log_;
  asio::ip::tcp::endpoint remote_, local_;
  std::optional<asio::ip::tcp::endpoint> via_;
  /// The connect event fired: modules know of the session.
  bool announced_ = false;
  line_reader reader_;
  /// Received octets not yet fed to reader_: in_[in_begin_, in_end_).
  std::array<char, 4096> in_{};
  std::size_t in_begin_ = 0, in_end_ = 0;
  bool tls_requested_ = false;
  bool first_read_ = true;
  std::string out_;
  pop3_state state_ = pop3_state::authorization;
  bool authenticated_pending_ = false;
  bool closed_ = false;
  /// A module call that overran its time limit, still running.
  std::shared_ptr<late_call> late_;
  session_record record_;
  std::uint64_t body_octets_ = 0;  // of the reply being sent
  std::optional<identity> login_;
  std::vector<std::pair<const void*, std::shared_ptr<void>>> slots_;
  std::unique_ptr<address_limits::ticket> ticket_;
};

}  // namespace sdps::core
