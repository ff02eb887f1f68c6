// The lock module in the embedded chain's shape: auth, lock, two spools,
// merge, commands, run through the core's session engine. Every prepare,
// lock, unlock and open lands in one journal.

#include "commands.hpp"
#include "support/harness.hpp"
#include "lock.hpp"
#include "merge.hpp"

#include <catch2/catch.hpp>

using namespace sdps;
using namespace sdps::testing;

namespace {

using events = std::vector<std::string>;

/// Takes part in one login stage and refuses every login that reaches it
/// while `refusing`: a site policy (authorize), another lock (lock), a
/// check on the open maildrop (open).
class refuse_login final : public sdps::module {
 public:
  refuse_login(module_config&, login_stage stage) : stage_(stage) {}
  stage_set login_stages() const override { return {stage_}; }
  awaitable<login_verdict> on_login(session&, login_stage, login_attempt&) override {
    ++calls;
    if (!refusing) co_return login_verdict::proceed();
    co_return login_verdict::refuse(response::err("[SYS/TEMP] refused by a later check"), "refused by a test");
  }
  bool refusing = true;
  int calls = 0;

 private:
  login_stage stage_;
};

/// Passes the authorize stage (before lock) and, when the login is undone
/// (after lock's undo, latest first), notes what had happened by then: the
/// journal, and what the client had been sent.
class undo_witness final : public sdps::module {
 public:
  undo_witness(module_config&, std::shared_ptr<lock_journal> journal) : journal_(std::move(journal)) {}
  stage_set login_stages() const override { return {login_stage::authorize}; }
  void undo_login(session&, login_stage stage) override {
    undone.push_back(stage);
    journal_at_undo = journal_->events;
    if (client) sent_at_undo = client->sent() + client->output();
  }
  memory_transport* client = nullptr;
  std::vector<login_stage> undone;
  std::vector<std::string> journal_at_undo;
  std::string sent_at_undo;

 private:
  std::shared_ptr<lock_journal> journal_;
};

struct embedded {
  std::shared_ptr<lock_journal> journal = std::make_shared<lock_journal>();
  harness h;
  lock::lock_module* locker = nullptr;
  fake_spool* finchley = nullptr;
  fake_spool* docklands = nullptr;
  undo_witness* witness = nullptr;
  refuse_login* refuser = nullptr;

  /// `refuse_in`: a module after merge that refuses every login in that
  /// stage (and a witness of the undo in the authorize stage).
  explicit embedded(const std::string& lock_yaml = "{}", std::optional<login_stage> refuse_in = std::nullopt) {
    h.add<fake_auth>("auth");
    if (refuse_in) witness = &h.add<undo_witness>("witness", "{}", journal);
    locker = &h.add<lock::lock_module>("lock", lock_yaml);
    // Chain order finchley, docklands; locking order must still be by name.
    finchley = &h.add<fake_spool>("finchley", "{}", "finchley", journal);
    docklands = &h.add<fake_spool>("docklands", "{}", "docklands", journal);
    finchley->add("f1", 100, "Subject: f\r\n\r\nf\r\n");
    docklands->add("d1", 50, "Subject: d\r\n\r\nd\r\n");
    h.add<merge::merge_module>("merge");
    if (refuse_in) refuser = &h.add<refuse_login>("refuser", "{}", *refuse_in);
    h.add<commands::commands_module>("commands");
    h.start();
  }
  std::string login(const std::shared_ptr<client>& s, const std::string& user = "sample") {
    REQUIRE(h.send(s, "USER " + user) == "+OK send PASS\r\n");
    return h.send(s, "PASS pw");
  }
  events taken() { return std::exchange(journal->events, {}); }
};

/// A whole login of session #n in the embedded chain: every punt hears
/// first that its lock follows, then the locks in punt-name order, then
/// merge opens the snapshots (in chain order).
events full_login(int n) {
  const std::string id = " #" + std::to_string(n);
  return {"prepare docklands" + id, "prepare finchley" + id, "lock docklands" + id, "lock finchley" + id,
          "open finchley" + id,     "open docklands" + id};
}

}  // namespace

TEST_CASE("every punt is prepared, then locked in punt-name order, whatever the chain order", "[lock]") {
  embedded t;
  REQUIRE(t.locker->order().size() == 2);
  REQUIRE(t.locker->order()[0]->punt() == "docklands");
  REQUIRE(t.locker->order()[1]->punt() == "finchley");
  auto s = t.h.connect();
  REQUIRE(t.login(s) == "+OK sample has 2 messages (104 octets)\r\n");
  REQUIRE(t.taken() == full_login(1));
  REQUIRE(t.finchley->store->prepared == std::vector<std::string>{"sample #1"});
  REQUIRE(t.docklands->store->prepared == std::vector<std::string>{"sample #1"});
}

TEST_CASE("the lock stage works on the login being tried, a user login too", "[lock]") {
  embedded t;
  auto s = t.h.connect();
  REQUIRE(t.login(s, "fred+sample") == "+OK fred+sample has 2 messages (104 octets)\r\n");
  REQUIRE(t.finchley->store->prepared == std::vector<std::string>{"fred+sample #1"});
  REQUIRE(t.docklands->store->prepared == std::vector<std::string>{"fred+sample #1"});
  REQUIRE(s->login()->display() == "fred+sample");
}

TEST_CASE("a second session of the host gets [IN-USE] until the first ends", "[lock]") {
  embedded t;
  auto first = t.h.connect();
  auto second = t.h.connect();
  REQUIRE(t.login(first).rfind("+OK sample has 2 messages", 0) == 0);
  t.taken();
  REQUIRE(t.login(second) == "-ERR [IN-USE] maildrop already locked\r\n");
  REQUIRE(second->state() == pop3_state::authorization);
  REQUIRE(second->login() == nullptr);
  // Nothing was acquired (docklands, first in order, was in use): every
  // punt is released (what prepare() may have started with it), and
  // locked again in order, without prepare(), before the refusal.
  REQUIRE(t.taken() == events{"prepare docklands #2", "prepare finchley #2", "in_use docklands #2",
                              "unlock finchley #2", "unlock docklands #2", "in_use docklands #2",
                              "unlock finchley #2", "unlock docklands #2"});
  REQUIRE(t.h.core_log().contains("login failed: host sample from 192.0.2.7: in use (lock)"));
  // The first session's QUIT gives the locks back before its reply.
  REQUIRE(t.h.send(first, "QUIT").rfind("+OK", 0) == 0);
  REQUIRE(t.finchley->store->holders.count(1) == 0);
  REQUIRE(t.taken() == events{"unlock finchley #1", "unlock docklands #1"});
  t.h.disconnect(first);
  REQUIRE(t.taken().empty());
  // The refused PASS used up its USER (RFC 1939): the client starts again.
  REQUIRE(t.h.send(second, "PASS pw") == "-ERR send USER first\r\n");
  REQUIRE(t.login(second).rfind("+OK sample has 2 messages", 0) == 0);
}

TEST_CASE("in_use on a later punt releases the locks already taken", "[lock]") {
  embedded t;
  t.finchley->store->other_holder = 99;  // another front end's session
  auto s = t.h.connect();
  REQUIRE(t.login(s) == "-ERR [IN-USE] maildrop already locked\r\n");
  REQUIRE(t.taken() == events{"prepare docklands #1", "prepare finchley #1", "lock docklands #1",
                              "in_use finchley #1", "unlock finchley #1", "unlock docklands #1",
                              "lock docklands #1", "in_use finchley #1", "unlock finchley #1",
                              "unlock docklands #1"});
  REQUIRE(t.docklands->store->holders.empty());
  // Once the other session has gone, the same connection may log in again.
  t.finchley->store->other_holder.reset();
  REQUIRE(t.login(s) == "+OK sample has 2 messages (104 octets)\r\n");
  REQUIRE(t.docklands->store->holders.count(1) == 1);
  REQUIRE(t.finchley->store->holders.count(1) == 1);
}

TEST_CASE("a punt in use at the first try is locked again, in order, once everything is released", "[lock]") {
  // Another session holds finchley while it waits for docklands, which
  // this one locked (ahead, as a remote punt does): both would wait until
  // both gave up. Released and taken again in order, one of them wins.
  embedded t;
  t.finchley->store->other_holder = 99;
  t.docklands->store->on_unlock = [&t] { t.finchley->store->other_holder.reset(); };
  auto s = t.h.connect();
  REQUIRE(t.login(s) == "+OK sample has 2 messages (104 octets)\r\n");
  REQUIRE(t.taken() == events{"prepare docklands #1", "prepare finchley #1", "lock docklands #1",
                              "in_use finchley #1", "unlock finchley #1", "unlock docklands #1",
                              "lock docklands #1", "lock finchley #1", "open finchley #1", "open docklands #1"});
  REQUIRE(t.h.log_of("lock").contains("is in use on punt finchley; locking again, one punt after another"));
  REQUIRE(t.finchley->store->holders.count(1) == 1);
  REQUIRE(t.docklands->store->holders.count(1) == 1);
}

TEST_CASE("a prepare() that throws leaves nothing prepared behind", "[lock]") {
  embedded t;
  t.finchley->store->prepare_throws = true;  // after docklands (first by name) was prepared
  auto s = t.h.connect();
  REQUIRE(t.login(s).rfind("-ERR", 0) == 0);
  REQUIRE(t.taken() == events{"prepare docklands #1", "prepare finchley #1", "unlock finchley #1",
                              "unlock docklands #1"});
  REQUIRE(s->login() == nullptr);
}

TEST_CASE("an unavailable punt is skipped and logged; the rest is served", "[lock]") {
  SECTION("lock says unavailable") {
    embedded t;
    t.docklands->store->down = true;
    auto s = t.h.connect();
    REQUIRE(t.login(s) == "+OK sample has 1 message (52 octets); mail on docklands is unavailable\r\n");
    REQUIRE(t.h.log_of("lock").contains("punt docklands is unavailable"));
    REQUIRE(t.taken() == events{"prepare docklands #1", "prepare finchley #1", "unavailable docklands #1",
                                "lock finchley #1", "open finchley #1", "open docklands #1"});
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
    REQUIRE(t.h.core_log().contains("no punt could be read"));
  }
}

TEST_CASE("a login refused after lock has its locks released before the refusal is sent", "[lock]") {
  SECTION("by the open stage") {
    embedded t("{}", login_stage::open);
    auto s = t.h.connect();
    t.witness->client = &s->connection();
    REQUIRE(t.login(s) == "-ERR [SYS/TEMP] refused by a later check\r\n");
    events refused = full_login(1);
    refused.insert(refused.end(), {"unlock finchley #1", "unlock docklands #1"});
    REQUIRE(t.taken() == refused);
    // undo_login reached lock (latest first) while the client had heard
    // nothing yet.
    REQUIRE(t.witness->undone == std::vector<login_stage>{login_stage::authorize});
    REQUIRE(t.witness->journal_at_undo == refused);
    REQUIRE(t.witness->sent_at_undo.empty());
    REQUIRE(t.h.log_of("lock").contains("the login that took them did not succeed"));
    REQUIRE(t.docklands->store->holders.empty());
    REQUIRE(t.finchley->store->holders.empty());
    REQUIRE(s->login() == nullptr);
    REQUIRE(s->maildrop() == nullptr);
    SECTION("another login starts afresh") {
      t.refuser->refusing = false;
      t.finchley->add("f2", 300, "Subject: g\r\n\r\ng\r\n");
      REQUIRE(t.login(s) == "+OK sample has 3 messages (156 octets)\r\n");
      REQUIRE(t.taken() == full_login(1));
      REQUIRE(t.witness->undone.size() == 1);
    }
    SECTION("QUIT and disconnect have nothing left to release") {
      REQUIRE(t.h.send(s, "QUIT") == "+OK pop3.test POP3 server signing off\r\n");
      t.h.disconnect(s);
      REQUIRE(t.taken().empty());
    }
  }
  SECTION("by a later instance of the lock stage") {
    embedded t("{}", login_stage::lock);
    auto s = t.h.connect();
    REQUIRE(t.login(s) == "-ERR [SYS/TEMP] refused by a later check\r\n");
    REQUIRE(t.taken() == events{"prepare docklands #1", "prepare finchley #1", "lock docklands #1",
                                "lock finchley #1", "unlock finchley #1", "unlock docklands #1"});
    REQUIRE(t.witness->undone.size() == 1);
    REQUIRE(t.finchley->store->holders.empty());
  }
  SECTION("the authorize stage runs before lock: a refusal there takes no lock at all") {
    embedded t("{}", login_stage::authorize);
    auto s = t.h.connect();
    REQUIRE(t.login(s) == "-ERR [SYS/TEMP] refused by a later check\r\n");
    REQUIRE(t.refuser->calls == 1);
    REQUIRE(t.taken().empty());
    // The witness, earlier in the chain, passed the stage and is undone.
    REQUIRE(t.witness->undone.size() == 1);
  }
}

TEST_CASE("a failed password takes no lock and prepares nothing", "[lock]") {
  embedded t;
  auto s = t.h.connect();
  REQUIRE(t.h.send(s, "USER sample") == "+OK send PASS\r\n");
  REQUIRE(t.h.send(s, "PASS nope") == "-ERR [AUTH] invalid password\r\n");
  REQUIRE(t.taken().empty());
  REQUIRE(t.finchley->store->prepared.empty());
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
  // The watchdog answers and closes at the deadline, while lock() still runs.
  s->connection().push("PASS pw");
  h.io().restart();
  while (!s->closed()) REQUIRE(h.io().run_one() > 0);
  REQUIRE(s->connection().sent() == "-ERR [SYS/TEMP] the server took too long, try again later\r\n");
  REQUIRE(journal->events == events{"prepare finchley #1"});  // the lock has not arrived yet
  REQUIRE_FALSE(s->finished());
  // The disconnect event waits for the late lock(), then releases it.
  h.disconnect(s);
  REQUIRE(s->finished());
  REQUIRE(journal->events == events{"prepare finchley #1", "lock finchley #1", "unlock finchley #1"});
  REQUIRE(finchley.store->holders.empty());
  REQUIRE(s->login() == nullptr);
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
    // Only the punts it locks are prepared.
    REQUIRE(journal->events == events{"prepare finchley #1", "lock finchley #1", "open finchley #1", "open docklands #1"});
  }
  SECTION("an unknown punt") {
    harness h;
    h.add<fake_auth>("auth");
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
    h.add<fake_auth>("auth");
    h.add<lock::lock_module>("lock");
    REQUIRE_THROWS_WITH(h.start(), Catch::Contains(spool::service_id));
  }
  SECTION("no verifier: every login would be refused") {
    harness h;
    h.add<lock::lock_module>("lock");
    h.add<fake_spool>("finchley", "{}", "finchley");
    REQUIRE_THROWS_WITH(h.start(), Catch::Contains("module instance 'lock' takes part in logins") &&
                                       Catch::Contains("no instance of the chain verifies them"));
  }
  SECTION("two spools claiming one punt") {
    harness h;
    h.add<fake_auth>("auth");
    h.add<lock::lock_module>("lock");
    h.add<fake_spool>("finchley", "{}", "finchley");
    h.add<fake_spool>("finchley-again", "{}", "finchley");
    REQUIRE_THROWS_WITH(h.start(), Catch::Contains("both serve punt 'finchley'"));
  }
}
