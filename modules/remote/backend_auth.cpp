#include "backend_auth.hpp"

#include "pop3/user.hpp"

#include <sdps/maildrop.hpp>

namespace sdps::backend {

namespace {

constexpr state_mask authorization = static_cast<state_mask>(pop3_state::authorization);
constexpr state_mask transaction = static_cast<state_mask>(pop3_state::transaction);
constexpr std::chrono::milliseconds max_fail_delay = std::chrono::seconds(30);

verdict reply(response r) { return verdict::answer(std::move(r)); }

/// A second XAUTH on a connection, before login or after it.
response already_trusted() { return response::err("[AUTH] XAUTH already done"); }

response untrusted() {
  return response::err("[AUTH] this is an sdps back end: a front end must authenticate with XAUTH first");
}

}  // namespace

/// One connection's standing: the challenge it was given, and whether it
/// answered it.
struct backend_auth::gate {
  std::string nonce;
  bool trusted = false;
};

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
  secret_ = backend_proto::backend_secret::load(opts.path("secret"), opts.where("secret"), log_);
}

std::vector<command_spec> backend_auth::commands() const {
  // "*" in AUTHORIZATION: USER and XAUTH need no declaration there, since
  // this instance answers them. XAUTH is also declared for TRANSACTION, so
  // a second one after login gets its own -ERR rather than "unknown
  // command"; the chain visits an instance once per command however many
  // of its specs match.
  return {{"*", authorization}, {"XAUTH", transaction}};
}

void backend_auth::start(const registry& services) {
  if (!punt_.empty()) return;
  const auto spools = services.all<spool>();
  if (spools.size() != 1)
    throw config_error("module instance '" + instance_ + "': a back end serves one punt, but the chain has " +
                       std::to_string(spools.size()) + " spool instances; set 'punt:' to the one front ends reach");
  punt_ = spools.front()->punt();
}

void backend_auth::capabilities(session&, std::vector<std::string>& lines) const {
  lines.push_back("XAUTH");
  lines.push_back("USER");
}

awaitable<verdict> backend_auth::on_command(session& s, const command& cmd) {
  if (cmd.name == "XAUTH") co_return co_await xauth(s, cmd);
  const gate& g = s.slot<gate>(this);
  if (!g.trusted) {
    if (cmd.name == "CAPA" || cmd.name == "QUIT") co_return verdict::next();
    co_return reply(untrusted());
  }
  if (cmd.name == "USER") {
    auto who = pop3::parse_user(cmd.argument, server_.customer_domain());
    if (!who) {
      s.login().reset();
      co_return reply(response::err("invalid login: use HOST or USER+HOST"));
    }
    s.login() = std::move(*who);
    co_return reply(response::ok("send PASS"));
  }
  if (cmd.name == "PASS") {
    if (!s.login()) co_return reply(response::err("send USER first"));
    s.log().info("front end acts for ", s.login()->display(), " on punt ", punt_);
    co_return verdict::next();
  }
  co_return verdict::next();
}

awaitable<verdict> backend_auth::on_event(session& s, event e) {
  if (e != event::connect) co_return verdict::next();
  // The greeting is the challenge: a front end answers it in the same
  // write as its login, so logging in costs one round trip after connect.
  gate& g = s.slot<gate>(this);
  g.nonce = backend_proto::new_nonce();
  co_return reply(response::ok(g.nonce + " " + punt_ + " sdps back end"));
}

awaitable<verdict> backend_auth::xauth(session& s, const command& cmd) {
  const auto args = cmd.args();
  gate& g = s.slot<gate>(this);
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

}  // namespace sdps::backend
