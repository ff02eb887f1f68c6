#pragma once
// One client connection: the socket (TLS over it once negotiated), the
// PROXY header a balancer sends first, the line reader and the output
// buffer. It carries a session_engine, which runs the POP3 session over it.

#include "address_limits.hpp"
#include "chain.hpp"
#include "client_stream.hpp"
#include "line_reader.hpp"
#include "logging.hpp"
#include "base/address_prefix.hpp"
#include "session_engine.hpp"
#include "tls.hpp"

#include "base/watchdog.hpp"

#include <array>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace sdps::core {

/// What every connection of the server works under (from the config).
struct connection_settings {
  engine_settings session;
  std::size_t line_limit = 512;
  /// Peers (load balancers) whose connections begin with a PROXY protocol
  /// header, and how long one has to send it.
  std::vector<base::address_prefix> proxy_protocol_from;
  std::chrono::milliseconds proxy_header_timeout{std::chrono::seconds(5)};
};

/// How sessions on one listener treat TLS (from the config; outlives
/// every connection).
struct listener_policy {
  /// The server's credentials; null when `tls:` is not configured.
  tls_credentials* tls = nullptr;
  /// Implicit TLS: handshake before the greeting. Otherwise STLS is
  /// offered when `tls` is set.
  bool implicit_tls = false;
};

class connection final : public session_transport, public std::enable_shared_from_this<connection> {
 public:
  /// `settings`: what the server's config said when the client connected;
  /// the session keeps them to its end (a SIGHUP changes the next
  /// sessions' settings).
  connection(asio::ip::tcp::socket socket, std::uint64_t id, const chain& modules,
             std::shared_ptr<const connection_settings> settings, logging::source_log& server_log,
             const listener_policy& policy);
  ~connection();

  /// Serves the client to the end: the PROXY header when its peer must
  /// send one, implicit TLS, then the session. Spawn it with co_spawn on
  /// the socket's executor, holding the connection.
  awaitable<void> run();
  /// Ends the session without UPDATE; `why` for the logout line
  /// (session_end). Idempotent.
  void end(const char* why) { engine_.close(why); }
  /// Keeps the session's place in the per-address table until the
  /// connection object goes. Call before run().
  void hold(std::unique_ptr<address_limits::ticket> ticket) { ticket_ = std::move(ticket); }
  session_engine& session() { return engine_; }
  /// The balancer the client came through, when a PROXY header was read.
  const std::optional<asio::ip::tcp::endpoint>& via() const { return via_; }
  /// When the connection was accepted (`sdps who`'s since).
  std::chrono::system_clock::time_point connected_at() const { return connected_at_; }
  /// Octets written to the client so far (`sdps who`).
  std::uint64_t octets_sent() const { return sent_; }

  // session_transport
  awaitable<input> next_line(std::string_view& line) override;
  std::optional<input> line_now(std::string_view& line) override;
  std::string& output() override { return out_; }
  awaitable<void> flush() override;
  bool flush_now() override;
  awaitable<void> write(asio::const_buffer data) override;
  bool writing() const override { return writing_; }
  bool client_gone() override;
  void close() override;
  bool secure() const override { return stream_.secure(); }
  bool tls_available() const override { return policy_.tls && !policy_.implicit_tls; }
  awaitable<void> start_tls() override;
  awaitable<void> finish() override;
  asio::ip::tcp::endpoint remote_endpoint() const override { return remote_; }
  asio::ip::tcp::endpoint local_endpoint() const override { return local_; }
  executor get_executor() override { return stream_.socket().get_executor(); }

 private:
  /// Reads the PROXY header a listed balancer must send before the
  /// greeting, within its time limit; takes its client address. Returns
  /// false, having logged why and closed the connection, if none came.
  awaitable<bool> read_proxy_header();
  /// The server side of a TLS handshake within tls: handshake_timeout.
  awaitable<void> handshake();

  client_stream stream_;
  /// The connection's deadlines (its own: the PROXY header, a handshake,
  /// the goodbye) and the session's.
  base::watchdog dog_;
  base::watchdog::id deadline_ = 0;
  bool expired_ = false;
  std::shared_ptr<const connection_settings> held_settings_;
  const connection_settings& settings_;
  const listener_policy& policy_;
  asio::ip::tcp::endpoint remote_, local_;
  std::optional<asio::ip::tcp::endpoint> via_;
  line_reader reader_;
  /// Received octets not yet fed to reader_: in_[in_begin_, in_end_).
  std::array<char, 4096> in_{};
  std::size_t in_begin_ = 0, in_end_ = 0;
  bool first_read_ = true;
  std::string out_;
  std::uint64_t sent_ = 0;
  const std::chrono::system_clock::time_point connected_at_ = std::chrono::system_clock::now();
  bool writing_ = false;
  bool closed_ = false;
  std::unique_ptr<address_limits::ticket> ticket_;
  /// Last: it refers to everything above.
  session_engine engine_;
};

}  // namespace sdps::core
