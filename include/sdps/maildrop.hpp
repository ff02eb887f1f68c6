#pragma once
/// @file
/// The mail services modules offer each other: a spool (one punt's queue
/// for a customer host), and a maildrop (one session's numbered snapshot).
///
/// A spool instance (local directory or remote back end) provides `spool`
/// and `maildrop_source`; merge provides `maildrop_source` over several
/// spools. The commands and extensions modules work on whatever
/// maildrop_source comes before them in the chain, so they serve one punt
/// or many alike.

#include <sdps/asio.hpp>
#include <sdps/response.hpp>
#include <sdps/session.hpp>

#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
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

/// One session's maildrop: the messages present at login, numbered from 1
/// in arrival order (index = number - 1), plus the session's marks.
///
/// The marks (deleted, LAST) are plain data here so that the commands,
/// extensions and merge modules share one view. All calls on the
/// session's event loop.
class maildrop {
 public:
  virtual ~maildrop() = default;

  /// Messages in the snapshot, deleted ones included.
  virtual std::size_t count() const = 0;
  virtual const message_info& info(std::size_t index) const = 0;

  /// The message as RETR sends it (before dot-stuffing): a
  /// `Return-Path: <from>` line, then the stored message with CRLF line
  /// ends. With `body_lines`, only the header and that many body lines
  /// (TOP). If SMTP removed the message since the snapshot, a dummy notice
  /// with a synthesised Message-ID. Throws spool_error when the punt is
  /// unreachable.
  virtual awaitable<std::unique_ptr<body_source>> retrieve(std::size_t index,
                                                           std::optional<std::uint64_t> body_lines) = 0;
  /// Sets the persistent read flag (RETR). Silently nothing if the message
  /// is gone. Throws spool_error when the punt is unreachable.
  virtual awaitable<void> mark_read(std::size_t index) = 0;
  /// The envelope and read flag, for *ENV. For a message SMTP removed
  /// before its envelope was read, what is still known (the recipient,
  /// an empty sender). Throws spool_error when the punt is unreachable.
  virtual awaitable<sdps::envelope> envelope(std::size_t index) = 0;
  /// UPDATE: removes every message marked deleted from the spool(s).
  virtual awaitable<removal_result> remove_deleted() = 0;
  /// Punts that could not be read at login and are missing from the
  /// snapshot (empty when complete).
  virtual std::vector<std::string> missing() const { return {}; }

  // -- session marks (RFC 1939 DELE/RSET, RFC 1460 LAST) --

  bool deleted(std::size_t index) const { return index < deleted_.size() && deleted_[index]; }
  void mark_deleted(std::size_t index) {
    if (deleted_.size() < count()) deleted_.resize(count(), false);
    deleted_.at(index) = true;
  }
  /// Records that RETR or DELE touched message `index` (for LAST).
  void touch(std::size_t index) { last_ = std::max(last_, index + 1); }
  /// Highest message number touched by RETR or DELE since PASS or RSET.
  std::size_t last() const { return last_; }
  /// RSET: unmark every deletion, LAST back to 0.
  void reset() {
    deleted_.assign(deleted_.size(), false);
    last_ = 0;
  }
  /// Messages not marked deleted, and their total size (STAT).
  std::pair<std::size_t, std::uint64_t> live_totals() const {
    std::size_t n = 0;
    std::uint64_t octets = 0;
    for (std::size_t i = 0; i < count(); ++i)
      if (!deleted(i)) {
        ++n;
        octets += info(i).size;
      }
    return {n, octets};
  }

 private:
  std::vector<bool> deleted_;
  std::size_t last_ = 0;
};

/// Where the commands module gets the session's maildrop.
class maildrop_source {
 public:
  static constexpr const char* service_id = "sdps.maildrop_source/1";
  virtual ~maildrop_source() = default;
  /// Takes the session's snapshot for session.login() (call once, at PASS,
  /// after locking); later calls return the same maildrop. Throws
  /// spool_error if nothing at all could be read.
  virtual awaitable<std::shared_ptr<maildrop>> open(session&) = 0;
  /// The maildrop opened for this session, or null before PASS.
  virtual std::shared_ptr<maildrop> current(session&) = 0;
};

/// Result of spool::lock().
enum class lock_status {
  acquired,     ///< held until unlock() or the end of the session
  in_use,       ///< another session holds a conflicting lock
  unavailable,  ///< the punt could not be reached
};

/// One punt's queue, as a service for lock and merge.
class spool {
 public:
  static constexpr const char* service_id = "sdps.spool/1";
  virtual ~spool() = default;
  /// The punt's name ("finchley").
  virtual const std::string& punt() const = 0;
  /// Locks session.login() on this punt: a host login excludes every other
  /// session of the host, a user login excludes the same user and host
  /// logins. The lock lives on the punt (it holds across processes and
  /// front ends, and is released if the holder dies) and is kept in the
  /// session until unlock() or the session's end.
  virtual awaitable<lock_status> lock(session&) = 0;
  virtual void unlock(session&) = 0;
};

}  // namespace sdps
