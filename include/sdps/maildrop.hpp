#pragma once
/// @file
/// The mail services modules offer each other: a spool (one punt's queue
/// for a customer host), and a maildrop (one session's numbered snapshot).
///
/// A spool instance (local directory or remote back end) provides `spool`
/// and `maildrop_source`; merge provides `maildrop_source` over several
/// spools. At each login the core opens the session's maildrop from the
/// chain's maildrop source (the last instance in the chain that provides
/// one) and hands it to every module as session::maildrop(), so the
/// commands and extensions modules serve one punt or many alike.

#include <sdps/asio.hpp>
#include <sdps/response.hpp>
#include <sdps/session.hpp>

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace sdps {

/// A punt could not be reached or read. Commands answer -ERR [SYS/TEMP].
class spool_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// What LIST, STAT and UIDL need about one message, known at snapshot time
/// without reading the message.
struct message_info {
  std::string uidl;           ///< unique-id: printable, no spaces, at most 70 octets
  std::uint64_t size = 0;     ///< octets RETR sends before dot-stuffing, Return-Path line included
  std::int64_t arrival = 0;   ///< microseconds since the epoch: the maildrop's order
  std::string punt;           ///< the punt holding it
};

/// What *ENV reports about one message (read at request time).
struct envelope {
  bool read = false;  ///< retrieved by RETR in an earlier or this session
  std::string note;   ///< *ENV line 2: where the message is held (the punt)
  std::string from;   ///< envelope sender without angle brackets; empty for a null sender
  std::string to;     ///< envelope recipient (one per stored copy)
};

/// Outcome of removing messages at UPDATE.
struct removal_result {
  std::size_t removed = 0;  ///< gone now (including ones SMTP had already removed)
  std::size_t failed = 0;   ///< still in the spool
};

/// What retrieve() sends, and whether it marks the message read.
struct retrieval {
  /// TOP: the header and this many body lines; nullopt: the whole message (RETR).
  std::optional<std::uint64_t> body_lines;
  /// Sets the message's persistent read flag in the same step (RETR does;
  /// TOP does not).
  bool mark_read = false;

  static retrieval whole_message() { return {std::nullopt, true}; }
  static retrieval top(std::uint64_t lines) { return {lines, false}; }
};

/// One session's maildrop: the messages present at login, numbered from 1
/// in arrival order (index = number - 1). The session's marks (deleted,
/// LAST) are not here but in session::marks(). All calls on the session's
/// event loop.
class maildrop {
 public:
  virtual ~maildrop() = default;

  /// Messages in the snapshot, deleted ones included.
  virtual std::size_t count() const = 0;
  virtual const message_info& info(std::size_t index) const = 0;

  /// The message as RETR sends it (before dot-stuffing): a
  /// `Return-Path: <from>` line, then the stored message with CRLF line
  /// ends; for `how.body_lines`, only the header and that many body lines
  /// (TOP). With `how.mark_read` the persistent read flag is set once the
  /// message could be opened (a client that drops the connection half way
  /// has still been sent part of it). If SMTP or expiry removed the
  /// message since the snapshot, a dummy notice saying what became of it,
  /// with a Message-ID and Date that stay the same within the session.
  /// Throws spool_error when the punt is unreachable.
  virtual awaitable<std::unique_ptr<body_source>> retrieve(std::size_t index, retrieval how) = 0;
  /// The envelope and read flag, for *ENV. For a message SMTP removed
  /// before its envelope was read, what is still known (the recipient,
  /// an empty sender). Throws spool_error when the punt is unreachable.
  virtual awaitable<sdps::envelope> envelope(std::size_t index) = 0;
  /// UPDATE: removes the messages at `indexes` (ascending) from the
  /// spool(s). Throws spool_error when nothing could be attempted.
  virtual awaitable<removal_result> remove(std::vector<std::size_t> indexes) = 0;
  /// Punts that could not be read at login and are missing from the
  /// snapshot (empty when complete).
  virtual std::vector<std::string> missing() const { return {}; }
};

/// Messages not marked deleted, and their total size (STAT, the login reply).
inline std::pair<std::size_t, std::uint64_t> live_totals(const maildrop& drop, const marks& m) {
  std::size_t n = 0;
  std::uint64_t octets = 0;
  for (std::size_t i = 0; i < drop.count(); ++i)
    if (!m.deleted(i)) {
      ++n;
      octets += drop.info(i).size;
    }
  return {n, octets};
}

/// Opens a login's maildrop: provided by each spool instance and by merge.
/// The core opens the session's maildrop from the chain's last provider,
/// in the `open` stage of a login; merge opens its spools' in turn.
class maildrop_source {
 public:
  static constexpr const char* service_id = "sdps.maildrop_source/2";
  virtual ~maildrop_source() = default;
  /// Takes a snapshot of `who`'s maildrop, for session `s` (whose login is
  /// still in progress: s.login() is null). A spool needs the lock its
  /// lock() took for this session. Throws spool_error if nothing at all
  /// could be read.
  virtual awaitable<std::shared_ptr<maildrop>> open(session& s, const identity& who) = 0;
};

/// Result of spool::lock().
enum class lock_status {
  acquired,     ///< held until unlock() or the end of the session
  in_use,       ///< another session holds a conflicting lock
  unavailable,  ///< the punt could not be reached
};

/// What one health probe of a punt found (punt_probe::check()).
struct punt_health {
  /// The punt can serve a login now: its spool folder is readable, or
  /// its back end answered and proved it holds the front-end secret.
  bool up = false;
  /// Why it is down, in a few words for the log and `sdps status` (never
  /// a secret); may note something while up ("created at the first
  /// login").
  std::string detail;
};

/// One punt's health probe, made by spool::make_probe() for one executor.
/// The core calls check() every `probe_interval` (and `sdpsd --check`
/// once), one call at a time, never on a session's behalf: what a probe
/// keeps between calls (a connection to a back end) is its own.
class punt_probe {
 public:
  virtual ~punt_probe() = default;
  /// Looks at the punt once, on the executor the probe was made for.
  /// Never throws: a failure is `up == false` with the reason. Bounded by
  /// the spool's own time limits; the core also counts a probe that has
  /// not answered when the next one is due as down.
  virtual awaitable<punt_health> check() = 0;
  /// The core stops probing (shutdown): end what check() is waiting on
  /// (close a connection), so that it returns soon. On the probe's
  /// executor. Idempotent.
  virtual void stop() {}
};

/// Counts the sessions holding something of a spool (a lock, a link),
/// for spool::sessions(): a spool keeps one, and each session keeps a
/// hold() while it holds the punt. Thread-safe.
class session_count {
 public:
  /// One session's part of the count, while it lives (move-only).
  class hold {
   public:
    hold() = default;
    explicit hold(session_count& c) : count_(&c) { count_->n_.fetch_add(1, std::memory_order_relaxed); }
    hold(hold&& other) noexcept : count_(std::exchange(other.count_, nullptr)) {}
    hold& operator=(hold&& other) noexcept {
      if (this != &other) {
        reset();
        count_ = std::exchange(other.count_, nullptr);
      }
      return *this;
    }
    ~hold() { reset(); }
    /// Counts no more (idempotent).
    void reset() {
      if (count_) count_->n_.fetch_sub(1, std::memory_order_relaxed);
      count_ = nullptr;
    }
    explicit operator bool() const { return count_ != nullptr; }

   private:
    session_count* count_ = nullptr;
  };
  std::size_t value() const { return n_.load(std::memory_order_relaxed); }

 private:
  std::atomic<std::size_t> n_{0};
};

/// One punt's queue, as a service for lock and merge.
class spool {
 public:
  static constexpr const char* service_id = "sdps.spool/2";
  virtual ~spool() = default;
  /// The punt's name ("finchley").
  virtual const std::string& punt() const = 0;
  /// A lock() of this punt for `who` follows in this login (the lock
  /// module calls it on every punt first, in locking order): start what
  /// can be done ahead, up to the lock itself (remote_spool starts the
  /// back end's login), so that the punts work side by side. When a punt
  /// says in_use, the lock module releases every punt (unlock(), which
  /// must also end a lock prepared and not taken) and, with more than one
  /// punt, locks them again one after another in order, without
  /// prepare(): two sessions that took a punt each ahead cannot hold each
  /// other up. Must not block. The default does nothing.
  virtual void prepare(session& s, const identity& who) { (void)s, (void)who; }
  /// Locks `who` on this punt: a host login excludes every other session
  /// of the host, a user login excludes the same user and host logins.
  /// The lock lives on the punt (it holds across processes and front ends,
  /// and is released if the holder dies) and is kept in the session until
  /// unlock() or the session's end.
  virtual awaitable<lock_status> lock(session& s, const identity& who) = 0;
  /// Releases what prepare(), lock() and open() hold for the session.
  /// Idempotent; called for punts that were prepared and never locked too.
  virtual void unlock(session& s) = 0;

  /// A health probe of this punt whose check() runs on `ex` (the core
  /// makes one per punt at start-up for its background probes, and one
  /// for `sdpsd --check`). Main thread or `ex`'s. Null: this spool cannot
  /// be probed (then `sdps status` shows the punt as not probed and
  /// `sdps_punt_up` has no series for it); the default.
  virtual std::unique_ptr<punt_probe> make_probe(executor ex) {
    (void)ex;
    return nullptr;
  }
  /// The sessions holding a lock (a back end's link) on this punt now,
  /// on every event loop (`sdps status`). Any thread; the default is 0.
  virtual std::size_t sessions() const { return 0; }
};

}  // namespace sdps
