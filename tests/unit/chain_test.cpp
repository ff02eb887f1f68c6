// The chain's contract: order, pass/answer, state checks, the guards
// (time limit, exceptions) that never let a command through, and
// command_failed for the instances that passed a refused command on.

#include "chain.hpp"
#include "support/fakes.hpp"

#include <catch2/catch.hpp>

using namespace sdps;
using sdps::testing::fake_session;
using sdps::testing::run;

namespace {

enum class behaviour { pass, answer, refuse, async_answer, hang, throw_error, hang_at_events };

/// Every call any scripted module received and finished, in order:
/// "a: NOOP", "a: NOOP done", "b: event command_failed", ...
using journal = std::vector<std::string>;

class scripted final : public sdps::module {
 public:
  scripted(std::string name, behaviour b, std::vector<command_spec> specs, int* calls, journal* seen,
           event_set events = event_set::all())
      : name_(std::move(name)), behaviour_(b), specs_(std::move(specs)), calls_(calls), seen_(seen), events_(events) {}
  std::vector<command_spec> commands() const override { return specs_; }
  event_set events() const override { return events_; }
  awaitable<verdict> on_command(session& s, const command& cmd) override {
    ++*calls_;
    switch (behaviour_) {
      case behaviour::pass:
      case behaviour::hang_at_events: co_return verdict::next();
      case behaviour::answer: co_return verdict::answer(response::ok(name_ + " " + cmd.name + " " + cmd.argument));
      case behaviour::refuse: co_return verdict::answer(response::err(name_ + " says no"));
      case behaviour::async_answer: {
        asio::steady_timer t(s.get_executor(), std::chrono::milliseconds(20));
        co_await t.async_wait(asio::use_awaitable);
        co_return verdict::answer(response::ok(name_ + " later"));
      }
      case behaviour::hang: {
        seen_->push_back(name_ + ": " + cmd.name);
        asio::steady_timer t(s.get_executor(), std::chrono::milliseconds(300));
        co_await t.async_wait(asio::use_awaitable);
        seen_->push_back(name_ + ": " + cmd.name + " done");
        co_return verdict::answer(response::ok(name_ + " far too late"));
      }
      case behaviour::throw_error: throw std::runtime_error("boom");
    }
    co_return verdict::next();
  }
  awaitable<verdict> on_event(session& s, event e) override {
    seen_->push_back(name_ + ": event " + to_string(e));
    if (behaviour_ == behaviour::hang_at_events) {
      asio::steady_timer t(s.get_executor(), std::chrono::milliseconds(300));
      co_await t.async_wait(asio::use_awaitable);
      seen_->push_back(name_ + ": event " + to_string(e) + " done");
    }
    if (e == event::connect && behaviour_ == behaviour::refuse)
      co_return verdict::answer(response::err("go away"));
    co_return verdict::next();
  }

 private:
  std::string name_;
  behaviour behaviour_;
  std::vector<command_spec> specs_;
  int* calls_;
  journal* seen_;
  event_set events_;
};

struct fixture {
  asio::io_context io;
  std::shared_ptr<fake_session> session = std::make_shared<fake_session>(io);
  core::stderr_log log{log_level::error, "test"};
  std::vector<std::unique_ptr<core::module_instance>> links;
  std::vector<std::unique_ptr<int>> calls;
  journal seen;

  int& add(const std::string& name, behaviour b, std::vector<command_spec> specs,
           std::chrono::milliseconds timeout = std::chrono::seconds(5), event_set events = event_set::all()) {
    calls.push_back(std::make_unique<int>(0));
    auto l = std::make_unique<core::module_instance>();
    l->module = "scripted";
    l->instance = name;
    l->timeout = timeout;
    l->object = std::make_unique<scripted>(name, b, specs, calls.back().get(), &seen, events);
    l->specs = l->object->commands();
    l->events = l->object->events();
    l->log = log.derive(name);
    links.push_back(std::move(l));
    return *calls.back();
  }
  response send(const std::string& name, const std::string& argument = {}) {
    core::chain c(std::move(links));
    auto result = run(io, c.dispatch(session, command{name, argument}));
    return std::move(result.reply);
  }
};

const state_mask everywhere = any_state;

}  // namespace

TEST_CASE("the first module that answers ends the chain; passing lets the next see it") {
  fixture f;
  int& first = f.add("first", behaviour::pass, {{"NOOP", everywhere}});
  int& second = f.add("second", behaviour::answer, {{"NOOP", everywhere}});
  int& third = f.add("third", behaviour::answer, {{"NOOP", everywhere}});
  auto r = f.send("NOOP", "a b");
  CHECK(r.positive);
  CHECK(r.text == "second NOOP a b");
  CHECK(first == 1);
  CHECK(second == 1);
  CHECK(third == 0);
}

TEST_CASE("a module stops a command by answering -ERR") {
  fixture f;
  f.add("policy", behaviour::refuse, {{"RETR", everywhere}});
  int& later = f.add("later", behaviour::answer, {{"RETR", everywhere}});
  auto r = f.send("RETR", "1");
  CHECK_FALSE(r.positive);
  CHECK(r.text == "policy says no");
  CHECK(later == 0);
}

TEST_CASE("only modules that declared the command see it") {
  fixture f;
  int& other = f.add("other", behaviour::answer, {{"STAT", everywhere}});
  f.add("mine", behaviour::answer, {{"LIST", everywhere}});
  CHECK(f.send("LIST").text == "mine LIST ");
  CHECK(other == 0);
}

TEST_CASE("an undeclared verb is unknown; a declared one in the wrong state is refused") {
  fixture f;
  int& calls = f.add("tx", behaviour::answer, {{"RETR", static_cast<state_mask>(pop3_state::transaction)}});
  SECTION("unknown") { CHECK(f.send("FROB").text == "unknown command"); }
  SECTION("wrong state") {
    auto r = f.send("RETR", "1");
    CHECK_FALSE(r.positive);
    CHECK(r.text == "command not valid in the AUTHORIZATION state");
    CHECK(calls == 0);
  }
}

TEST_CASE("declared but passed by everyone is -ERR, never silence") {
  fixture f;
  f.add("a", behaviour::pass, {{"NOOP", everywhere}});
  auto r = f.send("NOOP");
  CHECK_FALSE(r.positive);
  CHECK(r.text == "command not available");
}

TEST_CASE("a wildcard module sees every command, known or not, in chain order") {
  fixture f;
  int& watcher = f.add("watcher", behaviour::pass, {{"*", everywhere}});
  f.add("noop", behaviour::answer, {{"NOOP", everywhere}});
  f.send("NOOP");
  CHECK(watcher == 1);
  fixture g;
  g.add("gate", behaviour::refuse, {{"*", everywhere}});
  CHECK(g.send("ANYTHING").text == "gate says no");
}

TEST_CASE("an asynchronous answer is awaited") {
  fixture f;
  f.add("slow", behaviour::async_answer, {{"NOOP", everywhere}});
  CHECK(f.send("NOOP").text == "slow later");
}

/// Runs `op` on `io` and returns its result as soon as it completes, with
/// whatever else it started (a late call) still queued.
template <typename T>
T run_until_done(asio::io_context& io, awaitable<T> op) {
  std::optional<T> result;
  std::exception_ptr error;
  asio::co_spawn(io, std::move(op), [&](std::exception_ptr e, T value) {
    error = e;
    if (!e) result.emplace(std::move(value));
    io.stop();
  });
  io.restart();
  io.run();
  if (error) std::rethrow_exception(error);
  REQUIRE(result);
  return std::move(*result);
}

awaitable<bool> wait_for(std::shared_ptr<core::late_call> late) {
  co_await late->wait();
  co_return true;
}

TEST_CASE("a call past its time limit ends the session: -ERR [SYS/TEMP] with close, the call still running") {
  fixture f;
  f.add("stuck", behaviour::hang, {{"PASS", everywhere}}, std::chrono::milliseconds(50));
  int& after = f.add("after", behaviour::answer, {{"PASS", everywhere}});
  const auto start = std::chrono::steady_clock::now();
  core::chain c(std::move(f.links));
  auto result = run_until_done(f.io, c.dispatch(f.session, command{"PASS", "secret"}));
  CHECK(std::chrono::steady_clock::now() - start < std::chrono::milliseconds(250));
  CHECK_FALSE(result.reply.positive);
  CHECK(result.reply.text.rfind("[SYS/TEMP]", 0) == 0);
  CHECK(result.reply.close);
  CHECK(after == 0);
  REQUIRE(result.late);
  CHECK_FALSE(result.late->finished());
  CHECK(f.seen == journal{"stuck: PASS"});
  // The session waits for it before anything else reaches a module.
  run_until_done(f.io, wait_for(result.late));
  CHECK(result.late->finished());
  CHECK(f.seen == journal{"stuck: PASS", "stuck: PASS done"});
  CHECK(std::chrono::steady_clock::now() - start >= std::chrono::milliseconds(300));
  run(f.io, c.fire(f.session, event::disconnect));
  CHECK(f.seen.back() == "after: event disconnect");
}

TEST_CASE("a command refused after modules passed it on: command_failed to those, latest first, before the reply") {
  fixture f;
  f.add("early", behaviour::pass, {{"PASS", everywhere}});
  f.add("other", behaviour::pass, {{"USER", everywhere}});
  f.add("middle", behaviour::pass, {{"PASS", everywhere}});
  f.add("judge", behaviour::refuse, {{"PASS", everywhere}});
  f.add("never", behaviour::pass, {{"PASS", everywhere}});
  core::chain c(std::move(f.links));
  SECTION("refused") {
    auto result = run(f.io, c.dispatch(f.session, command{"PASS", "x"}));
    CHECK(result.reply.text == "judge says no");
    CHECK_FALSE(result.late);
    CHECK(f.seen == journal{"middle: event command_failed", "early: event command_failed"});
  }
  SECTION("passed on by everyone: -ERR, so command_failed too") {
    auto result = run(f.io, c.dispatch(f.session, command{"USER", "x"}));
    CHECK(result.reply.text == "command not available");  // passed by everyone: -ERR too
    CHECK(f.seen == journal{"other: event command_failed"});
  }
}

TEST_CASE("command_failed follows an exception and an unanswered command, never a +OK") {
  fixture f;
  f.add("early", behaviour::pass, {{"PASS", everywhere}, {"NOOP", everywhere}, {"STAT", everywhere}});
  f.add("broken", behaviour::throw_error, {{"PASS", everywhere}});
  f.add("ok", behaviour::answer, {{"NOOP", everywhere}});
  core::chain c(std::move(f.links));
  CHECK(run(f.io, c.dispatch(f.session, command{"PASS", "x"})).reply.text.rfind("[SYS/TEMP]", 0) == 0);
  CHECK(f.seen == journal{"early: event command_failed"});
  f.seen.clear();
  CHECK(run(f.io, c.dispatch(f.session, command{"NOOP", ""})).reply.positive);
  CHECK(f.seen.empty());
  CHECK(run(f.io, c.dispatch(f.session, command{"STAT", ""})).reply.text == "command not available");
  CHECK(f.seen == journal{"early: event command_failed"});
}

TEST_CASE("an event handler past its time limit stops the event; at disconnect it is waited for") {
  fixture f;
  f.add("first", behaviour::hang_at_events, {}, std::chrono::milliseconds(50));
  f.add("second", behaviour::pass, {});
  core::chain c(std::move(f.links));
  SECTION("authenticated") {
    auto outcome = run_until_done(f.io, c.fire(f.session, event::authenticated));
    REQUIRE(outcome.late);
    CHECK_FALSE(outcome.answer);
    CHECK(f.seen == journal{"first: event authenticated"});
    run_until_done(f.io, wait_for(outcome.late));
    CHECK(f.seen == journal{"first: event authenticated", "first: event authenticated done"});
  }
  SECTION("connect: the greeting becomes -ERR [SYS/TEMP] with close") {
    auto outcome = run_until_done(f.io, c.fire(f.session, event::connect));
    REQUIRE(outcome.late);
    REQUIRE(outcome.answer);
    CHECK_FALSE(outcome.answer->reply.positive);
    CHECK(outcome.answer->reply.close);
    run_until_done(f.io, wait_for(outcome.late));
  }
  SECTION("disconnect") {
    auto outcome = run_until_done(f.io, c.fire(f.session, event::disconnect));
    CHECK_FALSE(outcome.late);
    CHECK(f.seen == journal{"first: event disconnect", "first: event disconnect done", "second: event disconnect"});
  }
}

TEST_CASE("a module that throws never lets the command through") {
  fixture f;
  f.add("broken", behaviour::throw_error, {{"PASS", everywhere}});
  int& after = f.add("after", behaviour::answer, {{"PASS", everywhere}});
  auto r = f.send("PASS", "x");
  CHECK_FALSE(r.positive);
  CHECK(r.text.rfind("[SYS/TEMP]", 0) == 0);
  CHECK(after == 0);
}

TEST_CASE("a connect answer replaces the greeting") {
  fixture f;
  f.add("policy", behaviour::refuse, {});
  core::chain c(std::move(f.links));
  auto outcome = run(f.io, c.fire(f.session, event::connect));
  REQUIRE(outcome.answer);
  CHECK_FALSE(outcome.answer->reply.positive);
  CHECK(outcome.answer->reply.text == "go away");
}

TEST_CASE("events other than connect ignore answers and reach every module") {
  fixture f;
  f.add("policy", behaviour::refuse, {});
  core::chain c(std::move(f.links));
  auto outcome = run(f.io, c.fire(f.session, event::disconnect));
  CHECK_FALSE(outcome.answer.has_value());
  CHECK_FALSE(outcome.late);
}

TEST_CASE("an instance hears only the events it names in events()") {
  fixture f;
  const auto limit = std::chrono::seconds(5);
  f.add("all", behaviour::pass, {{"PASS", everywhere}});
  f.add("quiet", behaviour::pass, {{"PASS", everywhere}}, limit, event_set{});
  f.add("ending", behaviour::pass, {{"PASS", everywhere}}, limit, {event::quit, event::disconnect});
  f.add("undoing", behaviour::pass, {{"PASS", everywhere}}, limit, {event::command_failed});
  f.add("refusing", behaviour::refuse, {{"PASS", everywhere}}, limit, event_set{});
  core::chain c(std::move(f.links));
  for (const event e : {event::connect, event::authenticated, event::quit, event::disconnect})
    run(f.io, c.fire(f.session, e));
  CHECK(f.seen == journal{"all: event connect", "all: event authenticated", "all: event quit", "ending: event quit",
                          "all: event disconnect", "ending: event disconnect"});
  // command_failed goes to those of the passers that name it, latest first.
  f.seen.clear();
  auto result = run(f.io, c.dispatch(f.session, command{"PASS", "secret"}));
  CHECK_FALSE(result.reply.positive);
  CHECK(f.seen == journal{"undoing: event command_failed", "all: event command_failed"});
  CHECK(event_set::all().contains(event::command_failed));
  CHECK_FALSE(event_set{}.contains(event::connect));
}
