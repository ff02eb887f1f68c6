#pragma once
// The back end's gate: front ends prove they hold the shared secret
// (XAUTH), then act for a customer login (USER, PASS). Settings and the
// protocol: README.md beside this file and docs/backend-protocol.md.

#include "backend_proto/protocol.hpp"

#include <sdps/module.hpp>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

namespace sdps::backend {

/// The `backend_auth` module: first in a back end's chain, in place of
/// `auth`. Its greeting is a challenge, `+OK NONCE PUNT sdps back end`, so
/// a front end can answer at once. In AUTHORIZATION it sees every command
/// ("*"):
///
/// - `XAUTH` answers `+OK NONCE PUNT` (a fresh challenge, replacing the
///   greeting's);
///   `XAUTH FNONCE PROOF` checks the front end's proof over that challenge
///   and answers `+OK BACKEND-PROOF` (so the front end knows it reached a
///   back end holding the same secret), or, after `fail_delay`,
///   `-ERR [AUTH] ...` and closes the connection. A challenge is good for
///   one answer. A second XAUTH, before login or after it, gets
///   `-ERR [AUTH] XAUTH already done`.
/// - before a successful XAUTH, everything but XAUTH, CAPA and QUIT gets
///   `-ERR [AUTH] ...`: a client without the secret reads nothing;
/// - after it, `USER LOGIN` sets session.login() (`host` or `user+host`,
///   as auth parses it) and `PASS` (any argument) passes on to lock and
///   commands, which lock, snapshot and answer — the front end has
///   already checked the customer's password.
///
/// Per-session state (the challenge, whether XAUTH succeeded) is in a
/// session slot. All calls on the session's event loop.
class backend_auth final : public sdps::module {
 public:
  /// Reads `secret` (a file, see backend_proto::backend_secret::load), `punt`
  /// (optional) and `fail_delay`. Throws config_error.
  explicit backend_auth(module_config& config);

  std::vector<command_spec> commands() const override;
  event_set events() const override { return {event::connect}; }
  /// Without `punt:`, takes the punt of the one spool in the chain (a back
  /// end serves one punt); throws config_error if there is not exactly one.
  void start(const registry& services) override;
  awaitable<verdict> on_command(session& s, const command& cmd) override;
  /// connect: the greeting carries the first challenge.
  awaitable<verdict> on_event(session& s, event e) override;
  /// XAUTH and USER.
  void capabilities(session& s, std::vector<std::string>& lines) const override;

  const std::string& punt() const { return punt_; }

 private:
  struct gate;
  awaitable<verdict> xauth(session& s, const command& cmd);

  server_context& server_;
  logger& log_;
  std::string instance_;
  std::string punt_;
  std::chrono::milliseconds fail_delay_;
  std::shared_ptr<const backend_proto::backend_secret> secret_;
};

}  // namespace sdps::backend
