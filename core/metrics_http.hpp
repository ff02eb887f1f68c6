#pragma once
// `metrics_listen:`: a minimal HTTP/1.0 responder for Prometheus. GET
// /metrics answers the registry's text; anything else 404 or 405. One
// request per connection, bounded in size and time; no keep-alive.

#include "logging.hpp"
#include "metrics.hpp"

#include <sdps/asio.hpp>

#include <memory>

namespace sdps::core {

class metrics_endpoint {
 public:
  /// Binds `where` (throws std::runtime_error when it cannot).
  metrics_endpoint(asio::io_context& io, const asio::ip::tcp::endpoint& where, metrics_registry& registry,
                   stderr_log& log);
  /// Starts accepting on the io_context.
  void start();
  /// Stops accepting; requests in flight finish on their own.
  void close();
  asio::ip::tcp::endpoint local_endpoint() const { return acceptor_.local_endpoint(); }

 private:
  awaitable<void> accept_loop();

  asio::ip::tcp::acceptor acceptor_;
  metrics_registry& registry_;
  stderr_log& log_;
};

}  // namespace sdps::core
