#pragma once
/// @file
/// A stream connection for line protocols (SMTP, LMTP) on an event loop:
/// lines in, queued writes out, every wait bounded. Used by `sdps flush`
/// and `sdps expire` (the SMTP client, client.hpp) and by `sdps lmtp`
/// (server side, over TCP or a unix socket). The time limit is a deadline
/// on the connection's own watchdog (lib/base/watchdog.hpp), set around
/// each wait: when it passes, the socket's pending operation is cancelled
/// and the wait ends with network_error (timed_out() then says why).
///
/// One executor: every call on the thread that runs the socket's
/// io_context. Not movable (the watchdog's callback refers to it): hold it
/// by unique_ptr.

#include "base/endpoint.hpp"
#include "base/watchdog.hpp"

#include <sdps/asio.hpp>

#include <boost/asio/generic/stream_protocol.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>

namespace sdps::smtp {

/// The peer could not be reached, the connection broke or timed out.
class network_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class connection {
 public:
  /// A TCP or unix stream socket.
  using socket_type = asio::generic::stream_protocol::socket;

  /// Takes a connected socket.
  connection(socket_type socket, std::chrono::milliseconds timeout);
  /// Connects to `to` (a literal address: no DNS lookup here) within
  /// `timeout`, on `ex`. Throws network_error.
  static awaitable<std::unique_ptr<connection>> open(executor ex, base::endpoint to,
                                                     std::chrono::milliseconds timeout);
  connection(const connection&) = delete;
  connection& operator=(const connection&) = delete;

  /// The limit for each following wait (each read that finds no data, each
  /// flush).
  void set_timeout(std::chrono::milliseconds timeout) { timeout_ = timeout; }
  std::chrono::milliseconds timeout() const { return timeout_; }

  /// Up to `max` octets of input, ending at (and including) the first LF
  /// when there is one within `max`. Empty at the end of the stream.
  /// Throws network_error on a timeout (timed_out()) or an error.
  awaitable<std::string> read_line(std::size_t max);

  /// Octets received and not yet returned by read_line().
  std::size_t buffered() const { return in_.size() - in_pos_; }

  /// Queues `data` for the next flush().
  void write(std::string_view data) { out_.append(data); }
  /// Octets queued and not yet sent.
  std::size_t queued() const { return out_.size(); }
  /// Sends everything queued. Throws network_error (timed_out() if the
  /// peer did not take it in time).
  awaitable<void> flush();

  /// Whether the last wait ended because its time limit passed.
  bool timed_out() const { return timed_out_; }
  /// Ends the pending wait, if any, with network_error (timed_out() false);
  /// the connection stays usable (a server that stops says 421 on it).
  void cancel();
  /// Closes the socket; a pending wait ends with network_error.
  void close();

  /// "ADDR:PORT" of a TCP peer, "local" for a unix socket: for logs.
  std::string peer() const;

 private:
  /// The limit, as text for messages ("30s", "250ms").
  std::string limit_text() const;
  /// Throws network_error for a failed wait: the time limit, or `ec`.
  [[noreturn]] void fail(const char* what, const boost::system::error_code& ec) const;

  socket_type socket_;
  base::watchdog dog_;
  base::watchdog::id deadline_;
  std::chrono::milliseconds timeout_;
  bool timed_out_ = false;
  std::string in_;
  std::size_t in_pos_ = 0;
  std::string out_;
};

}  // namespace sdps::smtp
