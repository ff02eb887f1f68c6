#pragma once
// A login run through its stages (sdps/login.hpp): verify, authorize,
// lock, open, each instance of a stage in chain order, and every step
// undone, latest first, when a later one refuses.

#include "session_engine.hpp"

#include <sdps/login.hpp>

#include <utility>
#include <vector>

namespace sdps::core {

class login_pipeline {
 public:
  explicit login_pipeline(session_engine& engine) : engine_(engine) {}

  /// Runs `presented` through the stages. On success the session is in
  /// TRANSACTION with its identity, maildrop and fresh marks, the login is
  /// logged and counted, and the +OK is returned; the engine fires
  /// `authenticated` once it is sent. On refusal the refusal's -ERR, after
  /// every stage passed so far has been undone; the session stays in
  /// AUTHORIZATION. When a call overruns its time limit, whatever it
  /// returns is not sent (the session is over).
  awaitable<response> run(credentials presented);

 private:
  /// Opens the session's maildrop from the chain's source, for the open stage.
  awaitable<std::optional<login_verdict>> open_maildrop(login_attempt& attempt);
  /// undo_login() for every step passed, latest first.
  void undo();
  /// Logs and counts a refusal; returns its reply.
  response refused(const login_attempt& attempt, login_verdict verdict, const module_instance* by);
  /// Enters TRANSACTION; returns the +OK.
  response enter(login_attempt& attempt);

  session_engine& engine_;
  std::vector<std::pair<const module_instance*, login_stage>> passed_;
};

}  // namespace sdps::core
