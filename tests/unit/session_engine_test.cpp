// The session engine's contract, through the harness (the engine itself
// over in-memory connections): chain order, answers and passes, state
// checks, the guards (time limits kept by the watchdog, exceptions) that
// never let a command through, the order of events, and logins run
// through their stages.

#include "support/harness.hpp"

#include "metrics.hpp"

#include <catch2/catch.hpp>

#include <map>

using namespace sdps;
using namespace sdps::testing;

namespace {

/// Every call a scripted instance received and finished, in order:
/// "a: NOOP", "a: NOOP done", "b: event quit", "c: verify", "c: undo lock".
using journal = std::vector<std::string>;

enum class act {
  pass,          // verdict::next() / proceed
  answer,        // +OK NAME VERB ARG
  refuse,        // -ERR NAME says no / refuse the login
  later,         // answer after 20 ms
  hang,          // answer after 300 ms (past a short time limit)
  fail,          // throw
  login,         // verdict::login(USER's name, "PLAIN" or "USER", the argument)
  accept,        // verify stage: accept the login
  slow_body,     // +OK with a body: 10 octets at once, then a read that hangs 300 ms
  log_in_call,   // +OK, having written a line to session.log()
  remember,      // +OK, having set this instance's slot
  recall,        // +OK yes/no: whether this instance's slot is set
  start_tls,     // session.start_tls(), +OK
  end_login,     // session.end_login(), +OK
  stuffed_body,  // +OK with a body already dot-stuffed ("a\r\n..b\r\n" in pieces)
};

/// One scripted instance: what it does for each verb, login stage and event.
class scripted final : public sdps::module {
 public:
  struct script {
    std::vector<command_spec> specs = {};
    std::map<std::string, act> verbs = {};  // "*" for any verb not listed
    event_set events = {};
    std::map<event, act> on_events = {};
    stage_set stages = {};
    std::map<login_stage, act> on_stages = {};
    std::string mechanism = "USER";
  };

  scripted(module_config& config, script s, journal* seen)
      : name_(config.instance()), script_(std::move(s)), seen_(seen) {}

  std::vector<command_spec> commands() const override { return script_.specs; }
  event_set events() const override { return script_.events; }
  stage_set login_stages() const override { return script_.stages; }

  awaitable<verdict> on_command(session& s, const command& cmd) override {
    act a = act::pass;
    if (auto it = script_.verbs.find(cmd.name); it != script_.verbs.end())
      a = it->second;
    else if (auto any = script_.verbs.find("*"); any != script_.verbs.end())
      a = any->second;
    seen_->push_back(name_ + ": " + cmd.name);
    switch (a) {
      case act::pass: co_return verdict::next();
      case act::answer: co_return verdict::answer(response::ok(name_ + " " + cmd.name + " " + cmd.argument));
      case act::refuse: co_return verdict::answer(response::err(name_ + " says no"));
      case act::later:
      case act::hang: {
        asio::steady_timer t(s.get_executor(), std::chrono::milliseconds(a == act::later ? 20 : 300));
        co_await t.async_wait(asio::use_awaitable);
        seen_->push_back(name_ + ": " + cmd.name + " done");
        co_return verdict::answer(response::ok(name_ + " later"));
      }
      case act::fail: throw std::runtime_error("boom");
      case act::login: {
        const auto plus = cmd.argument.find('+');
        identity who = plus == std::string::npos ? identity{cmd.argument, ""}
                                                 : identity{cmd.argument.substr(plus + 1), cmd.argument.substr(0, plus)};
        co_return verdict::login(credentials(std::move(who), script_.mechanism, "secret"));
      }
      case act::slow_body:
        co_return verdict::answer(response::ok("slow body").with_body(std::make_unique<slow_body>(*this)));
      case act::log_in_call:
        s.log().info("a line from inside the call");
        co_return verdict::answer(response::ok());
      case act::remember:
        s.slot(mine_) = 1;
        co_return verdict::answer(response::ok());
      case act::recall: co_return verdict::answer(response::ok(s.find_slot(mine_) ? "yes" : "no"));
      case act::start_tls:
        s.start_tls();
        co_return verdict::answer(response::ok());
      case act::end_login:
        s.end_login();
        co_return verdict::answer(response::ok("reset"));
      case act::stuffed_body:
        co_return verdict::answer(response::ok("relayed").with_body(std::make_unique<relayed_body>()));
      default: co_return verdict::next();
    }
  }

  awaitable<verdict> on_event(session& s, event e) override {
    seen_->push_back(name_ + ": event " + to_string(e));
    const act a = script_.on_events.count(e) ? script_.on_events.at(e) : act::pass;
    if (a == act::hang) {
      asio::steady_timer t(s.get_executor(), std::chrono::milliseconds(300));
      co_await t.async_wait(asio::use_awaitable);
      seen_->push_back(name_ + ": event " + to_string(e) + " done");
    }
    if (a == act::refuse) co_return verdict::answer(response::err("go away"));
    if (a == act::answer) co_return verdict::answer(response::ok("welcome from " + name_));
    if (a == act::fail) throw std::runtime_error("event boom");
    co_return verdict::next();
  }

  awaitable<login_verdict> on_login(session& s, login_stage stage, login_attempt& attempt) override {
    seen_->push_back(name_ + ": " + to_string(stage) + (s.login() ? " (logged in!)" : ""));
    passwords.push_back(std::string(attempt.password()));
    maildrop_seen = maildrop_seen || attempt.maildrop() != nullptr;
    const act a = script_.on_stages.count(stage) ? script_.on_stages.at(stage) : act::pass;
    switch (a) {
      case act::accept: attempt.accept("the script"); co_return login_verdict::proceed();
      case act::refuse:
        co_return login_verdict::refuse(response::err("[AUTH] " + name_ + " refuses"), "scripted refusal");
      case act::hang: {
        asio::steady_timer t(s.get_executor(), std::chrono::milliseconds(300));
        co_await t.async_wait(asio::use_awaitable);
        seen_->push_back(name_ + ": " + to_string(stage) + " done");
        co_return login_verdict::proceed();
      }
      case act::fail: throw std::runtime_error("stage boom");
      default: co_return login_verdict::proceed();
    }
  }
  void undo_login(session&, login_stage stage) override { seen_->push_back(name_ + ": undo " + to_string(stage)); }

  std::vector<std::string> passwords;  // what each on_login saw
  bool maildrop_seen = false;

 private:
  /// A body as another POP3 server sent it: already stuffed.
  class relayed_body final : public body_source {
   public:
    awaitable<std::size_t> read(std::span<char> buffer) override {
      const std::string_view text = "a\r\n..b\r\n.";
      const std::size_t n = std::min(buffer.size(), text.size() - offset_);
      text.substr(offset_, n).copy(buffer.data(), n);
      offset_ += n;
      co_return n;
    }
    bool stuffed() const override { return true; }

   private:
    std::size_t offset_ = 0;
  };

  class slow_body final : public body_source {
   public:
    explicit slow_body(scripted& owner) : owner_(owner) {}
    awaitable<std::size_t> read(std::span<char> buffer) override {
      if (!sent_) {
        sent_ = true;
        const std::string start = "0123456789";
        const std::size_t n = std::min(buffer.size(), start.size());
        start.copy(buffer.data(), n);
        co_return n;
      }
      auto ex = co_await asio::this_coro::executor;
      asio::steady_timer t(ex, std::chrono::milliseconds(300));
      co_await t.async_wait(asio::use_awaitable);
      owner_.seen_->push_back(owner_.name_ + ": body read done");
      co_return 0;
    }

   private:
    scripted& owner_;
    bool sent_ = false;
  };

  std::string name_;
  script script_;
  journal* seen_;
  slot_key<int> mine_;
};

const state_mask everywhere = any_state;

/// A harness and a journal, with shorthands for scripted instances.
struct fixture {
  harness h;
  journal seen;

  scripted& add(const std::string& name, scripted::script s) { return h.add<scripted>(name, "{}", std::move(s), &seen); }
  /// A module that answers USER/PASS as a login ("PASS host" logs in as host).
  scripted& login_taker(const std::string& name = "taker", const std::string& mechanism = "USER") {
    scripted::script s;
    s.specs = {{"PASS", pop3_state::authorization}};
    s.verbs = {{"PASS", act::login}};
    s.mechanism = mechanism;
    return add(name, s);
  }
  /// A verify-stage instance that accepts every login.
  scripted& verifier(const std::string& name = "verifier") {
    scripted::script s;
    s.stages = {login_stage::verify};
    s.on_stages = {{login_stage::verify, act::accept}};
    return add(name, s);
  }
  /// QUIT in both states and NOOP, like the commands module (without a maildrop).
  scripted& quitter(const std::string& name = "quitter") {
    scripted::script s;
    s.specs = {{"QUIT", everywhere}, {"NOOP", everywhere}};
    s.verbs = {{"QUIT", act::answer}, {"NOOP", act::answer}};
    return add(name, s);
  }
  bool saw(const std::string& line) const { return std::find(seen.begin(), seen.end(), line) != seen.end(); }
};

}  // namespace

// -- commands through the chain ---------------------------------------------------

TEST_CASE("the first instance that answers ends the chain; passing lets the next see it") {
  fixture f;
  f.add("first", {{{"NOOP", everywhere}}, {{"NOOP", act::pass}}});
  f.add("second", {{{"NOOP", everywhere}}, {{"NOOP", act::answer}}});
  f.add("third", {{{"NOOP", everywhere}}, {{"NOOP", act::answer}}});
  f.h.start();
  auto c = f.h.connect();
  CHECK(c->greeting == "+OK test server ready\r\n");
  CHECK(f.h.send(c, "NOOP a  b") == "+OK second NOOP a  b\r\n");
  CHECK(f.seen == journal{"first: NOOP", "second: NOOP"});
}

TEST_CASE("only instances that declared a verb see it; a verb's states are the union of the declarations") {
  fixture f;
  f.add("auth_only", {{{"XTEST", pop3_state::authorization}}, {{"XTEST", act::answer}}});
  f.add("other", {{{"XOTHER", everywhere}}, {{"XOTHER", act::answer}}});
  f.h.start();
  auto c = f.h.connect();
  CHECK(f.h.send(c, "xtest 1") == "+OK auth_only XTEST 1\r\n");
  CHECK(f.seen == journal{"auth_only: XTEST"});
  CHECK(f.h.send(c, "FROB") == "-ERR unknown command\r\n");
}

TEST_CASE("a declared verb in a state no instance wants it in is refused; declared but passed is -ERR") {
  fixture f;
  f.login_taker();
  f.verifier();
  f.add("x", {{{"XTEST", pop3_state::transaction}, {"XPASS", everywhere}}, {{"XTEST", act::answer}}});
  f.h.start();
  auto c = f.h.connect();
  CHECK(f.h.send(c, "XTEST") == "-ERR command not valid in the AUTHORIZATION state\r\n");
  CHECK(f.h.send(c, "XPASS") == "-ERR command not available\r\n");
  CHECK(f.h.send(c, "PASS sample") == "+OK sample logged in\r\n");
  CHECK(f.h.send(c, "XTEST") == "+OK x XTEST \r\n");
}

TEST_CASE("a wildcard instance sees every command, known or not, in its place in the chain") {
  fixture f;
  f.add("before", {{{"NOOP", everywhere}}, {{"NOOP", act::pass}}});
  f.add("watcher", {{{"*", everywhere}}, {{"*", act::pass}}});
  f.add("after", {{{"NOOP", everywhere}}, {{"NOOP", act::answer}}});
  f.h.start();
  auto c = f.h.connect();
  CHECK(f.h.send(c, "NOOP") == "+OK after NOOP \r\n");
  CHECK(f.h.send(c, "FROB") == "-ERR unknown command\r\n");
  CHECK(f.seen == journal{"before: NOOP", "watcher: NOOP", "after: NOOP", "watcher: FROB"});
}

TEST_CASE("an asynchronous answer is awaited; pipelined commands are answered in order, together") {
  fixture f;
  f.add("slow", {{{"XLATE", everywhere}, {"NOOP", everywhere}}, {{"XLATE", act::later}, {"NOOP", act::answer}}});
  f.h.start();
  auto c = f.h.connect();
  CHECK(f.h.send_all(c, {"XLATE", "NOOP 1", "NOOP 2"}) == "+OK slow later\r\n+OK slow NOOP 1\r\n+OK slow NOOP 2\r\n");
}

TEST_CASE("an instance that throws never lets the command through") {
  fixture f;
  f.add("thrower", {{{"NOOP", everywhere}}, {{"NOOP", act::fail}}});
  f.add("after", {{{"NOOP", everywhere}}, {{"NOOP", act::answer}}});
  f.h.start();
  auto c = f.h.connect();
  CHECK(f.h.send(c, "NOOP") == "-ERR [SYS/TEMP] internal server error, try again later\r\n");
  CHECK(f.seen == journal{"thrower: NOOP"});
  CHECK(f.h.core_log().contains("thrower: session 1: NOOP: boom"));
  CHECK(f.h.send(c, "NOOP") == "-ERR [SYS/TEMP] internal server error, try again later\r\n");  // still open
}

TEST_CASE("overlong and empty lines get their -ERR and the session goes on") {
  fixture f;
  f.quitter();
  f.h.start();
  auto c = f.h.connect();
  CHECK(f.h.send(c, std::string(600, 'x')) == "-ERR line too long (the limit is 512 octets)\r\n");
  CHECK(f.h.send(c, "") == "-ERR empty command\r\n");
  CHECK(f.h.send(c, "NOOP") == "+OK quitter NOOP \r\n");
}

TEST_CASE("the debug log names a command by its verb only when an instance knows the verb") {
  fixture f;
  f.quitter();
  f.h.settings.banner = "x";
  f.h.start();
  auto c = f.h.connect();
  f.h.send(c, "NOOP");
  // A PASS sent with a tab, and a SASL response pipelined after a refused
  // AUTH: what the client sent is never logged.
  f.h.send(c, "PASS\tTabSecret1");
  f.h.send(c, "AHNHBXBSZQBWB3AZ");
  CHECK(f.h.core_log().contains("command NOOP"));
  CHECK(f.h.core_log().contains("command (not a known verb)"));
  for (const std::string& line : f.h.core_log().lines()) {
    CHECK(line.find("TABSECRE") == std::string::npos);
    CHECK(line.find("TabSecret") == std::string::npos);
    CHECK(line.find("AHNHBX") == std::string::npos);
  }
}

TEST_CASE("session.log() lines carry the instance whose call is running") {
  fixture f;
  f.add("talker", {{{"XTALK", everywhere}}, {{"XTALK", act::log_in_call}}});
  f.h.start();
  auto c = f.h.connect();
  CHECK(f.h.send(c, "XTALK") == "+OK\r\n");
  CHECK(f.h.core_log().contains("session 1: talker: a line from inside the call"));
}

// -- the watchdog: every module call bounded, by the engine's one deadline -----

TEST_CASE("a command past its time limit ends the session at the deadline; the call runs to its end first") {
  fixture f;
  f.h.timeout = std::chrono::milliseconds(60);
  f.add("slow", {{{"XSLOW", everywhere}, {"NOOP", everywhere}}, {{"XSLOW", act::hang}, {"NOOP", act::answer}},
                 {event::disconnect}});
  f.h.start();
  auto c = f.h.connect();
  const double before = core::process_metrics().value("sdps_module_timeouts_total", {{"instance", "slow"}});
  // A NOOP pipelined behind it never runs: the session is over.
  const std::string out = f.h.send_all(c, {"XSLOW", "NOOP"});
  CHECK(out == "-ERR [SYS/TEMP] the server took too long, try again later\r\n");
  CHECK(c->closed());
  CHECK(c->finished());
  // The late call finished before the modules heard of the end.
  CHECK(f.seen == journal{"slow: XSLOW", "slow: XSLOW done", "slow: event disconnect"});
  CHECK(core::process_metrics().value("sdps_module_timeouts_total", {{"instance", "slow"}}) == before + 1);
  CHECK(f.h.core_log().contains("no answer within 60ms"));
}

TEST_CASE("a body read past its time limit: -ERR if nothing of the reply went out, else just the close") {
  SECTION("the reply was partly sent: the connection closes without -ERR") {
    fixture f;
    f.h.timeout = std::chrono::milliseconds(60);
    f.h.settings.flush_threshold = 4;  // the first piece goes out before the slow read
    f.add("body", {{{"XBODY", everywhere}}, {{"XBODY", act::slow_body}}, {event::disconnect}});
    f.h.start();
    auto c = f.h.connect();
    const std::string out = f.h.send(c, "XBODY");
    CHECK(out.rfind("+OK slow body\r\n0123456", 0) == 0);
    CHECK(out.find("-ERR") == std::string::npos);
    CHECK(c->closed());
    CHECK(f.seen.back() == "body: event disconnect");
    CHECK(f.saw("body: body read done"));
  }
  SECTION("nothing was sent yet: -ERR [SYS/TEMP]") {
    fixture f;
    f.h.timeout = std::chrono::milliseconds(60);
    f.add("body", {{{"XBODY", everywhere}}, {{"XBODY", act::slow_body}}, {event::disconnect}});
    f.h.start();
    auto c = f.h.connect();
    CHECK(f.h.send(c, "XBODY") == "-ERR [SYS/TEMP] the server took too long, try again later\r\n");
    CHECK(c->closed());
  }
}

TEST_CASE("an event past its time limit: connect's greeting becomes -ERR; at disconnect it is waited for") {
  SECTION("connect") {
    fixture f;
    f.h.timeout = std::chrono::milliseconds(60);
    f.add("slow", {{}, {}, {event::connect, event::disconnect}, {{event::connect, act::hang}}});
    f.h.start();
    auto c = f.h.connect();
    CHECK(c->greeting == "-ERR [SYS/TEMP] the server took too long, try again later\r\n");
    CHECK(c->finished());
    CHECK(f.seen == journal{"slow: event connect", "slow: event connect done", "slow: event disconnect"});
  }
  SECTION("disconnect: the next instance still hears it, after the late one returned") {
    fixture f;
    f.h.timeout = std::chrono::milliseconds(60);
    f.add("slow", {{}, {}, {event::disconnect}, {{event::disconnect, act::hang}}});
    f.add("next", {{}, {}, {event::disconnect}});
    f.h.start();
    auto c = f.h.connect();
    f.h.disconnect(c);
    CHECK(f.seen == journal{"slow: event disconnect", "slow: event disconnect done", "next: event disconnect"});
  }
}

TEST_CASE("the idle deadline ends a quiet session; activity moves it") {
  fixture f;
  f.quitter();
  f.h.settings.idle_timeout = std::chrono::milliseconds(150);
  f.h.start();
  auto c = f.h.connect();
  for (int i = 0; i < 3; ++i) {
    f.h.pass_time(std::chrono::milliseconds(80));
    CHECK(f.h.send(c, "NOOP") == "+OK quitter NOOP \r\n");
  }
  CHECK_FALSE(c->closed());
  f.h.pass_time(std::chrono::milliseconds(300));  // nothing more comes: the deadline passes
  CHECK(c->finished());
  CHECK(f.h.core_log().contains("idle for 0s: closing without UPDATE"));
  CHECK(f.h.core_log().contains("end=\"idle autologout\""));
}

TEST_CASE("the login deadline ends a session that does not log in, whatever it sends") {
  fixture f;
  f.quitter();
  f.h.settings.login_timeout = std::chrono::milliseconds(150);
  f.h.start();
  auto c = f.h.connect();
  for (int i = 0; i < 3 && !c->closed(); ++i) {
    f.h.pass_time(std::chrono::milliseconds(60));
    if (!c->closed()) f.h.send(c, "NOOP");
  }
  f.h.pass_time(std::chrono::milliseconds(200));
  CHECK(c->finished());
  CHECK(f.h.core_log().contains("no login within 0s: closing"));
}

// -- events ----------------------------------------------------------------------------

TEST_CASE("a connect answer replaces the greeting; a refusal closes the connection") {
  SECTION("welcome") {
    fixture f;
    f.add("greeter", {{}, {}, {event::connect}, {{event::connect, act::answer}}});
    f.h.start();
    auto c = f.h.connect();
    CHECK(c->greeting == "+OK welcome from greeter\r\n");
    CHECK_FALSE(c->closed());
  }
  SECTION("refusal") {
    fixture f;
    f.add("bouncer", {{}, {}, {event::connect}, {{event::connect, act::refuse}}});
    f.h.start();
    auto c = f.h.connect();
    CHECK(c->greeting == "-ERR go away\r\n");
    CHECK(c->finished());
    CHECK(f.h.core_log().contains("end=\"refused at connect\""));
  }
}

TEST_CASE("events come in their order to the instances that name them, and answers to them are ignored") {
  fixture f;
  f.login_taker();
  f.verifier();
  f.quitter();
  f.add("all", {{}, {}, event_set::all(), {{event::authenticated, act::refuse}, {event::quit, act::refuse}}});
  f.add("none", {{}, {}, {}});
  f.h.start();
  auto c = f.h.connect();
  CHECK(f.h.send(c, "PASS sample") == "+OK sample logged in\r\n");
  CHECK(f.h.send(c, "QUIT") == "+OK quitter QUIT \r\n");
  f.h.disconnect(c);
  const journal events = [&] {
    journal out;
    for (const auto& line : f.seen)
      if (line.find("event") != std::string::npos) out.push_back(line);
    return out;
  }();
  // QUIT in AUTHORIZATION would end the session without `quit`: here the
  // quitter's QUIT did not enter UPDATE (it has no maildrop), so no quit event.
  CHECK(events == journal{"all: event connect", "all: event authenticated", "all: event disconnect"});
}

// -- logins ------------------------------------------------------------------------------

TEST_CASE("a login runs its stages in order, whatever the chain's order, and enters TRANSACTION once") {
  fixture f;
  scripted::script stages;
  stages.stages = {login_stage::open, login_stage::lock, login_stage::authorize};
  auto& policy = f.add("first", stages);  // first in the chain, yet it runs after verify
  f.login_taker();
  auto& verifier = f.verifier();
  f.h.start();
  auto c = f.h.connect();
  CHECK(f.h.send(c, "PASS fred+sample") == "+OK fred+sample logged in\r\n");
  CHECK(f.seen == journal{"taker: PASS", "verifier: verify", "first: authorize", "first: lock", "first: open"});
  REQUIRE(c->login());
  CHECK(*c->login() == identity{"sample", "fred"});
  CHECK(c->state() == pop3_state::transaction);
  // The password is the verify stage's only; later stages see it wiped.
  CHECK(verifier.passwords == std::vector<std::string>{"secret"});
  CHECK(policy.passwords == std::vector<std::string>{"", "", ""});
  CHECK(f.h.core_log().contains("login fred+sample from 192.0.2.7 with the script"));
  // A login is a command of AUTHORIZATION only.
  CHECK(f.h.send(c, "PASS sample") == "-ERR command not valid in the TRANSACTION state\r\n");
}

TEST_CASE("a refused stage undoes the stages passed, latest first, and nothing counts as a login") {
  fixture f;
  f.login_taker();
  f.verifier();
  scripted::script locker;
  locker.stages = {login_stage::lock};
  f.add("locker", locker);
  scripted::script picky;
  picky.stages = {login_stage::authorize, login_stage::open};
  picky.on_stages = {{login_stage::open, act::refuse}};
  f.add("picky", picky);
  f.h.start();
  auto c = f.h.connect();
  const double ok_before = core::process_metrics().value("sdps_logins_total", {{"result", "ok"}});
  const double refused_before = core::process_metrics().value("sdps_login_failures_total", {{"reason", "scripted refusal"}});
  CHECK(f.h.send(c, "PASS sample") == "-ERR [AUTH] picky refuses\r\n");
  CHECK(f.seen == journal{"taker: PASS", "verifier: verify", "picky: authorize", "locker: lock", "picky: open",
                          "locker: undo lock", "picky: undo authorize", "verifier: undo verify"});
  CHECK(c->state() == pop3_state::authorization);
  CHECK(c->login() == nullptr);
  CHECK_FALSE(f.h.core_log().contains("login sample from"));
  CHECK(f.h.core_log().contains("login failed: host sample from 192.0.2.7: scripted refusal (picky)"));
  CHECK(core::process_metrics().value("sdps_logins_total", {{"result", "ok"}}) == ok_before);
  CHECK(core::process_metrics().value("sdps_login_failures_total", {{"reason", "scripted refusal"}}) ==
        refused_before + 1);
  f.h.disconnect(c);
  CHECK(f.h.core_log().contains("logout login=sample host=sample user=- auth=failed"));
}

TEST_CASE("a login no verifier accepts is refused; a chain with stages but no verifier does not start") {
  SECTION("refused") {
    fixture f;
    f.login_taker();
    scripted::script shrug;  // a verifier that never accepts
    shrug.stages = {login_stage::verify};
    f.add("shrug", shrug);
    f.h.start();
    auto c = f.h.connect();
    CHECK(f.h.send(c, "PASS sample") == "-ERR [AUTH] invalid login\r\n");
    CHECK(f.seen == journal{"taker: PASS", "shrug: verify", "shrug: undo verify"});
    CHECK(c->state() == pop3_state::authorization);
  }
  SECTION("no verifier at all: refused, closed") {
    fixture f;
    f.login_taker();
    f.h.start();
    auto c = f.h.connect();
    CHECK(f.h.send(c, "PASS sample") == "-ERR [AUTH] invalid login\r\n");
  }
  SECTION("stages without a verifier: a configuration error") {
    fixture f;
    f.login_taker();
    scripted::script policy;
    policy.stages = {login_stage::authorize};
    f.add("policy", policy);
    REQUIRE_THROWS_WITH(f.h.start(), Catch::Contains("no instance of the chain verifies them"));
  }
}

TEST_CASE("every way of logging in passes every stage: a SASL login cannot skip a policy") {
  fixture f;
  scripted::script policy;  // placed first, where a command-based policy would be bypassed
  policy.stages = {login_stage::authorize};
  policy.on_stages = {{login_stage::authorize, act::refuse}};
  f.add("policy", policy);
  scripted::script sasl;
  sasl.specs = {{"AUTH", pop3_state::authorization}};
  sasl.verbs = {{"AUTH", act::login}};
  sasl.mechanism = "PLAIN";
  f.add("sasl", sasl);
  f.login_taker();
  f.verifier();
  f.h.start();
  auto c = f.h.connect();
  CHECK(f.h.send(c, "AUTH sample") == "-ERR [AUTH] policy refuses\r\n");
  CHECK(f.h.send(c, "PASS sample") == "-ERR [AUTH] policy refuses\r\n");
  CHECK(f.seen == journal{"sasl: AUTH", "verifier: verify", "policy: authorize", "verifier: undo verify",
                          "taker: PASS", "verifier: verify", "policy: authorize", "verifier: undo verify"});
}

TEST_CASE("a stage that throws refuses the login with [SYS/TEMP]; one past its time limit ends the session") {
  SECTION("throws") {
    fixture f;
    f.login_taker();
    scripted::script bad;
    bad.stages = {login_stage::verify};
    bad.on_stages = {{login_stage::verify, act::fail}};
    f.add("bad", bad);
    f.h.start();
    auto c = f.h.connect();
    CHECK(f.h.send(c, "PASS sample") == "-ERR [SYS/TEMP] internal server error, try again later\r\n");
    CHECK(c->state() == pop3_state::authorization);
    CHECK_FALSE(c->closed());
  }
  SECTION("too late") {
    fixture f;
    f.h.timeout = std::chrono::milliseconds(60);
    f.login_taker();
    f.verifier();
    scripted::script slow;
    slow.stages = {login_stage::lock};
    slow.on_stages = {{login_stage::lock, act::hang}};
    f.add("slow", slow);
    f.h.start();
    auto c = f.h.connect();
    CHECK(f.h.send(c, "PASS sample") == "-ERR [SYS/TEMP] the server took too long, try again later\r\n");
    CHECK(c->finished());
    CHECK(f.seen == journal{"taker: PASS", "verifier: verify", "slow: lock", "slow: lock done",
                            "verifier: undo verify"});
    CHECK(c->login() == nullptr);
  }
}

TEST_CASE("the open stage sees the maildrop; login() is null until every stage has passed") {
  fixture f;
  f.login_taker();
  f.verifier();
  auto& spool = f.h.add<fake_spool>("finchley", "{}", "finchley");
  spool.store->require_lock = false;
  const std::uint64_t size = spool.add("u1", 1, "Subject: x\r\n\r\nbody\r\n");
  scripted::script watcher;
  watcher.stages = {login_stage::lock, login_stage::open};
  auto& w = f.add("watcher", watcher);
  f.h.start();
  auto c = f.h.connect();
  CHECK(f.h.send(c, "PASS sample") == "+OK sample has 1 message (" + std::to_string(size) + " octets)\r\n");
  CHECK(w.maildrop_seen);
  CHECK(f.seen == journal{"taker: PASS", "verifier: verify", "watcher: lock", "watcher: open"});  // never "(logged in!)"
  REQUIRE(c->maildrop());
  CHECK(c->maildrop()->count() == 1);
}

TEST_CASE("STLS: once its +OK is out, every instance's session state is gone (RFC 2595)") {
  fixture f;
  f.add("memory", {{{"XSET", everywhere}, {"XGET", everywhere}}, {{"XSET", act::remember}, {"XGET", act::recall}}});
  f.add("stls", {{{"STLS", pop3_state::authorization}}, {{"STLS", act::start_tls}}});
  f.h.start();
  auto c = f.h.connect();
  c->connection().tls_offered = true;
  CHECK(c->session().can_start_tls());
  CHECK(f.h.send(c, "XSET") == "+OK\r\n");
  CHECK(f.h.send(c, "XGET") == "+OK yes\r\n");
  CHECK(f.h.send(c, "STLS") == "+OK\r\n");
  CHECK(c->connection().tls);
  CHECK_FALSE(c->session().can_start_tls());
  CHECK(f.h.send(c, "XGET") == "+OK no\r\n");
}

TEST_CASE("a body already dot-stuffed goes out as it is, and only ends") {
  fixture f;
  f.add("relay", {{{"XRELAY", everywhere}}, {{"XRELAY", act::stuffed_body}}});
  f.h.start();
  auto c = f.h.connect();
  // Read in pieces of 7 octets; not stuffed again; the last line ("."
  // without its CRLF) gets its CRLF before the end line.
  CHECK(f.h.send(c, "XRELAY") == "+OK relayed\r\na\r\n..b\r\n.\r\n.\r\n");
}

TEST_CASE("end_login: the logout event, then AUTHORIZATION again with nothing of the login but the slots") {
  fixture f;
  f.login_taker();
  f.verifier();
  f.add("memory", {{{"XSET", everywhere}, {"XGET", everywhere}}, {{"XSET", act::remember}, {"XGET", act::recall}}});
  f.add("reset", {{{"XRESET", pop3_state::transaction}}, {{"XRESET", act::end_login}}, {event::logout, event::quit}});
  auto& spool = f.h.add<fake_spool>("finchley", "{}", "finchley");
  spool.store->require_lock = false;
  spool.add("u1", 1, "Subject: x\r\n\r\nbody\r\n");
  f.h.start();
  auto c = f.h.connect();
  CHECK(f.h.send(c, "XSET") == "+OK\r\n");
  CHECK(f.h.send(c, "PASS fred+sample").rfind("+OK fred+sample has 1 message", 0) == 0);
  c->marks().mark_deleted(0);
  CHECK(f.h.send(c, "XRESET") == "+OK reset\r\n");
  CHECK(f.saw("reset: event logout"));
  CHECK(c->state() == pop3_state::authorization);
  CHECK(c->login() == nullptr);
  CHECK(c->maildrop() == nullptr);
  CHECK(c->marks().deleted_count() == 0);
  CHECK(f.h.send(c, "XGET") == "+OK yes\r\n");
  CHECK(f.h.send(c, "XRESET") == "-ERR command not valid in the AUTHORIZATION state\r\n");
  // A new login, afresh.
  CHECK(f.h.send(c, "PASS sample").rfind("+OK sample has 1 message", 0) == 0);
  CHECK(c->login()->display() == "sample");
}
