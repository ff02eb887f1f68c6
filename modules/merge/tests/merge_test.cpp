// The merge module: two fake punts merged into one maildrop, opened by the
// core at login as the chain's maildrop source and read through the
// commands and extensions modules.

#include "commands.hpp"
#include "extensions.hpp"
#include "support/harness.hpp"
#include "lock.hpp"
#include "merge.hpp"

#include <catch2/catch.hpp>

using namespace sdps;
using namespace sdps::testing;

namespace {

std::string text(const std::string& subject) { return "Subject: " + subject + "\r\n\r\n" + subject + "\r\n"; }

/// auth, finchley, docklands, merge, commands, extensions; no lock.
struct merged {
  std::shared_ptr<lock_journal> journal = std::make_shared<lock_journal>();
  harness h;
  fake_spool* finchley = nullptr;
  fake_spool* docklands = nullptr;
  merge::merge_module* merger = nullptr;
  std::shared_ptr<client> s;

  explicit merged(const std::string& merge_yaml = "{}") {
    h.add<fake_auth>("auth");
    finchley = &h.add<fake_spool>("finchley", "{}", "finchley", journal);
    docklands = &h.add<fake_spool>("docklands", "{}", "docklands", journal);
    finchley->store->require_lock = docklands->store->require_lock = false;
    // Oldest first across punts; equal arrival times by UIDL.
    finchley->add("f1", 100, text("f1"));
    finchley->add("f2", 300, text("f2"));
    finchley->add("tie-b", 200, text("tie-b"));
    docklands->add("d1", 50, text("d1"));
    docklands->add("tie-a", 200, text("tie-a"));
    docklands->add("d3", 400, text("d3"));
    merger = &h.add<merge::merge_module>("merge", merge_yaml);
    h.add<commands::commands_module>("commands");
    h.add<extensions::extensions_module>("extensions");
    h.start();
    s = h.connect();
  }
  std::string send(const std::string& line) { return h.send(s, line); }
  std::string login() {
    REQUIRE(send("USER sample") == "+OK send PASS\r\n");
    return send("PASS pw");
  }
};

const std::string full_uidl =
    "+OK unique-id listing follows\r\n1 d1\r\n2 f1\r\n3 tie-a\r\n4 tie-b\r\n5 f2\r\n6 d3\r\n.\r\n";

}  // namespace

TEST_CASE("the merged maildrop is numbered oldest first, ties by UIDL", "[merge]") {
  merged t;
  REQUIRE(t.s->maildrop() == nullptr);
  REQUIRE(t.login().rfind("+OK sample has 6 messages (", 0) == 0);
  REQUIRE(t.send("UIDL") == full_uidl);
  REQUIRE(t.send("STAT") == "+OK 6 336\r\n");
  REQUIRE(t.send("LIST 3") == "+OK 3 60\r\n");
  // merge, after the spools, is the chain's maildrop source: the session's
  // maildrop is its merged one.
  REQUIRE(t.h.modules().source_instance()->instance == "merge");
  REQUIRE(dynamic_cast<merge::merged_maildrop*>(t.s->maildrop().get()) != nullptr);
  REQUIRE(t.s->maildrop()->count() == 6);
}

TEST_CASE("reads and marks go to the punt holding the message", "[merge]") {
  merged t;
  t.login();
  REQUIRE(t.send("RETR 3") ==
          "+OK 60 octets\r\nReturn-Path: <sender@example.com>\r\nSubject: tie-a\r\n\r\ntie-a\r\n.\r\n");
  REQUIRE(t.docklands->store->read_marks == std::vector<std::string>{"tie-a"});
  REQUIRE(t.finchley->store->read_marks.empty());
  REQUIRE(t.send("TOP 4 0") == "+OK top of message follows\r\nReturn-Path: <sender@example.com>\r\nSubject: tie-b\r\n\r\n.\r\n");
  REQUIRE(t.send("*ENV 3") == "+OK envelope follows\r\nRD\r\ndocklands\r\nsender@example.com\r\nfred@sample.demon.co.uk\r\n.\r\n");
  REQUIRE(t.send("*ENV 4") == "+OK envelope follows\r\nOK\r\nfinchley\r\nsender@example.com\r\nfred@sample.demon.co.uk\r\n.\r\n");
  REQUIRE(t.send("LAST") == "+OK 3\r\n");
}

TEST_CASE("QUIT removes each deleted message on its own punt", "[merge]") {
  merged t;
  t.login();
  for (const char* line : {"DELE 1", "DELE 3", "DELE 4"}) REQUIRE(t.send(line).rfind("+OK message", 0) == 0);
  // The marks are the session's, by the merged numbering.
  REQUIRE(t.s->marks().deleted_indexes() == std::vector<std::size_t>{0, 2, 3});
  REQUIRE(t.send("QUIT") == "+OK pop3.test POP3 server signing off (3 messages removed)\r\n");
  REQUIRE(t.docklands->store->removed == std::vector<std::string>{"d1", "tie-a"});
  REQUIRE(t.finchley->store->removed == std::vector<std::string>{"tie-b"});
  REQUIRE(t.finchley->store->messages.size() == 2);
  REQUIRE(t.docklands->store->messages.size() == 1);
}

TEST_CASE("RSET before QUIT: the punts remove nothing", "[merge]") {
  merged t;
  t.login();
  t.send("DELE 2");
  t.send("DELE 6");
  REQUIRE(t.send("RSET") == "+OK maildrop has 6 messages (336 octets)\r\n");
  t.send("DELE 5");
  REQUIRE(t.send("QUIT") == "+OK pop3.test POP3 server signing off (1 message removed)\r\n");
  REQUIRE(t.finchley->store->removed == std::vector<std::string>{"f2"});
  REQUIRE(t.docklands->store->removed.empty());
}

TEST_CASE("a punt failing at UPDATE counts its deletions as failed; the other goes ahead", "[merge]") {
  SECTION("it throws") {
    merged t;
    t.login();
    t.send("DELE 1");  // docklands
    t.send("DELE 2");  // finchley
    t.send("DELE 5");  // finchley
    t.finchley->store->remove_throws = true;
    REQUIRE(t.send("QUIT") ==
            "-ERR [SYS/TEMP] 2 of 3 messages marked deleted could not be removed, try again later\r\n");
    REQUIRE(t.docklands->store->removed == std::vector<std::string>{"d1"});
    REQUIRE(t.finchley->store->messages.size() == 3);
    REQUIRE(t.h.log_of("merge").contains("finchley: cannot remove"));
  }
  SECTION("one message is stuck") {
    merged t;
    t.docklands->store->stuck = {"d3"};
    t.login();
    t.send("DELE 6");
    t.send("DELE 2");
    REQUIRE(t.send("QUIT") ==
            "-ERR [SYS/TEMP] 1 of 2 messages marked deleted could not be removed, try again later\r\n");
    REQUIRE(t.finchley->store->removed == std::vector<std::string>{"f1"});
  }
}

TEST_CASE("a punt that cannot be opened is left out, logged and reported", "[merge]") {
  merged t;
  t.docklands->store->down = true;
  REQUIRE(t.login() == "+OK sample has 3 messages (168 octets); mail on docklands is unavailable\r\n");
  REQUIRE(t.h.log_of("merge").contains("punt docklands left out: docklands is down"));
  REQUIRE(t.send("UIDL") == "+OK unique-id listing follows\r\n1 f1\r\n2 tie-b\r\n3 f2\r\n.\r\n");
  REQUIRE(t.s->maildrop()->missing() == std::vector<std::string>{"docklands"});
  t.send("DELE 1");
  REQUIRE(t.send("QUIT") == "+OK pop3.test POP3 server signing off (1 message removed)\r\n");
  REQUIRE(t.finchley->store->removed == std::vector<std::string>{"f1"});
}

TEST_CASE("no punt readable: merge's open throws and the login gets -ERR [SYS/TEMP]", "[merge]") {
  merged t;
  t.docklands->store->down = true;
  t.finchley->store->down = true;
  REQUIRE(t.login() == "-ERR [SYS/TEMP] your mail cannot be read just now, try again later\r\n");
  REQUIRE(t.s->state() == pop3_state::authorization);
  REQUIRE(t.s->maildrop() == nullptr);
  REQUIRE(t.h.core_log().contains("no punt could be read (finchley, docklands)"));
  t.docklands->store->down = false;
  // The refused PASS used up its USER: the client starts again.
  REQUIRE(t.login() == "+OK sample has 3 messages (168 octets); mail on finchley is unavailable\r\n");
}

TEST_CASE("a punt going down mid-session fails only its own messages", "[merge]") {
  merged t;
  t.login();
  t.docklands->store->down = true;
  REQUIRE(t.send("RETR 1") == "-ERR [SYS/TEMP] message 1 cannot be read just now, try again later\r\n");
  REQUIRE(t.send("*ENV 1") ==
          "-ERR [SYS/TEMP] the envelope of message 1 cannot be read just now, try again later\r\n");
  REQUIRE(t.send("RETR 2").rfind("+OK 54 octets\r\n", 0) == 0);
  REQUIRE(t.send("LAST") == "+OK 2\r\n");
}

TEST_CASE("each login opens one snapshot; a refused login drops it, the next takes a new one", "[merge]") {
  auto journal = std::make_shared<lock_journal>();
  harness h;
  h.add<fake_auth>("auth");
  h.add<lock::lock_module>("lock");
  auto& f = h.add<fake_spool>("finchley", "{}", "finchley", journal);
  h.add<merge::merge_module>("merge");
  // In the open stage: sees the maildrop the core opened from merge, and
  // refuses the first login that reaches it.
  struct refuse_once final : sdps::module {
    explicit refuse_once(module_config&) {}
    stage_set login_stages() const override { return {login_stage::open}; }
    awaitable<login_verdict> on_login(session&, login_stage, login_attempt& attempt) override {
      seen.push_back(attempt.maildrop());
      if (refused) co_return login_verdict::proceed();
      refused = true;
      co_return login_verdict::refuse(response::err("[SYS/TEMP] not now"), "not now");
    }
    bool refused = false;
    std::vector<std::shared_ptr<maildrop>> seen;
  };
  auto& refuser = h.add<refuse_once>("refuse_once");
  h.add<commands::commands_module>("commands");
  h.start();
  f.add("f1", 1, text("f1"));
  auto s = h.connect();
  h.send(s, "USER sample");
  REQUIRE(h.send(s, "PASS pw") == "-ERR [SYS/TEMP] not now\r\n");
  // The refused login leaves the session no maildrop, and no lock.
  REQUIRE(refuser.seen.size() == 1);
  REQUIRE(refuser.seen[0]);
  REQUIRE(refuser.seen[0]->count() == 1);
  REQUIRE(s->maildrop() == nullptr);
  REQUIRE(f.store->holders.empty());
  f.add("f2", 2, text("f2"));
  h.send(s, "USER sample");
  REQUIRE(h.send(s, "PASS pw") == "+OK sample has 2 messages (108 octets)\r\n");
  // A new snapshot, and the session's maildrop is the one the open stage saw.
  REQUIRE(refuser.seen.size() == 2);
  REQUIRE(refuser.seen[1] != refuser.seen[0]);
  REQUIRE(s->maildrop() == refuser.seen[1]);
  REQUIRE(s->maildrop()->count() == 2);
  // One open per login, after the lock; the refused login's lock released.
  REQUIRE(journal->events == std::vector<std::string>{"prepare finchley #1", "lock finchley #1", "open finchley #1",
                                                      "unlock finchley #1", "prepare finchley #1",
                                                      "lock finchley #1", "open finchley #1"});
}

TEST_CASE("merge configuration", "[merge][config]") {
  SECTION("punts: chooses the spools") {
    harness h;
    h.add<fake_auth>("auth");
    auto& f = h.add<fake_spool>("finchley", "{}", "finchley");
    auto& d = h.add<fake_spool>("docklands", "{}", "docklands");
    f.store->require_lock = d.store->require_lock = false;
    f.add("f1", 1, text("f1"));
    d.add("d1", 2, text("d1"));
    h.add<merge::merge_module>("merge", "punts: [docklands]");
    h.add<commands::commands_module>("commands");
    h.start();
    auto s = h.connect();
    h.send(s, "USER sample");
    h.send(s, "PASS pw");
    REQUIRE(h.send(s, "UIDL") == "+OK unique-id listing follows\r\n1 d1\r\n.\r\n");
  }
  SECTION("an unknown punt") {
    harness h;
    h.add<fake_spool>("finchley", "{}", "finchley");
    h.add<merge::merge_module>("merge", "punts: battersea");
    REQUIRE_THROWS_WITH(h.start(), Catch::Contains("no spool instance serves punt 'battersea'"));
  }
  SECTION("no spool at all") {
    harness h;
    h.add<merge::merge_module>("merge");
    REQUIRE_THROWS_WITH(h.start(), Catch::Contains(spool::service_id));
  }
  SECTION("a misspelt setting") {
    harness h;
    REQUIRE_THROWS_AS(h.add<merge::merge_module>("merge", "punt: [finchley]"), config_error);
  }
}
