#pragma once
// `control_socket:`: the unix socket `sdps who`, `sdps kick` and `sdps
// status` talk to (protocol: lib/control, docs/control.md). One request
// per connection, bounded in size and time, answered on the first event
// loop; what it asks of the sessions runs on each session's own loop
// (server.cpp).

#include "punt_monitor.hpp"

#include "control/protocol.hpp"

#include <sdps/asio.hpp>
#include <sdps/log.hpp>

#include <boost/asio/local/stream_protocol.hpp>

#include <chrono>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include <sys/types.h>

namespace sdps::core {

/// Which sessions a kick ends: checked and normalised from the request.
struct session_filter {
  std::optional<std::uint64_t> id;
  std::string host;                 ///< with no id: sessions logged in to this host...
  std::optional<std::string> user;  ///< ...and, if set, as exactly this user ("" = the host login)
  bool matches(std::uint64_t session_id, const identity* login) const;
};

/// What the control socket asks of the server's sessions: the server
/// implements it, gathering from every event loop.
class control_handler {
 public:
  /// Every open session, on every loop.
  virtual awaitable<std::vector<control::session_row>> list_sessions() = 0;
  /// Ends the sessions `which` selects without UPDATE (logout line
  /// `end=kicked`), then waits up to `wait` for them to be over (their
  /// locks released); each row's `gone` says whether it was.
  virtual awaitable<std::vector<control::session_row>> kick_sessions(session_filter which,
                                                                     std::chrono::milliseconds wait) = 0;
  /// Sessions open now.
  virtual std::size_t open_sessions() const = 0;
  /// "embedded", "frontend" or "backend".
  virtual std::string role() const = 0;

 protected:
  ~control_handler() = default;
};

/// Where the socket goes and who may use it (the config).
struct control_socket_config {
  std::filesystem::path path;
  /// The group the socket is given (mode 0660), if set; otherwise the
  /// configured user's group (or the process's).
  std::string group;
  /// The config's `user:`: when sdpsd starts as root, the socket becomes
  /// this user's, as it would be had the user made it.
  std::string user;
  std::string customer_domain;
};

class control_socket {
 public:
  /// Binds the socket (mode 0660, owner and group as the config says),
  /// creating its folder if missing. A socket file nothing listens on (a
  /// killed sdpsd's) is replaced; a live one, or anything that is not a
  /// socket, is refused. Throws std::runtime_error saying which. On the
  /// main thread, before the loops run.
  control_socket(asio::io_context& loop, control_socket_config config, control_handler& handler,
                 punt_monitor* monitor, logger& log);
  /// close().
  ~control_socket();
  control_socket(const control_socket&) = delete;
  control_socket& operator=(const control_socket&) = delete;

  /// Starts accepting on the loop.
  void start();
  /// Stops accepting and removes the socket file (if it is still the one
  /// bound here); requests under way finish. Idempotent; on the loop.
  void close();
  const std::filesystem::path& path() const { return config_.path; }

 private:
  using stream = asio::local::stream_protocol;
  awaitable<void> accept_loop();
  static awaitable<void> serve(control_socket* self, std::shared_ptr<stream::socket> socket);
  /// The reply's lines for one request line.
  awaitable<std::string> answer(std::string line, std::string who);
  awaitable<std::string> status();
  /// The request's selector as a filter, or an error record.
  std::variant<session_filter, control::record> filter_of(const control::selector& which) const;

  control_socket_config config_;
  control_handler& handler_;
  punt_monitor* monitor_;  // null: no spool in the chain
  logger& log_;
  stream::acceptor acceptor_;
  /// What was bound, so that close() removes only our own file.
  dev_t device_ = 0;
  ino_t inode_ = 0;
  bool closed_ = false;
  std::size_t serving_ = 0;  // connections being answered
};

}  // namespace sdps::core
