#pragma once
/// @file
/// An SMTP client for one session (RFC 5321): greeting, EHLO (HELO when
/// EHLO is refused), then any number of single-recipient transactions,
/// using PIPELINING (RFC 2920), 8BITMIME (RFC 6152) and SIZE (RFC 1870)
/// when the server offers them. Asynchronous, on the caller's event loop
/// (C++20 coroutines); every wait is bounded by the options' timeouts
/// (RFC 5321 section 4.5.3.2 gives the defaults).

#include "smtp/connection.hpp"
#include "smtp/protocol.hpp"

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>

namespace sdps::smtp {

struct client_options {
  std::string helo = "localhost";  ///< the name sent with EHLO/HELO
  std::chrono::milliseconds connect_timeout{std::chrono::seconds(30)};
  std::chrono::milliseconds command_timeout{std::chrono::minutes(5)};  ///< each reply
  std::chrono::milliseconds data_timeout{std::chrono::minutes(10)};    ///< the reply to the final dot
};

/// The server answered the greeting or EHLO/HELO with something other
/// than 2xx: it does not want mail now (4xx) or at all (5xx).
class refused : public network_error {
 public:
  explicit refused(smtp::reply r) : network_error("refused: " + r.summary()), answer_(std::move(r)) {}
  const smtp::reply& answer() const { return answer_; }

 private:
  smtp::reply answer_;
};

/// What became of one message.
struct delivery_result {
  enum class outcome { delivered, deferred, failed } result = outcome::deferred;
  reply last;          ///< the reply that decided it
  std::string stage;   ///< "MAIL", "RCPT", "DATA" or "end of data"
};

/// Fills a prefix of the buffer with the next octets of the message
/// (CRLF line ends, not yet dot-stuffed); 0 at its end. May throw.
using message_reader = std::function<std::size_t(std::span<char>)>;

/// One SMTP session. All calls on the event loop it was opened on, one at
/// a time.
class client {
 public:
  /// Connects to `to` on `ex`, reads the greeting and says hello. Throws
  /// network_error (cannot connect, timed out, connection lost, malformed
  /// reply) or refused.
  static awaitable<std::unique_ptr<client>> open(executor ex, base::endpoint to, client_options options);

  const reply& greeting() const { return greeting_; }
  /// True if the EHLO reply lists `keyword` (upper case).
  bool offers(std::string_view keyword) const;

  /// One transaction: MAIL FROM:<from>, RCPT TO:<to>, DATA, the message
  /// read through `read` (which must outlive the call). `from` empty is the
  /// null sender. `size` is announced with SIZE= when offered. A rejected
  /// MAIL or RCPT is followed by RSET so the session can go on. Throws
  /// network_error when the connection is lost or the server stops
  /// speaking SMTP: then the outcome of this message is unknown unless the
  /// final dot was not yet sent (the caller keeps it).
  awaitable<delivery_result> send(const std::string& from, const std::string& to, std::uint64_t size,
                                  const message_reader& read);

  /// QUIT, best effort (errors ignored), waiting at most 5 s for the reply.
  awaitable<void> quit();

  explicit client(std::unique_ptr<connection> c, client_options options)
      : connection_(std::move(c)), options_(std::move(options)) {}

 private:
  awaitable<reply> read_reply();
  awaitable<void> hello();
  void command(const std::string& line);  // queues a command line
  /// RSET, its reply read (and ignored): after a refused MAIL, RCPT or DATA.
  awaitable<void> reset();

  std::unique_ptr<connection> connection_;
  client_options options_;
  reply greeting_;
  std::vector<std::pair<std::string, std::string>> extensions_;
};

}  // namespace sdps::smtp
