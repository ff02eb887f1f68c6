#pragma once
// The lock module: takes the session's lock on every punt at PASS.

#include <sdps/maildrop.hpp>
#include <sdps/module.hpp>

#include <string>
#include <vector>

namespace sdps::lock {

/// The `lock` module. On PASS (after auth has set session.login()), takes
/// spool::lock() on every spool it covers, one after another in a fixed
/// order (punt name, then instance name), so that two sessions can never
/// hold one punt each while waiting for the other's. Then it passes PASS on.
///
/// - a punt says in_use: the locks taken are released and PASS is
///   answered `-ERR [IN-USE] maildrop already locked`;
/// - a punt is unavailable (or its lock() throws spool_error): it is
///   skipped and logged; its mail is missing from this session;
/// - locks are released by a later PASS (which starts afresh), when the
///   PASS that took them fails later in the chain (`command_failed`), at
///   quit (before the QUIT reply) and at disconnect.
///
/// Runs on the session's event loop; its only per-session state is the list of locks
/// held, in a session slot.
class lock_module final : public sdps::module {
 public:
  /// Reads `punts:` (optional). Throws config_error.
  explicit lock_module(module_config& config);

  /// PASS in AUTHORIZATION.
  std::vector<command_spec> commands() const override;
  event_set events() const override { return {event::command_failed, event::quit, event::disconnect}; }
  /// Finds the spools; throws config_error for an unknown or duplicate punt.
  void start(const registry& services) override;
  awaitable<verdict> on_command(session& s, const command& cmd) override;
  /// command_failed, quit, disconnect: releases every lock the session holds.
  awaitable<verdict> on_event(session& s, event e) override;

  /// The spools in the order they are locked (after start()).
  const std::vector<spool*>& order() const { return order_; }

 private:
  struct held;
  awaitable<verdict> take(session& s);
  void release(session& s, held& h, const char* why);

  logger& log_;
  std::string instance_;
  std::vector<std::string> punts_;
  std::vector<spool*> order_;
};

}  // namespace sdps::lock
