// The chain's contract: order, pass/answer, state checks, and the guards
// (time limit, exceptions) that never let a command through.

#include "chain.hpp"
#include "support/fakes.hpp"

#include <catch2/catch.hpp>

using namespace sdps;
using sdps::testing::fake_session;
using sdps::testing::run;

namespace {

enum class behaviour { pass, answer, refuse, async_answer, hang, throw_error };

class scripted final : public sdps::module {
 public:
  scripted(std::string name, behaviour b, std::vector<command_spec> specs, int* calls)
      : name_(std::move(name)), behaviour_(b), specs_(std::move(specs)), calls_(calls) {}
  std::vector<command_spec> commands() const override { return specs_; }
  awaitable<verdict> on_command(session& s, const command& cmd) override {
    ++*calls_;
    switch (behaviour_) {
      case behaviour::pass: co_return verdict::next();
      case behaviour::answer: co_return verdict::answer(response::ok(name_ + " " + cmd.name + " " + cmd.argument));
      case behaviour::refuse: co_return verdict::answer(response::err(name_ + " says no"));
      case behaviour::async_answer: {
        asio::steady_timer t(s.get_executor(), std::chrono::milliseconds(20));
        co_await t.async_wait(asio::use_awaitable);
        co_return verdict::answer(response::ok(name_ + " later"));
      }
      case behaviour::hang: {
        asio::steady_timer t(s.get_executor(), std::chrono::seconds(2));
        co_await t.async_wait(asio::use_awaitable);
        co_return verdict::answer(response::ok(name_ + " far too late"));
      }
      case behaviour::throw_error: throw std::runtime_error("boom");
    }
    co_return verdict::next();
  }
  awaitable<verdict> on_event(session&, event e) override {
    if (e == event::connect && behaviour_ == behaviour::refuse)
      co_return verdict::answer(response::err("go away"));
    co_return verdict::next();
  }

 private:
  std::string name_;
  behaviour behaviour_;
  std::vector<command_spec> specs_;
  int* calls_;
};

struct fixture {
  asio::io_context io;
  std::shared_ptr<fake_session> session = std::make_shared<fake_session>(io);
  core::stderr_log log{log_level::error, "test"};
  std::vector<std::unique_ptr<core::module_instance>> links;
  std::vector<std::unique_ptr<int>> calls;

  int& add(const std::string& name, behaviour b, std::vector<command_spec> specs,
           std::chrono::milliseconds timeout = std::chrono::seconds(5)) {
    calls.push_back(std::make_unique<int>(0));
    auto l = std::make_unique<core::module_instance>();
    l->module = "scripted";
    l->instance = name;
    l->timeout = timeout;
    l->object = std::make_unique<scripted>(name, b, specs, calls.back().get());
    l->specs = l->object->commands();
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

TEST_CASE("a module past its time limit gets -ERR [SYS/TEMP] and the command goes no further") {
  fixture f;
  f.add("stuck", behaviour::hang, {{"PASS", everywhere}}, std::chrono::milliseconds(50));
  int& after = f.add("after", behaviour::answer, {{"PASS", everywhere}});
  const auto start = std::chrono::steady_clock::now();
  core::chain c(std::move(f.links));
  auto result = run(f.io, c.dispatch(f.session, command{"PASS", "secret"}));
  CHECK_FALSE(result.reply.positive);
  CHECK(result.reply.text.rfind("[SYS/TEMP]", 0) == 0);
  CHECK(after == 0);
  // run() only returns when the late coroutine has finished too: its answer was dropped.
  CHECK(std::chrono::steady_clock::now() - start >= std::chrono::milliseconds(50));
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
  auto answer = run(f.io, c.fire(f.session, event::connect));
  REQUIRE(answer);
  CHECK_FALSE(answer->reply.positive);
  CHECK(answer->reply.text == "go away");
}

TEST_CASE("events other than connect ignore answers and reach every module") {
  fixture f;
  f.add("policy", behaviour::refuse, {});
  core::chain c(std::move(f.links));
  CHECK_FALSE(run(f.io, c.fire(f.session, event::disconnect)).has_value());
}
