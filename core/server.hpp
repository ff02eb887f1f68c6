#pragma once
// The sdpsd process: listeners, sessions, signals, privileges.

#include "address_limits.hpp"
#include "chain.hpp"
#include "config.hpp"
#include "connection.hpp"
#include "loader.hpp"
#include "logging.hpp"
#include "tls.hpp"
#include "metrics.hpp"
#include "metrics_http.hpp"

#include <boost/asio/signal_set.hpp>

#include <atomic>
#include <map>
#include <memory>
#include <vector>

namespace sdps::core {

/// The process: `threads` event loops, one thread and one io_context each
/// (nginx's model). Every loop has its own acceptor on every listener,
/// bound with SO_REUSEPORT, so the kernel spreads new connections over the
/// loops; a session lives and dies on the loop that accepted it. What the
/// loops share is thread-safe: the chain (read-only once built), the
/// per-address table, the session count, the TLS context, the metrics.
class server final : public sdps::server_context {
 public:
  explicit server(server_config config);
  ~server() override;

  /// Loads the TLS certificate and key (when `tls:` is set), then loads
  /// and starts every module. Throws config_error.
  void load();
  /// Opens the listeners (one socket per loop each) and logs "listening
  /// on ADDRESS:PORT" once for each listener.
  void bind();
  /// Switches to the configured user, if any. Throws on failure.
  void drop_privileges();
  /// Serves until SIGTERM or SIGINT: runs the first loop on the calling
  /// thread and the others on threads of their own. Returns the exit status.
  int run();

  // sdps::server_context
  /// The loop of the calling thread when it is one of the event loops,
  /// else the first loop.
  executor get_executor() override;
  asio::thread_pool& blocking_pool() override { return pool_; }
  const std::string& customer_domain() const override { return config_.customer_domain; }
  const std::string& server_name() const override { return config_.server_name; }
  logger& log() override { return log_; }
  const settings& site() const override { return *config_.globals; }
  sdps::metrics& metrics() override { return process_metrics(); }

  stderr_log& server_log() { return log_; }
  const server_config& config() const { return config_; }
  std::size_t module_count() const { return chain_ ? chain_->links().size() : 0; }

 private:
  /// One event loop and what lives on it. Only its own thread touches
  /// `acceptors` and `sessions` once run() has started.
  struct worker {
    explicit worker(unsigned i) : index(i) {}
    const unsigned index;  // 0: the first loop, on the main thread
    asio::io_context io{1};
    /// One per listener, same index as policies_.
    std::vector<std::unique_ptr<asio::ip::tcp::acceptor>> acceptors;
    /// The sessions accepted here, for shutdown.
    std::map<std::uint64_t, std::weak_ptr<connection>> sessions;
  };

  awaitable<void> accept_loop(worker& w, asio::ip::tcp::acceptor& acceptor, const listener_policy& policy);
  /// The accept-time admission, all of it: max_sessions, then
  /// max_sessions_per_address on the peer's address. Null after writing a
  /// refusal to `socket` (the caller closes it). On success the session
  /// counts against max_sessions until the caller calls session_gone().
  /// A PROXY header read later moves the session to the real client with
  /// ticket::rekey.
  std::unique_ptr<address_limits::ticket> admit(asio::ip::tcp::socket& socket);
  void session_gone() { open_sessions_.fetch_sub(1, std::memory_order_acq_rel); }
  /// Opens one listening socket on `loop` (SO_REUSEPORT when asked: one
  /// per loop on the same port). Throws with the address in the message.
  std::unique_ptr<asio::ip::tcp::acceptor> open_acceptor(asio::io_context& loop,
                                                         const asio::ip::tcp::endpoint& endpoint,
                                                         bool reuse_port) const;
  void watch_signals();
  /// SIGTERM, SIGINT: closes every loop's acceptors and sessions, each on
  /// its own thread.
  void shutdown();
  /// One loop's part of shutdown(); on that loop's thread.
  void close_loop(worker& w);

  server_config config_;
  asio::thread_pool pool_;
  stderr_log log_;
  service_registry services_;
  std::unique_ptr<chain> chain_;
  connection_limits limits_;
  address_limits per_address_;
  std::unique_ptr<tls_credentials> tls_;
  /// One per listener.
  std::vector<std::unique_ptr<listener_policy>> policies_;
  /// Declared after everything a connection refers to, so that sessions
  /// still queued in a loop are destroyed first.
  std::vector<std::unique_ptr<worker>> workers_;
  std::unique_ptr<metrics_endpoint> metrics_endpoint_;  // on the first loop
  std::unique_ptr<asio::signal_set> signals_;           // on the first loop
  /// Sessions admitted and not yet over, on every loop (max_sessions).
  std::atomic<std::size_t> open_sessions_{0};
  std::atomic<std::uint64_t> next_id_{1};
  std::atomic<bool> stopping_{false};
};

}  // namespace sdps::core
