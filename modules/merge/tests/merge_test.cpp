// The merge module: two fake punts merged into one maildrop, read through
// the commands and extensions modules.

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
  std::shared_ptr<fake_session> s;

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
  REQUIRE(t.merger->current(*t.s) == nullptr);
  REQUIRE(t.login().rfind("+OK sample has 6 messages (", 0) == 0);
  REQUIRE(t.send("UIDL") == full_uidl);
  REQUIRE(t.send("STAT") == "+OK 6 336\r\n");
  REQUIRE(t.send("LIST 3") == "+OK 3 60\r\n");
  REQUIRE(t.merger->current(*t.s) != nullptr);
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
  REQUIRE(t.merger->current(*t.s)->missing() == std::vector<std::string>{"docklands"});
  t.send("DELE 1");
  REQUIRE(t.send("QUIT") == "+OK pop3.test POP3 server signing off (1 message removed)\r\n");
  REQUIRE(t.finchley->store->removed == std::vector<std::string>{"f1"});
}

TEST_CASE("no punt readable: PASS gets -ERR [SYS/TEMP] from merge", "[merge]") {
  merged t;
  t.docklands->store->down = true;
  t.finchley->store->down = true;
  REQUIRE(t.login() == "-ERR [SYS/TEMP] your mail cannot be read just now, try again later\r\n");
  REQUIRE(t.s->state() == pop3_state::authorization);
  REQUIRE(t.merger->current(*t.s) == nullptr);
  t.docklands->store->down = false;
  REQUIRE(t.send("PASS pw") == "+OK sample has 3 messages (168 octets); mail on finchley is unavailable\r\n");
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

TEST_CASE("open() returns the PASS snapshot; a refused PASS drops it, a new PASS takes a new one", "[merge]") {
  auto journal = std::make_shared<lock_journal>();
  harness h;
  h.add<fake_auth>("auth");
  h.add<lock::lock_module>("lock");
  auto& f = h.add<fake_spool>("finchley", "{}", "finchley", journal);
  auto& merger = h.add<merge::merge_module>("merge");
  // Refuses the first PASS that reaches it, after merge opened.
  struct refuse_once final : sdps::module {
    explicit refuse_once(module_config&) {}
    std::vector<command_spec> commands() const override {
      return {{"PASS", static_cast<state_mask>(pop3_state::authorization)}};
    }
    awaitable<verdict> on_command(session&, const command&) override {
      if (refused) co_return verdict::next();
      refused = true;
      co_return verdict::answer(response::err("[SYS/TEMP] not now"));
    }
    bool refused = false;
  };
  h.add<refuse_once>("refuse_once");
  h.add<commands::commands_module>("commands");
  h.start();
  f.add("f1", 1, text("f1"));
  auto s = h.connect();
  h.send(s, "USER sample");
  REQUIRE(h.send(s, "PASS pw") == "-ERR [SYS/TEMP] not now\r\n");
  // The refused PASS leaves no snapshot (command_failed), and no lock.
  REQUIRE_FALSE(merger.current(*s));
  REQUIRE(f.store->holders.empty());
  f.add("f2", 2, text("f2"));
  REQUIRE(h.send(s, "PASS pw") == "+OK sample has 2 messages (108 octets)\r\n");
  const auto second = merger.current(*s);
  REQUIRE(second);
  REQUIRE(second->count() == 2);
  REQUIRE(h.run(merger.open(*s)) == second);
  REQUIRE(journal->events == std::vector<std::string>{"lock finchley #1", "open finchley #1", "unlock finchley #1",
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
