#pragma once
// The lock module: the lock stage of every login.

#include <sdps/maildrop.hpp>
#include <sdps/module.hpp>

#include <string>
#include <vector>

namespace sdps::lock {

/// The `lock` module: the `lock` stage of a login (sdps/login.hpp), after
/// the login was verified and authorized. It first tells every spool it
/// covers that a lock follows (spool::prepare(): a remote spool starts its
/// back end's login there, so the punts are locked side by side), then
/// takes spool::lock() on each in a fixed order (punt name, then instance
/// name).
///
/// - a punt says in_use: every lock is released and, with more than one
///   punt, they are taken again one after another in that order, with
///   nothing prepared: two sessions that each took a punt ahead cannot
///   hold each other up, since in order one of them gets every lock. A
///   punt in use then refuses the login with `-ERR [IN-USE] maildrop
///   already locked`, the locks taken released;
/// - a punt is unavailable (or its lock() throws spool_error): it is
///   skipped and logged; its mail is missing from this session;
/// - locks (and locks prepared but not taken) are released when a later
///   stage refuses the login (undo_login), at quit (before the QUIT
///   reply), when the login ends without the session (logout) and at
///   disconnect.
///
/// Runs on the session's event loop; its only per-session state is the
/// list of locks held, in a session slot.
class lock_module final : public sdps::module {
 public:
  /// Reads `punts:` (optional). Throws config_error.
  explicit lock_module(module_config& config);

  stage_set login_stages() const override { return {login_stage::lock}; }
  event_set events() const override { return {event::quit, event::logout, event::disconnect}; }
  /// Finds the spools; throws config_error for an unknown or duplicate punt.
  void start(const registry& services) override;
  /// Takes the locks.
  awaitable<login_verdict> on_login(session& s, login_stage stage, login_attempt& attempt) override;
  /// A later stage refused the login: releases the locks taken for it.
  void undo_login(session& s, login_stage stage) override;
  /// quit, logout, disconnect: releases every lock the session holds.
  awaitable<verdict> on_event(session& s, event e) override;

  /// The spools in the order they are locked (after start()).
  const std::vector<spool*>& order() const { return order_; }

 private:
  struct held {
    std::vector<spool*> spools;  // in locking order
    bool started = false;        // a login has prepared the punts
  };
  void release(session& s, held& h, const char* why);
  /// lock() on every punt in order, keeping those acquired in `h`; stops
  /// at the first punt in use and returns it (null: none was).
  awaitable<spool*> lock_each(session& s, held& h, const identity& login, const std::string& who);

  logger& log_;
  std::string instance_;
  std::vector<std::string> punts_;
  std::vector<spool*> order_;
  slot_key<held> held_;
};

}  // namespace sdps::lock
