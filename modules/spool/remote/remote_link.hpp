#pragma once
/// @file
/// One TCP connection (a link) from a front end to one back end:
/// connecting, line reads and relayed bodies with time limits, the turn
/// that keeps the commands of one connection from interleaving, and what
/// the link's pool needs to know of it (trusted, logged in, idle).
/// link_pool.* keeps links between sessions; remote_spool.cpp speaks the
/// protocol over them (docs/backend-protocol.md).

#include "backend_proto/protocol.hpp"
#include "base/watchdog.hpp"
#include "base/endpoint.hpp"

#include <sdps/asio.hpp>
#include <sdps/log.hpp>
#include <sdps/maildrop.hpp>
#include <sdps/settings.hpp>

#include <boost/asio/ssl.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace sdps::remote {

// The protocol's shared parts (backend_secret, body_scanner, parse_listing
// ...) are this module's vocabulary: used unqualified in modules/spool/remote.
using namespace sdps::backend_proto;

/// Where and how to reach one back end (a remote_spool instance's settings).
struct link_options {
  std::string punt;     ///< the punt the back end must serve
  base::endpoint backend;  ///< host (a name or an address) and port
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

/// The most a back end's short multi-line replies (CAPA, *ENV) may hold
/// (backend_link::read_block's limit).
inline constexpr std::size_t short_reply_limit = 64 * 1024;

/// A status line from the back end.
struct status {
  bool positive = false;
  std::string text;  ///< after "+OK " / "-ERR "
};

/// One connection to one back end. Owned (through shared_ptr) by its pool
/// while idle, and while lent by the session's remote_spool slot, the
/// session's remote maildrop and any body being streamed. All calls on the
/// event loop it was made on (one loop per pool).
///
/// Every socket operation is bounded: connect by connect_timeout, every
/// read and write by read_timeout. One watchdog per link (lib/base, as
/// everywhere in sdps; Boost 1.74 has no per-operation cancellation): an
/// operation only notes its deadline there, and the watchdog closes the
/// socket when an operation is late (which completes it with an error) and
/// starts the keepalive's NOOP — so a read costs no timer system call of
/// its own. Any failure (refused,
/// reset, timed out, malformed reply) closes the link for good and throws
/// spool_error naming the punt; later calls throw at once.
///
/// Commands take turns: a caller does `co_await acquire()` and keeps a
/// `turn` for the exchange; the keepalive, a reset and end() take turns
/// with the session's calls, which the core runs one at a time.
/// A multi-line body that was not read to its end (see begin_body) is
/// skipped by the next acquire(), so replies never get out of step.
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
  /// connect(), then reads the back end's greeting (its challenge) into
  /// greeting(). Throws spool_error.
  awaitable<void> open();
  /// The greeting open() read.
  const status& greeting() const { return greeting_; }

  /// What the back end knows of this link: XAUTH done (the back end
  /// proved itself too), and whether its CAPA listed XRESET (the link can
  /// outlive a login: backend_proto::reset_capability).
  bool trusted() const { return trusted_; }
  bool resettable() const { return resettable_; }
  void set_trusted(bool resettable) {
    trusted_ = true;
    resettable_ = resettable;
  }
  /// A login (USER, PASS) is in force on the back end: its locks are held.
  bool logged_in() const { return logged_in_; }
  void set_logged_in(bool in) { logged_in_ = in; }
  /// Status lines read on this link so far (to tell whether a command got
  /// any answer before the link failed).
  std::uint64_t replies() const { return replies_; }
  /// The last failure was a time limit passing (not a closed or reset
  /// connection).
  bool timed_out() const { return timed_out_; }
  /// A multi-line body was begun and not read to its end.
  bool body_pending() const { return body_pending_; }

  /// Each session that borrows the link gets a new lease; what it hands
  /// out (its maildrop) checks it, so nothing of an earlier session's can
  /// touch the link once it went back to the pool.
  std::uint64_t lease() const { return lease_; }
  /// A lease starts without keepalive (the session's login starts it), and
  /// one that ends stops it: no NOOP goes after the session's reset.
  std::uint64_t new_lease() {
    parked_ = false;
    keepalive_on_ = false;
    return ++lease_;
  }

  /// For a link idle in its pool: stops the keepalive and leaves no
  /// deadline and no wait pending (an idle link keeps no event loop
  /// running). The next operation arms the watchdog again; one that ends
  /// while the link is parked drops the watchdog's wait again.
  void park();
  /// For a link coming out of its pool: false if it is not fit to carry a
  /// login (closed, something unread, or the back end closed or reset its
  /// side meanwhile: a back end that restarted). Never blocks: one
  /// non-blocking peek at the socket. Over TLS only a closed socket is
  /// seen (TLS may have records of its own to read).
  bool idle_check();

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
  /// A whole multi-line body (after its status line), as it came: still
  /// stuffed, without the terminating line (backend_proto::for_each_line
  /// reads its lines). For listings, CAPA and *ENV: parsed in place, no
  /// line copied. The view is good until the next call on the link. Throws
  /// spool_error past `limit` octets.
  awaitable<std::string_view> read_block(std::size_t limit);

  /// Marks the start of a multi-line body that read_body() will stream
  /// after the turn is given back. Returns its id.
  std::uint64_t begin_body();
  /// Streams body `id` as the back end sent it, still dot-stuffed, without
  /// its terminating line: fills a prefix of `out`, 0 at its end. With
  /// nothing buffered, reads straight into `out`: the body is not copied
  /// on its way through. Throws spool_error if the link failed or moved on.
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
  void disarm() { dog_.clear(operation_); }
  /// The keepalive deadline came: a NOOP if the link is idle, else later.
  void on_keepalive(clock::time_point now);
  static awaitable<void> keepalive_noop(std::shared_ptr<backend_link> self, std::uint64_t lease);
  static awaitable<void> ending(std::shared_ptr<backend_link> self, bool quit);
  bool ending_ = false;
  /// Reads more octets into the buffer (bounded); throws on EOF or error.
  awaitable<void> fill();
  /// One bounded read into `into`; throws on EOF or error.
  awaitable<std::size_t> read_some(asio::mutable_buffer into);
  /// Puts octets read into a body's buffer back in front of the link's.
  void unread(const char* data, std::size_t size);
  awaitable<void> drain();
  awaitable<void> noop(std::uint64_t lease);
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
  /// The link's deadlines: the operation under way, the next keepalive.
  base::watchdog dog_;
  base::watchdog::id operation_ = 0, keepalive_ = 0, resolving_ = 0;
  /// The resolver of a back end given by name, while it resolves.
  std::shared_ptr<asio::ip::tcp::resolver> resolver_;
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
  body_scanner body_;

  status greeting_;
  bool trusted_ = false;
  bool resettable_ = false;
  bool logged_in_ = false;
  std::uint64_t replies_ = 0;
  std::uint64_t lease_ = 0;
  bool parked_ = false;  // idle in its pool, or a probe's between checks

  clock::time_point last_used_;
};

}  // namespace sdps::remote
