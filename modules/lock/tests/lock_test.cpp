// The lock module in the embedded chain's shape: auth, lock, two spools,
// merge, commands. Every lock and unlock lands in one journal.

#include "commands.hpp"
#include "support/harness.hpp"
#include "lock.hpp"
#include "merge.hpp"

#include <catch2/catch.hpp>

using namespace sdps;
using namespace sdps::testing;

namespace {

/// Refuses PASS, as a module after lock might (a later check failing).
class refuse_pass final : public sdps::module {
 public:
  explicit refuse_pass(module_config&) {}
  std::vector<command_spec> commands() const override {
    return {{"PASS", static_cast<state_mask>(pop3_state::authorization)}};
  }
  awaitable<verdict> on_command(session&, const command&) override {
    if (!refusing) co_return verdict::next();
    co_return verdict::answer(response::err("[SYS/TEMP] refused by a later module"));
  }
  bool refusing = true;
};

struct embedded {
  std::shared_ptr<lock_journal> journal = std::make_shared<lock_journal>();
  harness h;
  lock::lock_module* locker = nullptr;
  fake_spool* finchley = nullptr;
  fake_spool* docklands = nullptr;
  refuse_pass* refuser = nullptr;

  /// `refuser_too`: a module after merge that refuses PASS.
  explicit embedded(const std::string& lock_yaml = "{}", bool refuser_too = false) {
    h.add<fake_auth>("auth");
    locker = &h.add<lock::lock_module>("lock", lock_yaml);
    // Chain order finchley, docklands; locking order must still be by name.
    finchley = &h.add<fake_spool>("finchley", "{}", "finchley", journal);
    docklands = &h.add<fake_spool>("docklands", "{}", "docklands", journal);
    finchley->add("f1", 100, "Subject: f\r\n\r\nf\r\n");
    docklands->add("d1", 50, "Subject: d\r\n\r\nd\r\n");
    h.add<merge::merge_module>("merge");
    if (refuser_too) refuser = &h.add<refuse_pass>("refuser");
    h.add<commands::commands_module>("commands");
    h.start();
  }
  std::string login(const std::shared_ptr<fake_session>& s, const std::string& user = "sample") {
    REQUIRE(h.send(s, "USER " + user) == "+OK send PASS\r\n");
    return h.send(s, "PASS pw");
  }
  std::vector<std::string> events() { return std::exchange(journal->events, {}); }
};

}  // namespace

TEST_CASE("locks are taken in punt-name order, whatever the chain order", "[lock]") {
  embedded t;
  REQUIRE(t.locker->order().size() == 2);
  REQUIRE(t.locker->order()[0]->punt() == "docklands");
  REQUIRE(t.locker->order()[1]->punt() == "finchley");
  auto s = t.h.connect();
  REQUIRE(t.login(s) == "+OK sample has 2 messages (104 octets)\r\n");
  // Locks first (sorted), then merge opens the snapshots (in chain order).
  REQUIRE(t.events() ==
          std::vector<std::string>{"lock docklands #1", "lock finchley #1", "open finchley #1", "open docklands #1"});
}

TEST_CASE("a second session of the host gets [IN-USE] until the first ends", "[lock]") {
  embedded t;
  auto first = t.h.connect();
  auto second = t.h.connect();
  REQUIRE(t.login(first).rfind("+OK sample has 2 messages", 0) == 0);
  t.events();
  REQUIRE(t.login(second) == "-ERR [IN-USE] maildrop already locked\r\n");
  REQUIRE(second->state() == pop3_state::authorization);
  // Nothing was acquired (docklands, first in order, was in use).
  REQUIRE(t.events() == std::vector<std::string>{"in_use docklands #2"});
  // The first session's QUIT gives the locks back before its reply.
  REQUIRE(t.h.send(first, "QUIT").rfind("+OK", 0) == 0);
  REQUIRE(t.finchley->store->holders.count(1) == 0);
  REQUIRE(t.events() == std::vector<std::string>{"unlock finchley #1", "unlock docklands #1"});
  t.h.disconnect(first);
  REQUIRE(t.events().empty());
  REQUIRE(t.h.send(second, "PASS pw").rfind("+OK sample has 2 messages", 0) == 0);
}

TEST_CASE("in_use on a later punt releases the locks already taken", "[lock]") {
  embedded t;
  t.finchley->store->other_holder = 99;  // another front end's session
  auto s = t.h.connect();
  REQUIRE(t.login(s) == "-ERR [IN-USE] maildrop already locked\r\n");
  REQUIRE(t.events() == std::vector<std::string>{"lock docklands #1", "in_use finchley #1", "unlock docklands #1"});
  REQUIRE(t.docklands->store->holders.empty());
  // Once the other session has gone, the same connection may try again.
  t.finchley->store->other_holder.reset();
  REQUIRE(t.h.send(s, "PASS pw") == "+OK sample has 2 messages (104 octets)\r\n");
  REQUIRE(t.docklands->store->holders.count(1) == 1);
  REQUIRE(t.finchley->store->holders.count(1) == 1);
}

TEST_CASE("an unavailable punt is skipped and logged; the rest is served", "[lock]") {
  SECTION("lock says unavailable") {
    embedded t;
    t.docklands->store->down = true;
    auto s = t.h.connect();
    REQUIRE(t.login(s) == "+OK sample has 1 message (52 octets); mail on docklands is unavailable\r\n");
    REQUIRE(t.h.log_of("lock").contains("punt docklands is unavailable"));
    REQUIRE(t.events() ==
            std::vector<std::string>{"unavailable docklands #1", "lock finchley #1", "open finchley #1", "open docklands #1"});
  }
  SECTION("lock throws spool_error") {
    embedded t;
    t.finchley->store->lock_throws = true;
    auto s = t.h.connect();
    // Without its lock, finchley's open refuses: merge leaves it out.
    REQUIRE(t.login(s) == "+OK sample has 1 message (52 octets); mail on finchley is unavailable\r\n");
    REQUIRE(t.h.log_of("lock").contains("finchley: lock failed"));
  }
  SECTION("every punt unavailable") {
    embedded t;
    t.docklands->store->down = true;
    t.finchley->store->down = true;
    auto s = t.h.connect();
    REQUIRE(t.login(s) == "-ERR [SYS/TEMP] your mail cannot be read just now, try again later\r\n");
    REQUIRE(s->state() == pop3_state::authorization);
  }
}

TEST_CASE("locks of a PASS refused after lock are released before the refusal is sent", "[lock]") {
  embedded t("{}", true);
  auto s = t.h.connect();
  REQUIRE(t.login(s) == "-ERR [SYS/TEMP] refused by a later module\r\n");
  // command_failed reached lock before the reply was rendered.
  REQUIRE(t.events() == std::vector<std::string>{"lock docklands #1", "lock finchley #1", "open finchley #1",
                                                 "open docklands #1", "unlock finchley #1", "unlock docklands #1"});
  REQUIRE(t.docklands->store->holders.empty());
  REQUIRE(t.finchley->store->holders.empty());
  SECTION("another PASS starts afresh") {
    t.refuser->refusing = false;
    t.finchley->add("f2", 300, "Subject: g\r\n\r\ng\r\n");
    REQUIRE(t.h.send(s, "PASS pw") == "+OK sample has 3 messages (156 octets)\r\n");
    REQUIRE(t.events() == std::vector<std::string>{"lock docklands #1", "lock finchley #1", "open finchley #1",
                                                   "open docklands #1"});
  }
  SECTION("QUIT and disconnect have nothing left to release") {
    REQUIRE(t.h.send(s, "QUIT") == "+OK pop3.test POP3 server signing off\r\n");
    t.h.disconnect(s);
    REQUIRE(t.events().empty());
  }
}

TEST_CASE("a failed password takes no lock", "[lock]") {
  embedded t;
  auto s = t.h.connect();
  REQUIRE(t.h.send(s, "USER sample") == "+OK send PASS\r\n");
  REQUIRE(t.h.send(s, "PASS nope") == "-ERR [AUTH] invalid password\r\n");
  REQUIRE(t.events().empty());
}

TEST_CASE("a lock past the time limit ends the session and is released once it arrives", "[lock][timeout]") {
  std::shared_ptr<lock_journal> journal = std::make_shared<lock_journal>();
  harness h;
  h.timeout = std::chrono::milliseconds(50);
  h.add<fake_auth>("auth");
  h.add<lock::lock_module>("lock");
  auto& finchley = h.add<fake_spool>("finchley", "{}", "finchley", journal);
  h.add<merge::merge_module>("merge");
  h.add<commands::commands_module>("commands");
  h.start();
  finchley.store->lock_delay = std::chrono::milliseconds(300);
  auto s = h.connect();
  REQUIRE(h.send(s, "USER sample") == "+OK send PASS\r\n");
  REQUIRE(h.send(s, "PASS pw") == "-ERR [SYS/TEMP] the server took too long, try again later\r\n");
  REQUIRE(s->closed);
  REQUIRE(journal->events.empty());  // the lock has not arrived yet
  // The disconnect event waits for the late lock(), then releases it.
  h.disconnect(s);
  REQUIRE(journal->events == std::vector<std::string>{"lock finchley #1", "unlock finchley #1"});
  REQUIRE(finchley.store->holders.empty());
}

TEST_CASE("lock configuration", "[lock][config]") {
  SECTION("punts: limits and orders the locks") {
    auto journal = std::make_shared<lock_journal>();
    harness h;
    h.add<fake_auth>("auth");
    auto& locker = h.add<lock::lock_module>("lock", "punts: [finchley]");
    auto& f = h.add<fake_spool>("finchley", "{}", "finchley", journal);
    auto& d = h.add<fake_spool>("docklands", "{}", "docklands", journal);
    d.store->require_lock = false;
    (void)f;
    h.add<merge::merge_module>("merge");
    h.add<commands::commands_module>("commands");
    h.start();
    REQUIRE(locker.order().size() == 1);
    auto s = h.connect();
    h.send(s, "USER sample");
    REQUIRE(h.send(s, "PASS pw") == "+OK sample has 0 messages (0 octets)\r\n");
    REQUIRE(journal->events == std::vector<std::string>{"lock finchley #1", "open finchley #1", "open docklands #1"});
  }
  SECTION("an unknown punt") {
    harness h;
    h.add<lock::lock_module>("lock", "punts: [finchley, battersea]");
    h.add<fake_spool>("finchley", "{}", "finchley");
    REQUIRE_THROWS_WITH(h.start(), Catch::Contains("no spool instance serves punt 'battersea'"));
  }
  SECTION("an empty list") {
    harness h;
    REQUIRE_THROWS_WITH(h.add<lock::lock_module>("lock", "punts: []"), Catch::Contains("at least one punt"));
  }
  SECTION("no spool at all") {
    harness h;
    h.add<lock::lock_module>("lock");
    REQUIRE_THROWS_WITH(h.start(), Catch::Contains(spool::service_id));
  }
  SECTION("two spools claiming one punt") {
    harness h;
    h.add<lock::lock_module>("lock");
    h.add<fake_spool>("finchley", "{}", "finchley");
    h.add<fake_spool>("finchley-again", "{}", "finchley");
    REQUIRE_THROWS_WITH(h.start(), Catch::Contains("both serve punt 'finchley'"));
  }
}
