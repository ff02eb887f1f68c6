#pragma once
/// @file
/// remote_spool: one punt served by a back end on another machine (or
/// process), as a module instance of a front end. Like local_spool it
/// answers no command; it offers `sdps::spool` (locks, taken by logging in
/// on the back end) and `sdps::maildrop_source` (the back end's snapshot),
/// so lock, merge, commands and extensions work unchanged over it.
/// Settings: README.md beside this file. Protocol: docs/backend-protocol.md.

#include "remote_link.hpp"
#include "backend_proto/protocol.hpp"

#include <sdps/maildrop.hpp>
#include <sdps/module.hpp>

#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace sdps::remote {

/// One session's snapshot of one punt, as the back end listed it at login.
/// LIST, STAT and UIDL need nothing more; RETR, TOP and *ENV go to the back
/// end over the session's link, and the removals at QUIT too. All calls on
/// the session's event loop.
class remote_maildrop final : public sdps::maildrop {
 public:
  remote_maildrop(std::string punt, std::shared_ptr<backend_link> link, std::vector<listing_entry> listing,
                  logger& log);

  std::size_t count() const override { return infos_.size(); }
  const message_info& info(std::size_t index) const override { return infos_.at(index); }
  /// `RETR n` (which also sets the read flag on the back end) or `TOP n k`;
  /// the body streams from the back end as the core reads it. Throws
  /// spool_error when the back end is unreachable or answers -ERR.
  awaitable<std::unique_ptr<body_source>> retrieve(std::size_t index,
                                                   std::optional<std::uint64_t> body_lines) override;
  /// Nothing after a RETR of the same message (the back end marked it);
  /// otherwise `XREAD n`.
  awaitable<void> mark_read(std::size_t index) override;
  /// `*ENV n` on the back end.
  awaitable<sdps::envelope> envelope(std::size_t index) override;
  /// `DELE n` for every message marked deleted, then `QUIT`, in one write;
  /// the back end removes them in its UPDATE. Its QUIT reply decides the
  /// counts. Throws spool_error if the back end cannot be reached (then it
  /// removed nothing: it never saw QUIT).
  awaitable<removal_result> remove_deleted() override;

 private:
  /// Sends one command on `link` (whose turn the caller holds, as body
  /// lines may follow) and returns its +OK status; throws spool_error on -ERR.
  awaitable<status> ask(backend_link& link, std::string command);

  std::string punt_;
  std::shared_ptr<backend_link> link_;
  std::vector<message_info> infos_;
  std::vector<std::size_t> numbers_;  // the back end's message numbers
  std::vector<bool> retrieved_;       // RETR sent: the back end set the read flag
  logger& log_;
};

/// The module instance: one per punt in the front end's chain.
class remote_spool final : public sdps::module, public sdps::spool, public sdps::maildrop_source {
 public:
  event_set events() const override { return {event::quit}; }
  /// Reads `punt`, `backend`, `secret`, `connect_timeout`, `read_timeout`
  /// and `keepalive`; loads the secret; provides both services. Throws
  /// config_error.
  explicit remote_spool(module_config& config);

  /// quit: closes the links (their UPDATE, if any, is done).
  awaitable<verdict> on_event(session& s, event e) override;
  /// Finds the other remote_spool instances (to connect to every back end
  /// at once at login).
  void start(const registry& services) override;

  // sdps::spool
  const std::string& punt() const override { return options_.punt; }
  /// Connects, authenticates (XAUTH) and logs in as session.login() on the
  /// back end, which takes the lock there, snapshots the maildrop and lists
  /// it (XLIST) — all in a fixed number of round trips. `in_use` when the
  /// back end answers PASS with [IN-USE] for `in_use_wait` (retried: a
  /// session that just quit may not have released it yet); `unavailable`
  /// when it cannot be
  /// reached in time, refuses the secret, or fails otherwise (logged).
  awaitable<lock_status> lock(session& s) override;
  /// Closes the connection: the back end ends that session without UPDATE
  /// and releases the lock.
  void unlock(session& s) override;

  // sdps::maildrop_source
  /// The maildrop listed at lock(). Throws spool_error if lock() did not
  /// succeed for this session.
  awaitable<std::shared_ptr<sdps::maildrop>> open(session& s) override;
  std::shared_ptr<sdps::maildrop> current(session& s) override;

 private:
  /// A connection opened ahead of lock(): connected, greeting read.
  struct pending_link;
  struct session_state {
    std::shared_ptr<backend_link> link;
    std::vector<listing_entry> listing;
    std::shared_ptr<remote_maildrop> drop;
    std::shared_ptr<pending_link> pending;
    ~session_state();
  };

  /// Starts connecting to this back end in the background (the TCP
  /// connection and the greeting), for the lock() that will follow in this
  /// PASS; replaces one left from an earlier PASS.
  void prepare(session& s);
  static awaitable<void> open_ahead(std::shared_ptr<pending_link> pending);
  /// Ends a connection opened ahead that no lock() used.
  static void end_pending(pending_link& pending);

  /// Every remote_spool in the chain in the lock module's order (punt, then
  /// instance name), this one included. The first of them, when locked,
  /// prepares the others: login latency is then one connection's, not the
  /// sum of all, while the locks are still taken one after another.
  std::vector<remote_spool*> peers_;

  link_options options_;
  std::chrono::milliseconds in_use_wait_{250};
  std::shared_ptr<const backend_secret> secret_;
  logger& log_;
  sdps::metrics* metrics_;  // back-end latency and link errors
};

}  // namespace sdps::remote
