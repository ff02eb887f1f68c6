#pragma once
/// @file
/// One front-end session's TCP connection to one back end: connecting,
/// line and body reads with time limits, and the turn that keeps the
/// commands of one connection from interleaving. remote_spool.cpp speaks
/// the protocol over it (docs/backend-protocol.md).

#include "backend_proto/protocol.hpp"

#include <sdps/asio.hpp>
#include <sdps/log.hpp>
#include <sdps/maildrop.hpp>
#include <sdps/settings.hpp>

#include <boost/asio/ssl.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace sdps::remote {

// The protocol's shared parts (backend_secret, unstuffer, parse_listing
// ...) are this module's vocabulary: used unqualified in modules/remote.
using namespace sdps::backend_proto;

/// Where and how to reach one back end (a remote_spool instance's settings).
struct link_options {
  std::string punt;     ///< the punt the back end must serve
  address backend;      ///< host and port
  std::string display;  ///< "127.0.0.1:1111", for messages
  std::chrono::milliseconds connect_timeout{std::chrono::seconds(5)};
  std::chrono::milliseconds read_timeout{std::chrono::seconds(30)};
  std::chrono::milliseconds keepalive{std::chrono::minutes(5)};
  /// `tls: true`: the client context (TLS 1.2 or later, the `ca:` file's
  /// certificates as the only trust anchors, the peer verified). Null: TCP.
  std::shared_ptr<asio::ssl::context> tls;
  /// The DNS name or IP address the back end's certificate must carry
  /// (`server_name:`, by default the host of `backend`).
  std::string server_name;
};

/// The client context for `tls: true`: TLS 1.2 and 1.3, peer verification
/// against the certificates in `ca_file` only. Throws config_error naming
/// the file when it holds no usable certificate.
std::shared_ptr<asio::ssl::context> make_client_context(const std::string& ca_file);

/// A status line from the back end.
struct status {
  bool positive = false;
  std::string text;  ///< after "+OK " / "-ERR "
};

/// One connection to one back end, owned (through shared_ptr) by the
/// session's remote_spool slot, the session's remote maildrop and any
/// body being streamed. All calls on the session's event loop.
///
/// Every socket operation is bounded: connect by connect_timeout, every
/// read and write by read_timeout. One timer per link is the watchdog
/// (Boost 1.74 has no per-operation cancellation): an operation only
/// records its deadline, and the watchdog, waking at the earliest deadline
/// or keepalive it knows of, closes the socket when an operation is late
/// (which completes it with an error) — so a read costs no timer system
/// call of its own. Any failure (refused,
/// reset, timed out, malformed reply) closes the link for good and throws
/// spool_error naming the punt; later calls throw at once.
///
/// Commands take turns: a caller does `co_await acquire()` and keeps a
/// `turn` for the exchange; the keepalive and end() take turns with the
/// session's calls, which the core runs one at a time.
/// A multi-line body that was not read to its end (see begin_body) is
/// drained by the next acquire(), so replies never get out of step.
class backend_link : public std::enable_shared_from_this<backend_link> {
 public:
  backend_link(executor ex, link_options options, std::shared_ptr<const backend_secret> secret, logger& log,
               std::string tag);
  ~backend_link();
  backend_link(const backend_link&) = delete;
  backend_link& operator=(const backend_link&) = delete;

  /// Connects (TCP, then the TLS handshake when options().tls is set, both
  /// within connect_timeout). Throws spool_error saying why, a certificate
  /// that fails verification included.
  awaitable<void> connect();

  /// Waits for the turn, then drains any unread body. Throws spool_error
  /// if the link is (or becomes) closed.
  awaitable<void> acquire();
  /// Gives the turn back (turn's destructor does it).
  void release();
  class turn {
   public:
    explicit turn(backend_link& link) : link_(link) {}
    ~turn() { link_.release(); }
    turn(const turn&) = delete;
    turn& operator=(const turn&) = delete;

   private:
    backend_link& link_;
  };

  /// Appends command lines (CRLF added to each) and writes them all in one
  /// go: pipelining is how login stays at a fixed number of round trips.
  awaitable<void> send(std::vector<std::string> lines);
  /// The next status line. Throws spool_error on anything that is not
  /// "+OK..." or "-ERR...".
  awaitable<status> read_status();
  /// The next line of a multi-line body, unstuffed; nullopt at its end.
  /// For listings and *ENV (lines are limited to 4096 octets).
  awaitable<std::optional<std::string>> read_body_line();

  /// Marks the start of a multi-line body that read_body() will stream
  /// after the turn is given back. Returns its id.
  std::uint64_t begin_body();
  /// Streams body `id`: fills a prefix of `out` with unstuffed octets,
  /// 0 at its end. Throws spool_error if the link failed or moved on.
  awaitable<std::size_t> read_body(std::uint64_t id, std::span<char> out);

  /// Closes the socket (idempotent). The back end then ends its session
  /// without UPDATE, which releases its locks.
  void close(const std::string& why = {});
  bool usable() const { return !closed_; }
  /// Ends the link politely, in the background: sends QUIT if `quit`
  /// (nothing was marked deleted on this connection, so the back end
  /// removes nothing), then waits, within read_timeout, for the back end
  /// to close first. The TCP TIME_WAIT state then stays on the back end
  /// instead of using up the front end's ephemeral ports (two connections
  /// per client session). Later calls on the link throw spool_error.
  void end(bool quit);

  /// Starts a NOOP every `keepalive` while the link is idle, so the back
  /// end's autologout timer never ends a session the client keeps alive.
  void start_keepalive();

  /// Closes the link and returns spool_error("punt P (back end A): what")
  /// to throw: for a reply that breaks the protocol.
  spool_error failure(const std::string& what);

  const link_options& options() const { return options_; }
  executor get_executor() const { return executor_; }
  const std::string& tag() const { return tag_; }

 private:
  [[noreturn]] void fail(const std::string& what) { throw failure(what); }
  using clock = std::chrono::steady_clock;
  /// An operation starts: it must end within `limit`.
  void arm(std::chrono::milliseconds limit);
  /// The operation ended.
  void disarm() { deadline_ = clock::time_point::max(); }
  /// Makes the watchdog wake by `when` (no system call if it already will).
  void watch(clock::time_point when);
  /// The watchdog woke: close a late operation, start a due keepalive,
  /// sleep until the next deadline.
  void on_watchdog();
  static awaitable<void> keepalive_noop(std::shared_ptr<backend_link> self);
  static awaitable<void> ending(std::shared_ptr<backend_link> self, bool quit);
  bool ending_ = false;
  /// Reads more octets into the buffer (bounded); throws on EOF or error.
  awaitable<void> fill();
  awaitable<std::string> read_line(std::size_t limit);
  awaitable<void> drain();
  awaitable<void> noop();
  /// The client side of the TLS handshake, within `limit`; verifies the
  /// certificate's chain (options().tls) and name (options().server_name).
  awaitable<void> handshake(std::chrono::milliseconds limit);
  std::size_t buffered() const { return end_ - begin_; }

  executor executor_;
  link_options options_;
  std::shared_ptr<const backend_secret> secret_;
  logger& log_;
  std::string tag_;

  asio::ip::tcp::socket socket_;
  /// TLS over socket_ once connect() has done the handshake (tls set).
  std::unique_ptr<asio::ssl::stream<asio::ip::tcp::socket&>> tls_;
  asio::steady_timer watchdog_;
  std::uint64_t watch_generation_ = 0;
  clock::time_point watch_at_ = clock::time_point::max();  // when the pending wait ends (max: none pending)
  clock::time_point deadline_ = clock::time_point::max();  // the current operation's (max: none)
  bool timed_out_ = false;
  bool keepalive_on_ = false;
  bool closed_ = false;
  std::string closed_why_;

  asio::steady_timer turn_wakeup_;
  bool held_ = false;

  /// Received octets not yet used are in_[begin_, end_). Small for the
  /// login exchange, grown for message bodies; never zero-filled.
  std::unique_ptr<char[]> in_;
  std::size_t capacity_ = 0;
  std::size_t begin_ = 0;
  std::size_t end_ = 0;
  void reserve(std::size_t capacity);
  std::string out_;

  std::uint64_t body_id_ = 0;
  bool body_pending_ = false;
  unstuffer body_;

  clock::time_point last_used_;
};

}  // namespace sdps::remote
