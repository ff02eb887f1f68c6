#pragma once
// `metrics_listen:`: a minimal HTTP/1.0 responder for Prometheus. GET
// /metrics answers the registry's text; anything else 404 or 405; a
// client outside `metrics_allow:` 403. One request per connection,
// bounded in size and time; no keep-alive.

#include "logging.hpp"
#include "metrics.hpp"

#include "base/address_prefix.hpp"

#include <sdps/asio.hpp>

#include <memory>
#include <vector>

namespace sdps::core {

class metrics_endpoint {
 public:
  /// Binds `where` (throws std::runtime_error when it cannot); answers
  /// the clients inside `allow`, and 403 to the others.
  metrics_endpoint(asio::io_context& io, const asio::ip::tcp::endpoint& where, std::vector<base::address_prefix> allow,
                   metrics_registry& registry, logging::source_log& log);
  /// Starts accepting on the io_context.
  void start();
  /// Stops accepting; requests in flight finish on their own.
  void close();
  /// Replaces the clients answered (SIGHUP), from the next connection on.
  /// On the io_context's thread, as the accepting runs.
  void allow(std::vector<base::address_prefix> allow);
  asio::ip::tcp::endpoint local_endpoint() const { return acceptor_.local_endpoint(); }

 private:
  awaitable<void> accept_loop();

  asio::ip::tcp::acceptor acceptor_;
  std::vector<base::address_prefix> allow_;
  bool refusal_logged_ = false;  // one warning per list, debug lines after it
  metrics_registry& registry_;
  logging::source_log& log_;
};

}  // namespace sdps::core
