// LAST and *ENV as POP3 transcripts: fake auth, one fake spool, commands,
// extensions, run through the core's session engine.

#include "commands.hpp"
#include "extensions.hpp"
#include "support/harness.hpp"

#include <catch2/catch.hpp>

using namespace sdps;
using namespace sdps::testing;

namespace {

struct with_extensions {
  harness h;
  fake_spool* spool = nullptr;
  std::shared_ptr<client> s;

  explicit with_extensions(const std::string& extensions_yaml = "{}") {
    h.add<fake_auth>("auth");
    spool = &h.add<fake_spool>("finchley", "{}", "finchley");
    spool->store->require_lock = false;
    spool->add("u1", 1, "Subject: 1\r\n\r\none\r\n", "a@example.com", "fred@sample.demon.co.uk");
    spool->add("u2", 2, "Subject: 2\r\n\r\ntwo\r\n", "", "postmaster@sample.demon.co.uk");
    spool->add("u3", 3, "Subject: 3\r\n\r\nthree\r\n", "<c@example.com>", "jim@sample.demon.co.uk");
    h.add<commands::commands_module>("commands");
    h.add<extensions::extensions_module>("extensions", extensions_yaml);
    h.start();
    s = h.connect();
  }
  std::string send(const std::string& line) { return h.send(s, line); }
  void login() {
    REQUIRE(send("USER sample") == "+OK send PASS\r\n");
    REQUIRE(send("PASS pw").rfind("+OK sample has ", 0) == 0);
  }
};

}  // namespace

TEST_CASE("LAST follows RETR and DELE, not TOP; RSET and a login set it to 0", "[extensions]") {
  with_extensions t;
  REQUIRE(t.send("LAST") == "-ERR command not valid in the AUTHORIZATION state\r\n");
  t.login();
  REQUIRE(t.send("LAST") == "+OK 0\r\n");
  REQUIRE(t.send("RETR 2").rfind("+OK", 0) == 0);
  REQUIRE(t.send("LAST") == "+OK 2\r\n");
  REQUIRE(t.send("RETR 1").rfind("+OK", 0) == 0);
  REQUIRE(t.send("LAST") == "+OK 2\r\n");  // the highest, not the latest
  REQUIRE(t.send("TOP 3 0").rfind("+OK", 0) == 0);
  REQUIRE(t.send("LAST") == "+OK 2\r\n");
  REQUIRE(t.send("DELE 3") == "+OK message 3 deleted\r\n");
  REQUIRE(t.send("LAST") == "+OK 3\r\n");
  REQUIRE(t.send("RSET").rfind("+OK", 0) == 0);
  REQUIRE(t.send("LAST") == "+OK 0\r\n");
  // A failed RETR touches nothing.
  REQUIRE(t.send("RETR 4").rfind("-ERR", 0) == 0);
  REQUIRE(t.send("LAST") == "+OK 0\r\n");
  REQUIRE(t.send("LAST 1") == "-ERR syntax: LAST\r\n");
  // LAST reads the session's marks, which commands keeps.
  REQUIRE(t.send("RETR 3").rfind("+OK", 0) == 0);
  REQUIRE(t.s->marks().last() == 3);
  REQUIRE(t.send("LAST") == "+OK 3\r\n");
  REQUIRE(t.send("QUIT").rfind("+OK", 0) == 0);
  // The next session of the host starts at 0.
  t.s = t.h.connect();
  t.login();
  REQUIRE(t.send("LAST") == "+OK 0\r\n");
}

TEST_CASE("*ENV: four lines, OK or RD, punt, sender, recipient", "[extensions]") {
  with_extensions t;
  REQUIRE(t.send("*ENV 1") == "-ERR command not valid in the AUTHORIZATION state\r\n");
  t.login();
  REQUIRE(t.send("*ENV 1") == "+OK envelope follows\r\nOK\r\nfinchley\r\na@example.com\r\nfred@sample.demon.co.uk\r\n.\r\n");
  REQUIRE(t.send("RETR 1").rfind("+OK", 0) == 0);
  REQUIRE(t.send("*ENV 1") == "+OK envelope follows\r\nRD\r\nfinchley\r\na@example.com\r\nfred@sample.demon.co.uk\r\n.\r\n");
  // The null sender is an empty third line, still sent.
  REQUIRE(t.send("*env 2") == "+OK envelope follows\r\nOK\r\nfinchley\r\n\r\npostmaster@sample.demon.co.uk\r\n.\r\n");
  // Angle brackets are never sent.
  REQUIRE(t.send("*ENV 3") == "+OK envelope follows\r\nOK\r\nfinchley\r\nc@example.com\r\njim@sample.demon.co.uk\r\n.\r\n");
  // *ENV neither reads nor touches.
  REQUIRE(t.send("LAST") == "+OK 1\r\n");
  REQUIRE(t.spool->store->read_marks == std::vector<std::string>{"u1"});
}

TEST_CASE("*ENV refuses what is not a live message", "[extensions]") {
  with_extensions t;
  t.login();
  REQUIRE(t.send("DELE 2") == "+OK message 2 deleted\r\n");
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"*ENV", "-ERR syntax: *ENV msg"},
      {"*ENV 1 2", "-ERR syntax: *ENV msg"},
      {"*ENV 0", "-ERR no such message, only 3 messages in maildrop"},
      {"*ENV 4", "-ERR no such message, only 3 messages in maildrop"},
      {"*ENV -1", "-ERR invalid message number (syntax: *ENV msg)"},
      {"*ENV x", "-ERR invalid message number (syntax: *ENV msg)"},
      {"*ENV 2", "-ERR message 2 already deleted"},
  };
  for (const auto& [line, reply] : cases) {
    INFO(line);
    REQUIRE(t.send(line) == reply + "\r\n");
  }
}

TEST_CASE("*ENV when the punt cannot be read, or the message is gone", "[extensions]") {
  with_extensions t;
  t.login();
  t.spool->store->down = true;
  REQUIRE(t.send("*ENV 1") == "-ERR [SYS/TEMP] the envelope of message 1 cannot be read just now, try again later\r\n");
  t.spool->store->down = false;
  t.spool->store->messages.erase(t.spool->store->messages.begin());
  REQUIRE(t.send("*ENV 1") == "-ERR [SYS/TEMP] the envelope of message 1 cannot be read just now, try again later\r\n");
  REQUIRE(t.send("*ENV 3").rfind("+OK envelope follows\r\nOK\r\n", 0) == 0);
}

TEST_CASE("*ENV keeps to four lines whatever the envelope holds", "[extensions]") {
  with_extensions t;
  t.spool->add("u4", 4, "Subject: 4\r\n\r\nfour\r\n", "evil@example.com\r\n.\r\nRD", "to@x\nextra");
  t.login();
  REQUIRE(t.send("*ENV 4") ==
          "+OK envelope follows\r\nOK\r\nfinchley\r\nevil@example.com  .  RD\r\nto@x extra\r\n.\r\n");
}

TEST_CASE("a fetchmail SDPS session", "[extensions]") {
  with_extensions t;
  const std::string out = t.h.send_all(
      t.s, {"CAPA", "USER sample", "PASS pw", "STAT", "LAST", "LIST 1", "*ENV 1", "TOP 1 99999999", "DELE 1", "QUIT"});
  REQUIRE(out ==
          "+OK capability list follows\r\nUSER\r\nAUTH-RESP-CODE\r\nTOP\r\nUIDL\r\nPIPELINING\r\nRESP-CODES\r\n"
          "IMPLEMENTATION sdps\r\n.\r\n"
          "+OK send PASS\r\n"
          "+OK sample has 3 messages (138 octets)\r\n"
          "+OK 3 138\r\n"
          "+OK 0\r\n"
          "+OK 1 49\r\n"
          "+OK envelope follows\r\nOK\r\nfinchley\r\na@example.com\r\nfred@sample.demon.co.uk\r\n.\r\n"
          "+OK top of message follows\r\nReturn-Path: <a@example.com>\r\nSubject: 1\r\n\r\none\r\n.\r\n"
          "+OK message 1 deleted\r\n"
          "+OK pop3.test POP3 server signing off (1 message removed)\r\n");
  REQUIRE(t.spool->store->removed == std::vector<std::string>{"u1"});
}

TEST_CASE("extensions configuration", "[extensions][config]") {
  SECTION("no maildrop source") {
    harness h;
    h.add<extensions::extensions_module>("extensions");
    REQUIRE_THROWS_WITH(h.start(), Catch::Contains("'extensions' (extensions) needs a module providing " +
                                                   std::string(maildrop_source::service_id)));
  }
  SECTION("source: names nothing") {
    harness h;
    h.add<fake_spool>("finchley", "{}", "finchley");
    h.add<extensions::extensions_module>("extensions", "source: merge");
    REQUIRE_THROWS_WITH(h.start(), Catch::Contains("'source: merge' is not where the sessions' maildrop comes from"));
  }
  SECTION("source: names the spool the sessions' maildrop comes from") {
    with_extensions t("source: finchley");
    t.login();
    REQUIRE(t.send("LAST") == "+OK 0\r\n");
    REQUIRE(t.send("*ENV 1").rfind("+OK envelope follows\r\nOK\r\nfinchley\r\n", 0) == 0);
  }
  SECTION("source: naming another maildrop is refused: a session has one") {
    harness h;
    h.add<fake_spool>("finchley", "{}", "finchley");
    h.add<fake_spool>("docklands", "{}", "docklands");
    h.add<extensions::extensions_module>("extensions", "source: finchley");
    REQUIRE_THROWS_WITH(h.start(), Catch::Contains("a session has one maildrop") && Catch::Contains("'docklands'"));
  }
  SECTION("an empty source:") {
    harness h;
    REQUIRE_THROWS_WITH(h.add<extensions::extensions_module>("extensions", "source: ''"),
                        Catch::Contains("'source' must name the module instance"));
  }
}
