#pragma once
/// @file
/// A blocking TCP connection for line protocols (SMTP, LMTP) with a time
/// limit on every read and write. Used by `sdps flush` and `sdps expire`
/// (client side) and by `sdps lmtp` (one thread per connection, server
/// side). Plain POSIX sockets and poll(2): every call blocks only its own
/// thread, and for at most the connection's timeout.

#include <chrono>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>

namespace sdps::smtp {

/// The peer could not be reached, the connection broke or timed out.
class network_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// "127.0.0.1:25", "[::1]:2525": a numeric address and a port. Host names
/// are refused (no DNS in a dial-in hook).
struct endpoint {
  std::string address;  ///< numeric, without brackets
  std::uint16_t port = 0;
  /// "ADDR:PORT" or "[ADDR]:PORT" for IPv6.
  std::string to_string() const;
  /// Parses ADDR:PORT, [V6ADDR]:PORT, or a bare ADDR with `default_port`
  /// (0: a port is required). Port 0 (any free port) only when
  /// `for_listening`. Throws std::invalid_argument.
  static endpoint parse(std::string_view text, std::uint16_t default_port = 0, bool for_listening = false);
};

/// One connected stream socket. Owns the descriptor.
class connection {
 public:
  /// Takes ownership of a connected socket `fd`.
  connection(int fd, std::chrono::milliseconds timeout);
  /// Connects to `to` within `timeout`. Throws network_error.
  static connection open(const endpoint& to, std::chrono::milliseconds timeout);
  ~connection();
  connection(connection&& other) noexcept;
  connection& operator=(connection&&) = delete;
  connection(const connection&) = delete;
  connection& operator=(const connection&) = delete;

  /// The limit for each following read or write (each wait for data).
  void set_timeout(std::chrono::milliseconds timeout) { timeout_ = timeout; }
  std::chrono::milliseconds timeout() const { return timeout_; }

  /// Up to `max` octets of input, ending at (and including) the first LF
  /// when there is one within `max`. Empty at the end of the stream.
  /// Throws network_error on a timeout or an error.
  std::string read_line(std::size_t max);

  /// Octets received and not yet returned by read_line().
  std::size_t buffered() const { return in_.size() - in_pos_; }

  /// Queues `data` for sending; sends when the buffer is large.
  void write(std::string_view data);
  /// Sends everything queued. Throws network_error.
  void flush();

  /// "ADDR:PORT" of the peer, for logs.
  std::string peer() const;
  int fd() const { return fd_; }

 private:
  bool fill();  // false at end of stream
  void wait(short events);

  int fd_ = -1;
  std::chrono::milliseconds timeout_;
  std::string in_;
  std::size_t in_pos_ = 0;
  std::string out_;
};

}  // namespace sdps::smtp
