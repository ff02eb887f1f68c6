#pragma once
// The back end's gate: front ends prove they hold the shared secret
// (XAUTH), then act for a customer login (USER, PASS). Settings and the
// protocol: README.md beside this file and docs/backend-protocol.md.

#include "backend_proto/protocol.hpp"

#include <sdps/module.hpp>

#include <chrono>
#include <filesystem>
#include <memory>
#include <optional>
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
/// - after it, `USER LOGIN` names the login (`host` or `user+host`, as auth
///   parses it) and `PASS` (any argument) hands the core a login of
///   mechanism "XAUTH", which this instance accepts in the verify stage
///   for a front end that proved the secret (the front end has already
///   checked the customer's password); the other stages (lock, the
///   maildrop) run as for any login.
///
/// Per-session state (the challenge, whether XAUTH succeeded, the login
/// named) is in a session slot. All calls on the session's event loop.
class backend_auth final : public sdps::module {
 public:
  /// Reads `secret` (a file, see backend_proto::backend_secret::load), `punt`
  /// (optional) and `fail_delay`. Throws config_error.
  explicit backend_auth(module_config& config);

  std::vector<command_spec> commands() const override;
  event_set events() const override { return {event::connect}; }
  stage_set login_stages() const override { return {login_stage::verify}; }
  /// Without `punt:`, takes the punt of the one spool in the chain (a back
  /// end serves one punt); throws config_error if there is not exactly one.
  void start(const registry& services) override;
  awaitable<verdict> on_command(session& s, const command& cmd) override;
  /// connect: the greeting carries the first challenge.
  awaitable<verdict> on_event(session& s, event e) override;
  /// verify: accepts an "XAUTH" login on a connection whose front end
  /// proved the secret; leaves any other login to other verifiers.
  awaitable<login_verdict> on_login(session& s, login_stage stage, login_attempt& attempt) override;
  /// XAUTH and USER.
  void capabilities(session& s, std::vector<std::string>& lines) const override;
  /// As the configured user: whether it can read the secret file (read
  /// again at the next start).
  std::vector<std::string> check() const override;

  const std::string& punt() const { return punt_; }

 private:
  /// One connection's standing: the challenge it was given, whether it
  /// answered it, and the login USER named.
  struct gate {
    std::string nonce;
    bool trusted = false;
    std::optional<identity> who;
  };
  awaitable<verdict> xauth(session& s, const command& cmd);

  server_context& server_;
  logger& log_;
  std::string instance_;
  std::string punt_;
  std::chrono::milliseconds fail_delay_;
  std::shared_ptr<const backend_proto::backend_secret> secret_;
  std::filesystem::path secret_file_;
  slot_key<gate> gate_;
};

}  // namespace sdps::backend
