#pragma once
// The sdpsd process: listeners, sessions, signals, privileges.

#include "address_limits.hpp"
#include "base/activation.hpp"
#include "chain.hpp"
#include "config.hpp"
#include "connection.hpp"
#include "control_socket.hpp"
#include "loader.hpp"
#include "logging.hpp"
#include "tls.hpp"
#include "metrics.hpp"
#include "metrics_http.hpp"
#include "reload.hpp"
#include "punt_monitor.hpp"

#include <boost/asio/signal_set.hpp>

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

namespace sdps::core {

/// The process: `threads` event loops, one thread and one io_context each
/// (nginx's model). Every loop has its own acceptor on every listener,
/// bound with SO_REUSEPORT, so the kernel spreads new connections over the
/// loops; a session lives and dies on the loop that accepted it. What the
/// loops share is thread-safe: the chain (read-only once built), the
/// per-address table, the session count, the TLS context, the metrics.
class server final : public sdps::server_context, private control_handler {
 public:
  explicit server(server_config config);
  ~server() override;

  /// Loads the TLS certificate and key (when `tls:` is set), then loads
  /// and starts every module. Throws config_error.
  void load();
  /// Opens the listeners (one socket per loop each) and logs "listening
  /// on ADDRESS:PORT" once for each listener, after the punt probes and the
  /// control socket (open_control()) are up: when those lines appear,
  /// everything is bound. Sockets passed by systemd
  /// (`activated`, base::take_activated_sockets) replace the config's
  /// listeners: each loop accepts on its own duplicate of each; one named
  /// "pop3s" (FileDescriptorName=) is implicit TLS.
  void bind(std::vector<base::activated_socket> activated = {});
  /// Switches to the configured user, if any (base::become_user; not
  /// running as root, sdpsd must be that user already). Throws on failure.
  void drop_privileges();
  /// Serves until SIGTERM or SIGINT: runs the first loop on the calling
  /// thread and the others on threads of their own. Returns the exit status.
  int run();

  // sdps::server_context
  /// The loop of the calling thread when it is one of the event loops,
  /// else the first loop.
  executor get_executor() override;
  asio::thread_pool& blocking_pool() override { return pool_; }
  const std::string& customer_domain() const override { return config_.site.customer_domain; }
  const std::string& server_name() const override { return config_.site.server_name; }
  logger& log() override { return log_; }
  const settings& site() const override { return *config_.globals; }
  sdps::metrics& metrics() override { return process_metrics(); }

  logging::source_log& server_log() { return log_; }
  /// The configuration in force (SIGHUP changes its live settings).
  const server_config& config() const { return config_; }
  /// What the core itself needs of the configured `user:` (the config
  /// file, which SIGHUP reads again, and the TLS certificate and key),
  /// then every instance's check(): one line per problem. Runs as whoever
  /// calls it (main() calls it as the configured user).
  std::vector<std::string> check() const;
  /// SIGHUP: reads the config file again and applies what changed and can
  /// change live (reload.hpp), logging each change and each that waits for
  /// a restart; refuses a broken file with its error, keeping the
  /// configuration in force. Then every module reloads its external files
  /// and the TLS certificate is read again. On the first event loop.
  void reload();
  std::size_t module_count() const { return chain_ ? chain_->links().size() : 0; }
  /// The chain (after load()).
  const chain& modules() const { return *chain_; }
  /// Every spool of the chain (after load()), with its instance name: what
  /// the probes look at.
  std::vector<std::pair<std::string, spool*>> spools() const { return services_.named<spool>(); }

 private:
  /// One event loop and what lives on it. Only its own thread touches
  /// `acceptors` and `sessions` once run() has started.
  struct worker {
    explicit worker(unsigned i) : index(i) {}
    const unsigned index;  // 0: the first loop, on the main thread
    asio::io_context io{1};
    /// One per listener, same index as policies_.
    std::vector<std::unique_ptr<asio::ip::tcp::acceptor>> acceptors;
    /// The sessions accepted here, for shutdown and the control socket.
    std::map<std::uint64_t, std::weak_ptr<connection>> sessions;
    /// Woken (cancelled) whenever a session here is over: kicks waiting
    /// for the sessions they ended.
    std::vector<asio::steady_timer*> end_watchers;
  };

  awaitable<void> accept_loop(worker& w, asio::ip::tcp::acceptor& acceptor, const listener_policy& policy);
  /// The accept-time admission, all of it: max_sessions, then
  /// max_sessions_per_address on the peer's address (unless `settings`
  /// name it a balancer). Null after writing a
  /// refusal to `socket` (the caller closes it). On success the session
  /// counts against max_sessions until the caller calls session_gone().
  /// A PROXY header read later moves the session to the real client with
  /// ticket::rekey.
  std::unique_ptr<address_limits::ticket> admit(asio::ip::tcp::socket& socket, const connection_settings& settings);
  void session_gone() { open_sessions_.fetch_sub(1, std::memory_order_acq_rel); }
  /// Opens one listening socket on `loop` (SO_REUSEPORT when asked: one
  /// per loop on the same port). Throws with the address in the message.
  std::unique_ptr<asio::ip::tcp::acceptor> open_acceptor(asio::io_context& loop,
                                                         const asio::ip::tcp::endpoint& endpoint,
                                                         bool reuse_port) const;
  /// One socket from systemd, on every loop; returns its "listening on" line.
  std::string adopt(const base::activated_socket& socket);
  void watch_signals();
  /// The settings new connections start with (SIGHUP replaces them; a
  /// session keeps the ones it started with). Any thread.
  std::shared_ptr<const connection_settings> connection_defaults() const {
    std::lock_guard guard(settings_lock_);
    return settings_;
  }
  /// Makes the connection settings and limits of `config_`'s live settings
  /// the ones in force.
  void apply_live_settings();
  /// SIGTERM, SIGINT: closes every loop's acceptors and sessions, each on
  /// its own thread.
  void shutdown();
  /// One loop's part of shutdown(); on that loop's thread.
  void close_loop(worker& w);

  // -- the punt probes and the control socket (docs/operations.md) --
  /// bind()'s last part: the probes of every spool, and the control
  /// socket when `control_socket:` is set. Throws std::runtime_error.
  void open_control();
  /// shutdown()'s part, on the first loop: no more probes or requests.
  void close_control();
  // control_handler: every loop's sessions, each read or ended on its own
  // loop's thread (loop_sessions), gathered on the first loop.
  awaitable<std::vector<control::session_row>> list_sessions() override;
  awaitable<std::vector<control::session_row>> kick_sessions(session_filter which,
                                                             std::chrono::milliseconds wait) override;
  std::size_t open_sessions() const override { return open_sessions_.load(std::memory_order_relaxed); }
  std::string role() const override { return role_; }
  /// `w`'s sessions (those `which` selects, ending them when `kick`), run
  /// on `w`'s loop; the caller resumes on its own. Not a coroutine:
  /// docs/toolchain.md.
  awaitable<std::vector<control::session_row>> on_loop(worker& w, std::shared_ptr<const session_filter> which,
                                                       bool kick);
  static awaitable<std::vector<control::session_row>> loop_sessions(worker* w,
                                                                     std::shared_ptr<const session_filter> which,
                                                                     bool kick);
  /// Of `ids`, those still open on `w` once they are all over or
  /// `deadline` has passed; run on `w`'s loop.
  awaitable<std::vector<std::uint64_t>> wait_on_loop(worker& w, std::vector<std::uint64_t> ids,
                                                     std::chrono::steady_clock::time_point deadline);
  static awaitable<std::vector<std::uint64_t>> loop_wait(worker* w, std::vector<std::uint64_t> ids,
                                                         std::chrono::steady_clock::time_point deadline);

  server_config config_;
  /// The file as sdpsd runs with it, for the next SIGHUP's comparison.
  config_text in_force_;
  asio::thread_pool pool_;
  std::shared_ptr<logging::sink> sink_;
  logging::source_log log_;
  service_registry services_;
  std::unique_ptr<chain> chain_;
  mutable std::mutex settings_lock_;  // guards settings_
  std::shared_ptr<const connection_settings> settings_;
  /// max_sessions, changed by SIGHUP while the loops admit.
  std::atomic<std::size_t> max_sessions_;
  address_limits per_address_;
  std::unique_ptr<tls_credentials> tls_;
  /// One per listener.
  std::vector<std::unique_ptr<listener_policy>> policies_;
  /// Declared after everything a connection refers to, so that sessions
  /// still queued in a loop are destroyed first.
  std::vector<std::unique_ptr<worker>> workers_;
  std::unique_ptr<metrics_endpoint> metrics_endpoint_;  // on the first loop
  std::unique_ptr<asio::signal_set> signals_;           // on the first loop
  /// On the first loop; after workers_, so that they go before the loops.
  std::unique_ptr<punt_monitor> monitor_;
  std::unique_ptr<control_socket> control_;
  std::string role_ = "embedded";
  /// Sessions admitted and not yet over, on every loop (max_sessions).
  std::atomic<std::size_t> open_sessions_{0};
  std::atomic<std::uint64_t> next_id_{1};
  std::atomic<bool> stopping_{false};
};

}  // namespace sdps::core
