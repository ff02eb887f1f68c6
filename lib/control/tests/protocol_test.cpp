// The control socket's protocol (docs/control.md): lines, escapes,
// requests and the records of each reply, as both sides read and write
// them.

#include "control/protocol.hpp"

#include <catch2/catch.hpp>

#include <random>

using namespace sdps::control;

namespace {

std::string line_of(const record& r) {
  std::string text = format(r);
  REQUIRE(!text.empty());
  REQUIRE(text.back() == '\n');
  text.pop_back();
  return text;
}

}  // namespace

TEST_CASE("a record is one line of a kind and key=value fields") {
  record r("session");
  r.set("id", std::uint64_t{7}).set("login", "fred+sample").set("tls", true);
  CHECK(format(r) == "session\tid=7\tlogin=fred+sample\ttls=1\n");
  const auto back = parse(line_of(r));
  REQUIRE(back);
  CHECK(back->kind == "session");
  CHECK(back->number("id") == 7u);
  CHECK(*back->get("login") == "fred+sample");
  CHECK(back->get("user") == nullptr);
  CHECK(parse("end")->fields.empty());
  CHECK(parse("error\tcode=bad-request")->kind == "error");
}

TEST_CASE("values are escaped so that a line stays one line") {
  record r("punt");
  const std::string hostile = "a\tb\nc\rd\\e=f \x01 \xc3\xa9";
  r.set("detail", hostile);
  const std::string text = format(r);
  CHECK(text.find('\t', 5) == std::string::npos);
  CHECK(std::count(text.begin(), text.end(), '\n') == 1);
  CHECK(std::count(text.begin(), text.end(), '\r') == 0);
  CHECK(text == "punt\tdetail=a\\tb\\nc\\rd\\\\e=f \x01 \xc3\xa9\n");
  CHECK(*parse(line_of(r))->get("detail") == hostile);
}

TEST_CASE("every value survives the round trip") {
  std::mt19937 random(20251130);
  std::uniform_int_distribution<int> octet(0, 255), length(0, 40);
  for (int i = 0; i < 2000; ++i) {
    std::string value;
    for (int n = length(random); n > 0; --n) value += static_cast<char>(octet(random));
    record r("x");
    r.set("v", value).set("w", "");
    const auto back = parse(line_of(r));
    REQUIRE(back);
    REQUIRE(*back->get("v") == value);
    REQUIRE(back->get("w")->empty());
  }
}

TEST_CASE("malformed lines are refused") {
  for (const char* bad : {"", "\tid=1", "Session\tid=1", "session id=1", "session\tid", "session\tID=1",
                          "session\t=1", "session\tid=1\t", "session\tid=a\\qb", "session\tid=ends\\",
                          "session\tid=1\r", "sess ion"})
    CHECK_FALSE(parse(bad));
  // An unknown key is no error: readers skip it.
  const auto r = parse("punt\tname=finchley\tup=1\tcolour=blue");
  REQUIRE(r);
  CHECK(read_punt(*r)->name == "finchley");
}

TEST_CASE("numbers are plain decimal") {
  const auto r = parse("x\ta=0\tb=18446744073\tc=-1\td=1e3\te=\tf= 1\tg=12345678901234567890");
  REQUIRE(r);
  CHECK(r->number("a") == 0u);
  CHECK(r->number("b") == 18446744073u);
  for (const char* key : {"c", "d", "e", "f", "g", "h"}) CHECK_FALSE(r->number(key));
}

TEST_CASE("requests: who, status and kick with exactly one selector") {
  using verb = request::verb;
  for (const auto& [text, what] : {std::pair{"who", verb::who}, std::pair{"status", verb::status}}) {
    const auto got = read_request(*parse(text));
    REQUIRE(std::holds_alternative<request>(got));
    CHECK(std::get<request>(got).what == what);
  }
  for (const auto by : {selector::by::id, selector::by::host, selector::by::login}) {
    request kick;
    kick.what = verb::kick;
    kick.which = {by, "fred\t+sample"};
    const auto got = read_request(*parse(line_of(to_record(kick))));
    REQUIRE(std::holds_alternative<request>(got));
    CHECK(std::get<request>(got).what == verb::kick);
    CHECK(std::get<request>(got).which.what == by);
    CHECK(std::get<request>(got).which.value == "fred\t+sample");
  }
  for (const char* bad : {"kick", "kick\tid=1\thost=sample", "kick\tuser=fred", "reboot", "ok"}) {
    const auto got = read_request(*parse(bad));
    REQUIRE(std::holds_alternative<std::string>(got));
    CHECK(std::get<std::string>(got) == code::bad_request);
  }
}

TEST_CASE("session records: what who lists and kick reports") {
  session_row s;
  s.id = 42;
  s.login = "fred+sample";
  s.host = "sample";
  s.user = "fred";
  s.client = "[::1]:40000";
  s.tls = true;
  s.state = "TRANSACTION";
  s.since = 1764504000;
  s.sent = 10712;
  s.gone = true;
  const auto back = read_session(*parse(line_of(to_record(s))));
  REQUIRE(back);
  CHECK(back->id == 42);
  CHECK(back->login == s.login);
  CHECK(back->host == s.host);
  CHECK(back->user == s.user);
  CHECK(back->client == s.client);
  CHECK(back->tls);
  CHECK(back->state == "TRANSACTION");
  CHECK(back->since == 1764504000);
  CHECK(back->sent == 10712);
  CHECK(back->gone == true);

  session_row anonymous;
  anonymous.id = 3;
  anonymous.client = "127.0.0.1:1";
  anonymous.state = "AUTHORIZATION";
  anonymous.since = -5;
  const std::string text = line_of(to_record(anonymous));
  CHECK(text.find("login=") == std::string::npos);
  CHECK(text.find("user=") == std::string::npos);
  CHECK(text.find("gone=") == std::string::npos);
  const auto plain = read_session(*parse(text));
  REQUIRE(plain);
  CHECK_FALSE(plain->login);
  CHECK_FALSE(plain->user);
  CHECK_FALSE(plain->tls);
  CHECK_FALSE(plain->gone);
  CHECK(plain->since == -5);
  CHECK_FALSE(read_session(*parse("session\tlogin=x")));
  CHECK_FALSE(read_session(*parse("punt\tid=1")));
}

TEST_CASE("status records: the server and each punt") {
  server_row s{"frontend", 5000, 12};
  const auto server = read_server(*parse(line_of(to_record(s))));
  REQUIRE(server);
  CHECK(server->role == "frontend");
  CHECK(server->probe_interval_ms == 5000);
  CHECK(server->sessions == 12);

  punt_row up{"finchley", true, 1234, 3, 250, ""};
  const auto a = read_punt(*parse(line_of(to_record(up))));
  REQUIRE(a);
  CHECK(a->name == "finchley");
  CHECK(a->up);
  CHECK(a->latency_us == 1234u);
  CHECK(a->sessions == 3);
  CHECK(a->checked_ms_ago == 250u);
  CHECK(a->detail.empty());

  punt_row down{"docklands", false, std::nullopt, 0, std::nullopt, "cannot connect: Connection refused"};
  const auto b = read_punt(*parse(line_of(to_record(down))));
  REQUIRE(b);
  CHECK_FALSE(b->up);
  CHECK_FALSE(b->latency_us);
  CHECK_FALSE(b->checked_ms_ago);
  CHECK(b->detail == down.detail);
  CHECK_FALSE(read_punt(*parse("punt\tname=x")));
  CHECK_FALSE(read_punt(*parse("punt\tname=x\tup=2")));
}

TEST_CASE("ok, error and end") {
  CHECK(format(ok()) == "ok\tprotocol=1\n");
  CHECK(format(error(code::bad_login, "not a login: 'a b'")) == "error\tcode=bad-login\tdetail=not a login: 'a b'\n");
  CHECK(format(error(code::busy, "")) == "error\tcode=busy\n");
  CHECK(format(end()) == "end\n");
}
