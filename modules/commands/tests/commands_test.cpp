// The commands module as POP3 transcripts: a fake auth, one fake spool and
// commands, run through the core's session engine.

#include "commands.hpp"
#include "support/harness.hpp"

#include <catch2/catch.hpp>

using namespace sdps;
using namespace sdps::testing;
using sdps::commands::commands_module;

namespace {

const std::string m1 = "Subject: one\r\n\r\nhello\r\n.dot line\r\nend\r\n";  // 69 octets with Return-Path
const std::string m2 = "Subject: two\r\n\r\nl1\r\nl2\r\nl3\r\n";              // 58 octets with Return-Path

/// auth, one spool (finchley) holding m1 and m2, commands.
struct one_spool {
  harness h;
  fake_spool& spool;
  std::shared_ptr<client> s;

  explicit one_spool(bool with_mail = true, const std::string& commands_yaml = "{}")
      : spool((h.add<fake_auth>("auth"), h.add<fake_spool>("finchley", "{}", "finchley"))) {
    spool.store->require_lock = false;  // no lock module in this chain
    if (with_mail) {
      spool.add("u1", 100, m1, "a@example.com");
      spool.add("u2", 200, m2, "b@example.com");
    }
    h.add<commands_module>("commands", commands_yaml);
    h.start();
    s = h.connect();
  }
  std::string send(const std::string& line) { return h.send(s, line); }
  std::string login() {
    REQUIRE(send("USER sample") == "+OK send PASS\r\n");
    return send("PASS pw");
  }
};

}  // namespace

TEST_CASE("PASS answers with the count and size and enters TRANSACTION", "[commands]") {
  one_spool t;
  REQUIRE(t.send("STAT") == "-ERR command not valid in the AUTHORIZATION state\r\n");
  REQUIRE(t.send("USER sample") == "+OK send PASS\r\n");
  REQUIRE(t.send("PASS wrong") == "-ERR [AUTH] invalid password\r\n");
  REQUIRE(t.s->state() == pop3_state::authorization);
  // A refused PASS uses up its USER (RFC 1939 7): the client starts again.
  REQUIRE(t.send("PASS pw") == "-ERR send USER first\r\n");
  REQUIRE(t.send("USER sample") == "+OK send PASS\r\n");
  REQUIRE(t.send("PASS pw") == "+OK sample has 2 messages (127 octets)\r\n");
  REQUIRE(t.s->state() == pop3_state::transaction);
  REQUIRE(t.send("PASS pw") == "-ERR command not valid in the TRANSACTION state\r\n");
}

TEST_CASE("PASS wording: one message, none, a user login", "[commands]") {
  SECTION("one") {
    one_spool t(false);
    t.spool.add("only", 1, "Subject: x\r\n\r\nbody\r\n", "");
    REQUIRE(t.login() == "+OK sample has 1 message (37 octets)\r\n");
  }
  SECTION("none") {
    one_spool t(false);
    REQUIRE(t.login() == "+OK sample has 0 messages (0 octets)\r\n");
    REQUIRE(t.send("STAT") == "+OK 0 0\r\n");
    REQUIRE(t.send("LIST") == "+OK 0 messages (0 octets)\r\n.\r\n");
    REQUIRE(t.send("UIDL") == "+OK unique-id listing follows\r\n.\r\n");
    REQUIRE(t.send("RETR 1") == "-ERR no such message, only 0 messages in maildrop\r\n");
  }
  SECTION("user login") {
    one_spool t;
    REQUIRE(t.send("USER fred+sample") == "+OK send PASS\r\n");
    REQUIRE(t.send("PASS pw") == "+OK fred+sample has 2 messages (127 octets)\r\n");
  }
}

TEST_CASE("PASS when the spool cannot be read: -ERR [SYS/TEMP], still AUTHORIZATION, retry works", "[commands]") {
  one_spool t;
  t.spool.store->down = true;
  REQUIRE(t.send("USER sample") == "+OK send PASS\r\n");
  REQUIRE(t.send("PASS pw") == "-ERR [SYS/TEMP] your mail cannot be read just now, try again later\r\n");
  REQUIRE(t.s->state() == pop3_state::authorization);
  REQUIRE(t.h.core_log().contains("finchley is down"));
  t.spool.store->down = false;
  REQUIRE(t.send("USER sample") == "+OK send PASS\r\n");
  REQUIRE(t.send("PASS pw") == "+OK sample has 2 messages (127 octets)\r\n");
}

TEST_CASE("PASS is not this module's: without a module that takes logins it is unknown", "[commands]") {
  harness h;
  auto& spool = h.add<fake_spool>("finchley", "{}", "finchley");
  spool.store->require_lock = false;
  h.add<commands_module>("commands");
  h.start();
  auto s = h.connect();
  REQUIRE(h.send(s, "PASS pw") == "-ERR unknown command\r\n");
  REQUIRE(s->state() == pop3_state::authorization);
}

TEST_CASE("STAT, LIST and UIDL", "[commands]") {
  one_spool t;
  t.login();
  REQUIRE(t.send("STAT") == "+OK 2 127\r\n");
  REQUIRE(t.send("LIST") == "+OK 2 messages (127 octets)\r\n1 69\r\n2 58\r\n.\r\n");
  REQUIRE(t.send("LIST 2") == "+OK 2 58\r\n");
  REQUIRE(t.send("list 1") == "+OK 1 69\r\n");
  REQUIRE(t.send("UIDL") == "+OK unique-id listing follows\r\n1 u1\r\n2 u2\r\n.\r\n");
  REQUIRE(t.send("UIDL 2") == "+OK 2 u2\r\n");
  // Spaces around arguments are tolerated.
  REQUIRE(t.send("LIST  1 ") == "+OK 1 69\r\n");
}

TEST_CASE("RETR sends the message with Return-Path, dot-stuffed, and marks it read", "[commands]") {
  one_spool t;
  t.login();
  REQUIRE(t.send("RETR 1") ==
          "+OK 69 octets\r\nReturn-Path: <a@example.com>\r\nSubject: one\r\n\r\nhello\r\n..dot line\r\nend\r\n.\r\n");
  REQUIRE(t.spool.store->read_marks == std::vector<std::string>{"u1"});
  REQUIRE(t.spool.store->find("u1")->read);
  REQUIRE_FALSE(t.spool.store->find("u2")->read);
  // Retrieving again is allowed (RFC 1939) and sends the same octets.
  REQUIRE(t.send("RETR 1").substr(0, 16) == "+OK 69 octets\r\nR");
}

TEST_CASE("TOP sends the header and n body lines, does not mark read", "[commands]") {
  one_spool t;
  t.login();
  REQUIRE(t.send("TOP 2 0") == "+OK top of message follows\r\nReturn-Path: <b@example.com>\r\nSubject: two\r\n\r\n.\r\n");
  REQUIRE(t.send("TOP 2 2") ==
          "+OK top of message follows\r\nReturn-Path: <b@example.com>\r\nSubject: two\r\n\r\nl1\r\nl2\r\n.\r\n");
  // fetchmail's TOP n 99999999 is the whole message, as RETR sends it.
  const std::string whole = t.send("TOP 1 99999999");
  REQUIRE(whole == "+OK top of message follows\r\nReturn-Path: <a@example.com>\r\nSubject: one\r\n\r\nhello\r\n"
                   "..dot line\r\nend\r\n.\r\n");
  // Line counts beyond any integer still mean "all of it".
  REQUIRE(t.send("TOP 1 123456789012345678901234567890") == whole);
  REQUIRE(t.spool.store->read_marks.empty());
}

TEST_CASE("argument errors get a clear -ERR each and the session goes on", "[commands]") {
  one_spool t;
  t.login();
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"RETR", "-ERR syntax: RETR msg"},
      {"RETR 1 2", "-ERR syntax: RETR msg"},
      {"RETR 0", "-ERR no such message, only 2 messages in maildrop"},
      {"RETR 3", "-ERR no such message, only 2 messages in maildrop"},
      {"RETR 99999999999", "-ERR no such message, only 2 messages in maildrop"},
      {"RETR 4294967297", "-ERR no such message, only 2 messages in maildrop"},
      {"RETR 18446744073709551617", "-ERR no such message, only 2 messages in maildrop"},
      {"RETR -1", "-ERR invalid message number (syntax: RETR msg)"},
      {"RETR +1", "-ERR invalid message number (syntax: RETR msg)"},
      {"RETR x", "-ERR invalid message number (syntax: RETR msg)"},
      {"RETR 1x", "-ERR invalid message number (syntax: RETR msg)"},
      {"RETR 1.0", "-ERR invalid message number (syntax: RETR msg)"},
      {"RETR 1\t", "-ERR invalid message number (syntax: RETR msg)"},
      {"TOP 1", "-ERR syntax: TOP msg n"},
      {"TOP", "-ERR syntax: TOP msg n"},
      {"TOP 1 2 3", "-ERR syntax: TOP msg n"},
      {"TOP 1 -1", "-ERR invalid number of lines (syntax: TOP msg n)"},
      {"TOP 1 x", "-ERR invalid number of lines (syntax: TOP msg n)"},
      {"TOP 0 1", "-ERR no such message, only 2 messages in maildrop"},
      {"TOP y 1", "-ERR invalid message number (syntax: TOP msg n)"},
      {"LIST 0", "-ERR no such message, only 2 messages in maildrop"},
      {"LIST 1 2", "-ERR syntax: LIST [msg]"},
      {"LIST -2", "-ERR invalid message number (syntax: LIST [msg])"},
      {"UIDL 3", "-ERR no such message, only 2 messages in maildrop"},
      {"UIDL a b", "-ERR syntax: UIDL [msg]"},
      {"DELE", "-ERR syntax: DELE msg"},
      {"DELE 3", "-ERR no such message, only 2 messages in maildrop"},
      {"DELE one", "-ERR invalid message number (syntax: DELE msg)"},
      {"STAT 1", "-ERR syntax: STAT"},
      {"RSET 1", "-ERR syntax: RSET"},
      {"NOOP x", "-ERR syntax: NOOP"},
      {"QUIT now", "-ERR syntax: QUIT"},
      {"CAPA x", "-ERR syntax: CAPA"},
      {"XYZZY", "-ERR unknown command"},
  };
  for (const auto& [line, reply] : cases) {
    INFO(line);
    REQUIRE(t.send(line) == reply + "\r\n");
  }
  // Nothing was touched, read or deleted by any of that.
  REQUIRE(t.send("STAT") == "+OK 2 127\r\n");
  REQUIRE(t.spool.store->read_marks.empty());
  REQUIRE(t.s->marks().last() == 0);
  REQUIRE(t.s->state() == pop3_state::transaction);
  REQUIRE(t.send("NOOP") == "+OK\r\n");
}

TEST_CASE("leading zeros are plain decimal; eleven digits are not a message number", "[commands]") {
  one_spool t;
  t.login();
  REQUIRE(t.send("LIST 002") == "+OK 2 58\r\n");
  REQUIRE(t.send("LIST 0000000001") == "+OK 1 69\r\n");
  REQUIRE(t.send("LIST 00000000001") == "-ERR no such message, only 2 messages in maildrop\r\n");
}

TEST_CASE("DELE hides a message; numbering never changes; RSET brings it back", "[commands]") {
  one_spool t;
  t.login();
  REQUIRE(t.send("DELE 1") == "+OK message 1 deleted\r\n");
  REQUIRE(t.send("DELE 1") == "-ERR message 1 already deleted\r\n");
  REQUIRE(t.send("RETR 1") == "-ERR message 1 already deleted\r\n");
  REQUIRE(t.send("TOP 1 0") == "-ERR message 1 already deleted\r\n");
  REQUIRE(t.send("LIST 1") == "-ERR message 1 already deleted\r\n");
  REQUIRE(t.send("UIDL 1") == "-ERR message 1 already deleted\r\n");
  REQUIRE(t.send("STAT") == "+OK 1 58\r\n");
  REQUIRE(t.send("LIST") == "+OK 1 message (58 octets)\r\n2 58\r\n.\r\n");
  REQUIRE(t.send("UIDL") == "+OK unique-id listing follows\r\n2 u2\r\n.\r\n");
  REQUIRE(t.send("LIST 2") == "+OK 2 58\r\n");
  REQUIRE(t.send("RSET") == "+OK maildrop has 2 messages (127 octets)\r\n");
  REQUIRE(t.send("LIST") == "+OK 2 messages (127 octets)\r\n1 69\r\n2 58\r\n.\r\n");
  REQUIRE(t.send("RETR 1").rfind("+OK 69 octets\r\n", 0) == 0);
}

TEST_CASE("QUIT in TRANSACTION removes the deleted messages and closes", "[commands]") {
  one_spool t;
  t.login();
  REQUIRE(t.send("DELE 2") == "+OK message 2 deleted\r\n");
  REQUIRE(t.send("QUIT") == "+OK pop3.test POP3 server signing off (1 message removed)\r\n");
  REQUIRE(t.s->closed());
  REQUIRE(t.s->state() == pop3_state::update);
  REQUIRE(t.spool.store->removed == std::vector<std::string>{"u2"});
  REQUIRE(t.spool.store->messages.size() == 1);
  REQUIRE(t.spool.store->messages[0].uidl == "u1");
}

TEST_CASE("QUIT with nothing deleted removes nothing", "[commands]") {
  one_spool t;
  t.login();
  REQUIRE(t.send("DELE 1") == "+OK message 1 deleted\r\n");
  REQUIRE(t.send("RSET") == "+OK maildrop has 2 messages (127 octets)\r\n");
  REQUIRE(t.send("QUIT") == "+OK pop3.test POP3 server signing off (0 messages removed)\r\n");
  REQUIRE(t.spool.store->messages.size() == 2);
}

TEST_CASE("QUIT when some deleted messages cannot be removed: -ERR [SYS/TEMP], still closes", "[commands]") {
  SECTION("one stuck") {
    one_spool t;
    t.spool.store->stuck = {"u1"};
    t.login();
    t.send("DELE 1");
    t.send("DELE 2");
    REQUIRE(t.send("QUIT") ==
            "-ERR [SYS/TEMP] 1 of 2 messages marked deleted could not be removed, try again later\r\n");
    REQUIRE(t.s->closed());
    REQUIRE(t.spool.store->removed == std::vector<std::string>{"u2"});
  }
  SECTION("the spool throws") {
    one_spool t;
    t.login();
    t.send("DELE 1");
    t.spool.store->remove_throws = true;
    REQUIRE(t.send("QUIT") ==
            "-ERR [SYS/TEMP] 1 of 1 message marked deleted could not be removed, try again later\r\n");
    REQUIRE(t.s->closed());
    REQUIRE(t.spool.store->messages.size() == 2);
  }
}

TEST_CASE("QUIT in AUTHORIZATION says goodbye and removes nothing", "[commands]") {
  one_spool t;
  REQUIRE(t.send("USER sample") == "+OK send PASS\r\n");
  REQUIRE(t.send("QUIT") == "+OK pop3.test POP3 server signing off\r\n");
  REQUIRE(t.s->closed());
  REQUIRE(t.s->state() == pop3_state::authorization);
  REQUIRE(t.spool.store->messages.size() == 2);
}

TEST_CASE("a dropped connection deletes nothing", "[commands]") {
  one_spool t;
  t.login();
  t.send("DELE 1");
  t.h.disconnect(t.s);
  REQUIRE(t.spool.store->removed.empty());
  REQUIRE(t.spool.store->messages.size() == 2);
}

TEST_CASE("CAPA lists what is real in each state, never STLS or SASL without TLS", "[commands]") {
  one_spool t;
  const std::string rest =
      "AUTH-RESP-CODE\r\nTOP\r\nUIDL\r\nPIPELINING\r\nRESP-CODES\r\nIMPLEMENTATION sdps\r\n.\r\n";
  REQUIRE(t.send("CAPA") == "+OK capability list follows\r\nUSER\r\n" + rest);
  t.login();
  const std::string after = t.send("capa");
  REQUIRE(after == "+OK capability list follows\r\n" + rest);
  REQUIRE(after.find("STLS") == std::string::npos);
  REQUIRE(after.find("SASL") == std::string::npos);
}

TEST_CASE("a punt error on RETR or TOP is -ERR [SYS/TEMP] and the session goes on", "[commands]") {
  one_spool t;
  t.login();
  t.spool.store->down = true;
  REQUIRE(t.send("RETR 1") == "-ERR [SYS/TEMP] message 1 cannot be read just now, try again later\r\n");
  REQUIRE(t.send("TOP 2 1") == "-ERR [SYS/TEMP] message 2 cannot be read just now, try again later\r\n");
  REQUIRE(t.h.core_log().contains("finchley is down"));
  // LIST and STAT come from the snapshot and still work; nothing was touched.
  REQUIRE(t.send("STAT") == "+OK 2 127\r\n");
  REQUIRE(t.s->marks().last() == 0);
  t.spool.store->down = false;
  REQUIRE(t.send("RETR 1").rfind("+OK 69 octets\r\n", 0) == 0);
  REQUIRE(t.s->marks().last() == 1);
}

TEST_CASE("a message SMTP removed since login: RETR gives the spool's notice, LIST the original size",
          "[commands]") {
  one_spool t;
  t.login();
  t.spool.store->messages.erase(t.spool.store->messages.begin());
  REQUIRE(t.send("LIST 1") == "+OK 1 69\r\n");
  REQUIRE(t.send("UIDL 1") == "+OK 1 u1\r\n");
  REQUIRE(t.send("RETR 1") ==
          "+OK 69 octets\r\nMessage-ID: <gone@pop3.test>\r\n\r\nThis message was delivered by SMTP.\r\n.\r\n");
}

TEST_CASE("pipelined commands are answered in order", "[commands]") {
  one_spool t;
  const std::string out =
      t.h.send_all(t.s, {"USER sample", "PASS pw", "RETR 1", "RETR 2", "DELE 1", "DELE 2", "QUIT"});
  REQUIRE(out ==
          "+OK send PASS\r\n+OK sample has 2 messages (127 octets)\r\n"
          "+OK 69 octets\r\nReturn-Path: <a@example.com>\r\nSubject: one\r\n\r\nhello\r\n..dot line\r\nend\r\n.\r\n"
          "+OK 58 octets\r\nReturn-Path: <b@example.com>\r\nSubject: two\r\n\r\nl1\r\nl2\r\nl3\r\n.\r\n"
          "+OK message 1 deleted\r\n+OK message 2 deleted\r\n"
          "+OK pop3.test POP3 server signing off (2 messages removed)\r\n");
  REQUIRE(t.spool.store->messages.empty());
}

TEST_CASE("commands configuration", "[commands][config]") {
  SECTION("no maildrop source in the chain") {
    harness h;
    h.add<fake_auth>("auth");
    h.add<commands_module>("commands");
    REQUIRE_THROWS_WITH(h.start(), Catch::Contains("needs a module providing sdps.maildrop_source"));
  }
  SECTION("the sessions' maildrop is the chain's last source, wherever commands is") {
    harness h;
    h.add<fake_auth>("auth");
    h.add<commands_module>("commands");
    auto& a = h.add<fake_spool>("finchley", "{}", "finchley");
    auto& b = h.add<fake_spool>("docklands", "{}", "docklands");
    a.store->require_lock = b.store->require_lock = false;
    a.add("fa", 1, "Subject: f\r\n\r\nf\r\n");
    b.add("db", 1, "Subject: d\r\n\r\nd\r\n");
    h.start();
    auto s = h.connect();
    h.send(s, "USER sample");
    REQUIRE(h.send(s, "PASS pw").rfind("+OK sample has 1 message (", 0) == 0);
    REQUIRE(h.send(s, "UIDL") == "+OK unique-id listing follows\r\n1 db\r\n.\r\n");
  }
  SECTION("source: may name that instance") {
    harness h;
    h.add<fake_auth>("auth");
    auto& a = h.add<fake_spool>("finchley", "{}", "finchley");
    a.store->require_lock = false;
    a.add("fa", 1, "Subject: f\r\n\r\nf\r\n");
    h.add<commands_module>("commands", "source: finchley");
    h.start();
    auto s = h.connect();
    h.send(s, "USER sample");
    REQUIRE(h.send(s, "PASS pw").rfind("+OK sample has 1 message (", 0) == 0);
    REQUIRE(h.send(s, "UIDL 1") == "+OK 1 fa\r\n");
  }
  SECTION("source: naming another maildrop is refused: a session has one") {
    harness h;
    h.add<fake_spool>("finchley", "{}", "finchley");
    h.add<fake_spool>("docklands", "{}", "docklands");
    h.add<commands_module>("commands", "source: finchley");
    REQUIRE_THROWS_WITH(h.start(), Catch::Contains("a session has one maildrop") && Catch::Contains("'docklands'"));
  }
  SECTION("source: names nothing") {
    harness h;
    h.add<fake_spool>("finchley", "{}", "finchley");
    h.add<commands_module>("commands", "source: nowhere");
    REQUIRE_THROWS_WITH(h.start(), Catch::Contains("source: nowhere"));
  }
  SECTION("a misspelt setting is refused") {
    harness h;
    h.add<fake_spool>("finchley", "{}", "finchley");
    REQUIRE_THROWS_AS(h.add<commands_module>("commands", "sourse: finchley"), config_error);
  }
}
