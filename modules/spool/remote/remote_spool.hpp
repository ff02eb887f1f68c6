#pragma once
/// @file
/// remote_spool: one punt served by a back end on another machine (or
/// process), as a module instance of a front end. Like local_spool it
/// answers no command; it offers `sdps::spool` (locks, taken by logging in
/// on the back end) and `sdps::maildrop_source` (the back end's snapshot),
/// so lock, merge, commands and extensions work unchanged over it.
/// Settings: README.md beside this file. Protocol: docs/backend-protocol.md.

#include "link_pool.hpp"
#include "remote_link.hpp"
#include "backend_proto/protocol.hpp"

#include <sdps/maildrop.hpp>
#include <sdps/module.hpp>

#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace sdps::remote {

/// One session's snapshot of one punt, as the back end listed it at login.
/// LIST, STAT and UIDL need nothing more; RETR, TOP and *ENV go to the back
/// end over the session's link, and the removals at QUIT too. It works
/// through the link only while the session holds it (the lease it was
/// made with). All calls on the session's event loop.
class remote_maildrop final : public sdps::maildrop {
 public:
  remote_maildrop(std::string punt, std::shared_ptr<backend_link> link, std::vector<listing_entry> listing,
                  logger& log);

  std::size_t count() const override { return infos_.size(); }
  const message_info& info(std::size_t index) const override { return infos_.at(index); }
  /// `RETR n` (which also sets the read flag on the back end) or `TOP n k`
  /// (after `XREAD n` in the same write, if it is to mark the message
  /// read); the body streams from the back end as the core reads it, as
  /// the back end sent it (body_source::stuffed()): the core sends it on
  /// unchanged. Throws spool_error when the back end is unreachable or
  /// answers -ERR.
  awaitable<std::unique_ptr<body_source>> retrieve(std::size_t index, retrieval how) override;
  /// `*ENV n` on the back end, and in the same write `*ENV` for the next
  /// few messages of this punt not asked yet (envelope_window): clients
  /// ask for every message's envelope in turn, and then most of them cost
  /// no round trip. What the back end answered is kept for the session
  /// (nothing else changes an envelope while the session holds the lock);
  /// the read flag is the back end's at the time, or set if this session
  /// has marked the message read since.
  awaitable<sdps::envelope> envelope(std::size_t index) override;
  /// `DELE n` for each message, then `XUPDATE KEEP` (`XUPDATE` to a back
  /// end without XRESET), in one write; the back end removes them in its
  /// UPDATE and ends the login (with KEEP the link stays for the pool). Its
  /// reply decides the counts. Throws spool_error if the back end cannot be
  /// reached (then it removed nothing: it never saw XUPDATE).
  awaitable<removal_result> remove(std::vector<std::size_t> indexes) override;

 private:
  /// Throws spool_error unless the session still holds the link.
  void check_lease() const;

  std::string punt_;
  std::shared_ptr<backend_link> link_;
  std::uint64_t lease_;
  std::vector<message_info> infos_;
  std::vector<std::size_t> numbers_;  // the back end's message numbers
  std::vector<std::optional<sdps::envelope>> envelopes_;  // as *ENV answered
  std::vector<bool> marked_read_;  // read through this session
  logger& log_;
};

/// The module instance: one per punt in the front end's chain. Its links
/// to the back end are kept between sessions in one pool per event loop
/// (link_pool.hpp).
class remote_spool final : public sdps::module, public sdps::spool, public sdps::maildrop_source {
 public:
  event_set events() const override { return {event::quit}; }
  /// Reads `punt`, `backend`, `secret`, the time limits, the TLS and the
  /// pool's settings (README.md); loads the secret; provides both services;
  /// declares the back-end metric families and the process's role
  /// (frontend). Throws config_error.
  explicit remote_spool(module_config& config);

  /// quit (the client's QUIT has been answered by UPDATE, not yet sent):
  /// gives the links back and waits until each back end has ended its
  /// login, so the client finds its maildrop free when it reads +OK.
  awaitable<verdict> on_event(session& s, event e) override;
  /// As the configured user: whether it can read the secret file (read
  /// again at the next start).
  std::vector<std::string> check() const override;

  // sdps::spool
  const std::string& punt() const override { return options_.punt; }
  /// A lock() of this punt follows in this login: starts the whole login
  /// on the back end at once (a link from the pool, USER, PASS, XLIST, and
  /// [IN-USE] retried as lock() says), so that every punt's back end works
  /// on it at the same time and a login over N punts waits for the
  /// slowest, not the sum. lock() then takes what it came to. A login
  /// started here and not taken by lock() (the session refused, ended) is
  /// ended on the back end (XRESET) when it completes.
  void prepare(session& s, const identity& who) override;
  /// Borrows a link from this event loop's pool (waiting up to link_wait
  /// when every link is lent), authenticates it if it is new (XAUTH, CAPA),
  /// and logs in as `who` on the back end, which takes the lock there,
  /// snapshots the maildrop and lists it (XLIST) — all in one round trip.
  /// An idle link the back end closed meanwhile (it restarted) is replaced
  /// once, unseen. `in_use` when the back end answers PASS with [IN-USE]
  /// for `in_use_wait` (retried: a session that just quit through another
  /// front end may not have released it yet); `unavailable` when it cannot
  /// be reached in time, refuses the secret, no link is free, or it fails
  /// otherwise (logged).
  awaitable<lock_status> lock(session& s, const identity& who) override;
  /// Gives the link back: the back end ends the login (XRESET, no UPDATE)
  /// and releases the lock, and the link returns to the pool (or, with a
  /// back end that cannot reset links, is ended with QUIT).
  void unlock(session& s) override;
  /// A backend_probe (backend_probe.hpp): connect and XAUTH, then CAPA
  /// on the link it keeps. The probe's link is its own, never one of the
  /// pools': it runs on the core's executor, needs no login, and must
  /// tell a back end that is down from a pool that is full.
  std::unique_ptr<punt_probe> make_probe(executor ex) override;
  /// Sessions logged in on the back end through this instance, on every
  /// event loop (a lent link each; idle pooled links do not count).
  std::size_t sessions() const override { return holders_.value(); }

  // sdps::maildrop_source
  /// The maildrop listed at lock(). Throws spool_error if lock() did not
  /// succeed for this session.
  awaitable<std::shared_ptr<sdps::maildrop>> open(session& s, const identity& who) override;

 private:
  /// What one attempt to log in on the back end came to.
  struct attempt_result {
    lock_status status = lock_status::unavailable;
    std::shared_ptr<backend_link> link;  // lent to the session, when acquired
    std::vector<listing_entry> listing;
  };
  /// A login prepare() started: lock() waits for it, or the session
  /// abandons it and the link goes back to the pool when it completes.
  struct login_ahead {
    explicit login_ahead(const executor& ex) : wake(ex) { wake.expires_at(std::chrono::steady_clock::time_point::max()); }
    attempt_result result;
    bool done = false;
    bool abandoned = false;   ///< the login stops at its next step and gives its link back
    asio::steady_timer wake;  ///< cancelled when done
    /// Abandoned with a login made: its reset, which a later login of the
    /// session on this punt (or its QUIT) waits for.
    std::shared_ptr<link_pool::returning> returning;
  };
  struct session_state {
    std::shared_ptr<link_pool> pool;
    /// The login prepare() started, until lock() takes it.
    std::shared_ptr<login_ahead> ahead;
    /// Logins started ahead and abandoned, until they have ended on the
    /// back end (settle()).
    std::vector<std::shared_ptr<login_ahead>> abandoned;
    std::shared_ptr<backend_link> link;
    std::vector<listing_entry> listing;
    /// The resets of links this session gave back (release()); quit and a
    /// login in order wait for them (settle()).
    std::vector<std::shared_ptr<link_pool::returning>> returning;
    session_count::hold held;  // while `link` is lent to this session's login
    ~session_state() { release(*this); }
  };

  /// This event loop's pool (kept in the session's state).
  link_pool& pool(session& s, session_state& state);
  /// Logs in as `who` on a link of `links`: the lock, the listing. A kept
  /// link found dead at once is replaced (once); [IN-USE] is retried for
  /// in_use_wait. Owns its arguments: it may run on after its session
  /// (prepare()); once `ahead` is abandoned it stops at its next step.
  awaitable<attempt_result> attempt(std::shared_ptr<link_pool> links, std::string who, std::uint64_t session,
                                    std::shared_ptr<login_ahead> ahead);
  /// Everything this session holds on the back end goes back: the login
  /// prepare() started (abandoned: it stops, or is reset as it completes)
  /// and the link lent to it (reset in the background). unlock(), a new
  /// login's start, and the session's end.
  static void release(session_state& state);
  /// Waits until every login this session made on this punt's back end
  /// has ended there (the resets given back, logins abandoned ahead), so
  /// that what follows finds the maildrop free of this session.
  static awaitable<void> settle(session_state& state);

  link_options options_;
  pool_settings pool_settings_;
  std::chrono::milliseconds in_use_wait_{250};
  std::shared_ptr<const backend_secret> secret_;
  std::filesystem::path secret_file_;
  logger& log_;
  sdps::metrics* metrics_;  // back-end latency and link errors
  std::shared_ptr<pool_stats> stats_;
  std::uint64_t instance_id_;  // this instance's pools, in each loop's link_pools
  session_count holders_;      // sessions holding a link (sessions())
  slot_key<session_state> state_;
};

}  // namespace sdps::remote
