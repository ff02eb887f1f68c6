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

#include <map>
#include <memory>
#include <vector>

namespace sdps::core {

class server final : public sdps::server_context {
 public:
  explicit server(server_config config);
  ~server() override;

  /// Loads the TLS certificate and key (when `tls:` is set), then loads
  /// and starts every module. Throws config_error.
  void load();
  /// Opens the listeners and logs "listening on ADDRESS:PORT" for each.
  void bind();
  /// Switches to the configured user, if any. Throws on failure.
  void drop_privileges();
  /// Serves until SIGTERM or SIGINT. Returns the exit status.
  int run();

  // sdps::server_context
  executor get_executor() override { return io_.get_executor(); }
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
  awaitable<void> accept_loop(asio::ip::tcp::acceptor& acceptor, const listener_policy& policy);
  /// The accept-time admission, all of it: max_sessions, then
  /// max_sessions_per_address on the peer's address. Null after writing a
  /// refusal to `socket` (the caller closes it). A PROXY header read later
  /// moves the session to the real client with ticket::rekey.
  std::unique_ptr<address_limits::ticket> admit(asio::ip::tcp::socket& socket);
  void watch_signals();
  void shutdown();

  server_config config_;
  asio::io_context io_{1};
  asio::thread_pool pool_;
  stderr_log log_;
  service_registry services_;
  std::unique_ptr<chain> chain_;
  connection_limits limits_;
  address_limits per_address_;
  std::unique_ptr<tls_credentials> tls_;
  std::vector<std::unique_ptr<asio::ip::tcp::acceptor>> acceptors_;
  /// One per acceptor, same index.
  std::vector<std::unique_ptr<listener_policy>> policies_;
  std::unique_ptr<metrics_endpoint> metrics_endpoint_;
  std::map<std::uint64_t, std::weak_ptr<connection>> sessions_;
  std::uint64_t next_id_ = 1;
  asio::signal_set signals_;
  bool stopping_ = false;
};

}  // namespace sdps::core
