#include "backend_auth.hpp"

#include "base/account.hpp"
#include "pop3/user.hpp"

#include <sdps/maildrop.hpp>

namespace sdps::backend {

namespace {

constexpr state_mask authorization = pop3_state::authorization;
constexpr state_mask transaction = pop3_state::transaction;
constexpr std::chrono::milliseconds max_fail_delay = std::chrono::seconds(30);

verdict reply(response r) { return verdict::answer(std::move(r)); }

/// A second XAUTH on a connection, before login or after it.
response already_trusted() { return response::err("[AUTH] XAUTH already done"); }

response untrusted() {
  return response::err("[AUTH] this is an sdps back end: a front end must authenticate with XAUTH first");
}

}  // namespace

backend_auth::backend_auth(module_config& config)
    : server_(config.server()),
      log_(config.log()),
      instance_(config.instance()),
      punt_(config.options().string_or("punt", "")),
      fail_delay_(config.options().duration_or("fail_delay", std::chrono::seconds(1))) {
  settings& opts = config.options();
  if (opts.has("punt") && (punt_.empty() || punt_.find_first_of(" \t\r\n") != std::string::npos))
    opts.fail("punt", "the punt name must be one word");
  if (fail_delay_.count() < 0 || fail_delay_ > max_fail_delay)
    opts.fail("fail_delay", "'fail_delay' must be between 0 and 30s");
  secret_file_ = opts.path("secret");
  secret_ = backend_proto::backend_secret::load(secret_file_, opts.where("secret"), log_);
  config.declare_role("backend");
}

std::vector<command_spec> backend_auth::commands() const {
  // "*" in AUTHORIZATION: before XAUTH this instance refuses everything
  // but CAPA and QUIT. Its own verbs are declared as well (the chain
  // visits an instance once per command however many of its specs match),
  // so that they are known verbs (the debug log names them), and XAUTH in
  // TRANSACTION too, so a second one after login gets its own -ERR rather
  // than "command not valid".
  return {{"*", authorization},
          {"XAUTH", authorization | transaction},
          {"USER", authorization},
          {"PASS", authorization}};
}

void backend_auth::start(const registry& services) {
  if (!punt_.empty()) return;
  const auto spools = services.all<spool>();
  if (spools.size() != 1)
    throw config_error("module instance '" + instance_ + "': a back end serves one punt, but the chain has " +
                       std::to_string(spools.size()) + " spool instances; set 'punt:' to the one front ends reach");
  punt_ = spools.front()->punt();
}

void backend_auth::capabilities(session& s, std::vector<std::string>& lines) const {
  lines.push_back("XAUTH");  // accepted in both states
  if (s.state() == pop3_state::authorization) lines.push_back("USER");
}

awaitable<verdict> backend_auth::on_command(session& s, const command& cmd) {
  if (cmd.name == "XAUTH") co_return co_await xauth(s, cmd);
  gate& g = s.slot(gate_);
  if (!g.trusted) {
    if (cmd.name == "CAPA" || cmd.name == "QUIT") co_return verdict::next();
    co_return reply(untrusted());
  }
  if (cmd.name == "USER") {
    g.who = pop3::parse_user(cmd.argument, server_.customer_domain());
    if (!g.who) co_return reply(response::err("invalid login: use HOST or USER+HOST"));
    co_return reply(response::ok("send PASS"));
  }
  if (cmd.name == "PASS") {
    if (!g.who) co_return reply(response::err("send USER first"));
    identity who = std::move(*g.who);
    g.who.reset();
    co_return verdict::login(credentials(std::move(who), "XAUTH", ""));
  }
  co_return verdict::next();
}

awaitable<login_verdict> backend_auth::on_login(session& s, login_stage, login_attempt& attempt) {
  const gate* g = s.find_slot(gate_);
  if (attempt.mechanism() != "XAUTH" || !g || !g->trusted) co_return login_verdict::proceed();
  s.log().info("front end acts for ", attempt.who().display(), " on punt ", punt_);
  attempt.accept("the front end's word");
  co_return login_verdict::proceed();
}

awaitable<verdict> backend_auth::on_event(session& s, event e) {
  if (e != event::connect) co_return verdict::next();
  // The greeting is the challenge: a front end answers it in the same
  // write as its login, so logging in costs one round trip after connect.
  gate& g = s.slot(gate_);
  g.nonce = backend_proto::new_nonce();
  co_return reply(response::ok(g.nonce + " " + punt_ + " sdps back end"));
}

awaitable<verdict> backend_auth::xauth(session& s, const command& cmd) {
  const auto args = cmd.args();
  gate& g = s.slot(gate_);
  if (g.trusted) co_return reply(already_trusted());
  if (args.empty()) {
    g.nonce = backend_proto::new_nonce();
    co_return reply(response::ok(g.nonce + " " + punt_));
  }
  if (args.size() != 2) co_return reply(response::err("syntax: XAUTH, then XAUTH NONCE PROOF"));
  if (g.nonce.empty()) co_return reply(response::err("send XAUTH without arguments first, for a challenge"));
  // One answer per challenge, right or wrong.
  const std::string server_nonce = std::move(g.nonce);
  g.nonce.clear();
  const std::string frontend_nonce(args[0]);
  const bool good = backend_proto::valid_nonce(frontend_nonce) &&
                    backend_proto::verify_proof(*secret_, backend_proto::role::frontend, server_nonce, frontend_nonce, punt_, args[1]);
  const auto peer = s.remote_endpoint();
  if (!good) {
    log_.warning("session ", s.id(), ": XAUTH from ", peer, " refused: wrong proof (another secret, or not a front end)");
    asio::steady_timer delay(s.get_executor());
    delay.expires_after(fail_delay_);
    boost::system::error_code ignored;
    co_await delay.async_wait(asio::redirect_error(asio::use_awaitable, ignored));
    co_return reply(response::err("[AUTH] XAUTH refused").and_close());
  }
  g.trusted = true;
  s.log().debug("front end ", peer, " authenticated");
  co_return reply(response::ok(backend_proto::proof(*secret_, backend_proto::role::backend, server_nonce, frontend_nonce, punt_)));
}

std::vector<std::string> backend_auth::check() const {
  return base::check_readable(secret_file_, "the front-end secret");
}

}  // namespace sdps::backend
