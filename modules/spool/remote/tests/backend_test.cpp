// The back end's chain as a transcript through the core's session engine:
// backend_auth, lock, a punt's spool (the shared fake), commands,
// extensions and backend_listing.

#include "backend_auth.hpp"
#include "backend_listing.hpp"
#include "commands.hpp"
#include "extensions.hpp"
#include "support/harness.hpp"
#include "lock.hpp"
#include "backend_proto/protocol.hpp"

#include <catch2/catch.hpp>

#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <fstream>

using namespace sdps;
using namespace sdps::testing;

namespace {

const std::string secret_text = "the front-end secret, 32 octets!";

/// A private secret file for the test's lifetime.
struct secret_file {
  std::filesystem::path path;
  explicit secret_file(const std::string& text = secret_text) {
    char name[] = "/tmp/sdps-backend-secret-XXXXXX";
    const int fd = ::mkstemp(name);
    REQUIRE(fd >= 0);
    ::close(fd);
    path = name;
    std::ofstream(path, std::ios::binary) << text << "\n";
    REQUIRE(::chmod(path.c_str(), 0600) == 0);
  }
  ~secret_file() {
    std::error_code ignored;
    std::filesystem::remove(path, ignored);
  }
};

/// Answers the connect event with a greeting of its own, before
/// backend_auth can: a site banner placed first in the chain.
class site_banner final : public sdps::module {
 public:
  explicit site_banner(module_config&) {}
  event_set events() const override { return {event::connect}; }
  awaitable<verdict> on_event(session&, event) override {
    co_return verdict::answer(response::ok("welcome to the back end"));
  }
};

/// A back end's chain over one fake punt holding two messages.
struct backend_chain {
  secret_file secret;
  harness h;
  fake_spool* spool = nullptr;
  backend::backend_auth* auth = nullptr;
  std::vector<std::uint64_t> sizes;  // as RETR sends them

  explicit backend_chain(const std::string& extra = "", bool banner_first = false) {
    if (banner_first) h.add<site_banner>("banner");
    auth = &h.add<backend::backend_auth>("backend_auth",
                                         "{secret: " + secret.path.string() + ", fail_delay: 0ms" + extra + "}");
    h.add<lock::lock_module>("lock");
    spool = &h.add<fake_spool>("finchley", "{}", "finchley");
    h.add<commands::commands_module>("commands");
    h.add<extensions::extensions_module>("extensions");
    h.add<backend::backend_listing>("backend_listing");
    sizes.push_back(spool->add("uidl-one", 100, "Subject: one\r\n\r\n.dotted\r\n", "alice@example.com",
                               "fred@sample.demon.co.uk"));
    sizes.push_back(spool->add("uidl-two", 200, "Subject: two\r\n\r\nhello\r\n", "", "jane@sample.demon.co.uk"));
    h.start();
  }

  /// Asks `s` for an XAUTH challenge: its nonce.
  std::string challenge(const std::shared_ptr<client>& s) {
    const std::string offered = h.send(s, "XAUTH");
    REQUIRE(offered.starts_with("+OK "));
    const auto parsed = backend_proto::parse_challenge(offered.substr(4, offered.size() - 6));
    REQUIRE(parsed);
    CHECK(parsed->punt == "finchley");
    return parsed->nonce;
  }

  /// A front end's nonce and its proof for `challenge_nonce` with `key`
  /// in `role`: what follows "XAUTH ".
  static std::pair<std::string, std::string> answer(const std::string& key_text, backend_proto::role role,
                                                    const std::string& challenge_nonce) {
    const auto key = backend_proto::backend_secret::from_contents(key_text);
    std::string nonce = backend_proto::new_nonce();
    std::string proof = backend_proto::proof(*key, role, challenge_nonce, nonce, "finchley");
    return {std::move(nonce), std::move(proof)};
  }

  /// XAUTH both ways on `s`; returns the back end's proof line.
  std::string authenticate(const std::shared_ptr<client>& s) {
    const std::string challenged = challenge(s);
    const auto [nonce, mine] = answer(secret_text, backend_proto::role::frontend, challenged);
    const std::string reply = h.send(s, "XAUTH " + nonce + " " + mine);
    REQUIRE(reply.starts_with("+OK "));
    const auto key = backend_proto::backend_secret::from_contents(secret_text);
    CHECK(backend_proto::verify_proof(*key, backend_proto::role::backend, challenged, nonce, "finchley",
                                      reply.substr(4, reply.size() - 6)));
    return reply;
  }
};

}  // namespace

TEST_CASE("before XAUTH a back end answers nothing but XAUTH, CAPA and QUIT") {
  backend_chain b;
  auto s = b.h.connect();
  const std::string refused = "-ERR [AUTH] this is an sdps back end: a front end must authenticate with XAUTH first\r\n";
  CHECK(b.h.send(s, "USER sample") == refused);
  CHECK(b.h.send(s, "PASS anything") == refused);
  CHECK(b.h.send(s, "XLIST") == refused);
  CHECK(b.h.send(s, "RETR 1") == refused);
  CHECK(b.h.send(s, "APOP sample 0123") == refused);
  CHECK(b.h.send(s, "NOSUCH") == refused);
  CHECK_FALSE(s->login());
  const std::string capa = b.h.send(s, "CAPA");
  CHECK(capa.starts_with("+OK"));
  CHECK(capa.find("XAUTH\r\n") != std::string::npos);
  CHECK(b.h.send(s, "QUIT").starts_with("+OK"));
  CHECK(b.spool->store->holders.empty());
}

/// The greeting's text, between "+OK " and CRLF.
std::string greeting_text(const std::shared_ptr<client>& s) {
  REQUIRE(s->greeting.starts_with("+OK "));
  REQUIRE(s->greeting.ends_with("\r\n"));
  return s->greeting.substr(4, s->greeting.size() - 6);
}

TEST_CASE("the greeting is a challenge a front end answers at once") {
  backend_chain b;
  auto s = b.h.connect();
  const std::string greeting = greeting_text(s);
  const auto challenge = backend_proto::parse_challenge(greeting);
  REQUIRE(challenge);
  CHECK(challenge->punt == "finchley");
  CHECK(greeting.ends_with(" sdps back end"));
  const auto key = backend_proto::backend_secret::from_contents(secret_text);
  const std::string nonce = backend_proto::new_nonce();
  const std::string answer =
      b.h.send(s, "XAUTH " + nonce + " " + backend_proto::proof(*key, backend_proto::role::frontend, challenge->nonce, nonce, "finchley"));
  REQUIRE(answer.starts_with("+OK "));
  CHECK(backend_proto::verify_proof(*key, backend_proto::role::backend, challenge->nonce, nonce, "finchley",
                             answer.substr(4, answer.size() - 6)));
  CHECK(b.h.send(s, "USER sample") == "+OK send PASS\r\n");
  // Each connection gets its own challenge.
  auto other = b.h.connect();
  CHECK(backend_proto::parse_challenge(greeting_text(other))->nonce != challenge->nonce);
}

TEST_CASE("after XAUTH, USER and PASS lock and open the punt; XLIST lists it in one reply") {
  backend_chain b;
  auto s = b.h.connect();
  b.authenticate(s);
  CHECK(b.h.send(s, "XAUTH") == "-ERR [AUTH] XAUTH already done\r\n");
  CHECK(b.h.send(s, "USER sample") == "+OK send PASS\r\n");
  // PASS's argument is ignored: the front end has checked the password.
  CHECK(b.h.send(s, "PASS").starts_with("+OK sample has 2 messages"));
  // After login too, XAUTH has its own answer, with a code, and the session goes on.
  CHECK(b.h.send(s, "XAUTH") == "-ERR [AUTH] XAUTH already done\r\n");
  CHECK(b.h.send(s, "XAUTH " + std::string(64, 'a') + " " + std::string(64, 'b')) ==
        "-ERR [AUTH] XAUTH already done\r\n");
  CHECK_FALSE(s->closed());
  CHECK(s->login()->display() == "sample");
  CHECK(b.h.core_log().contains("login sample from 192.0.2.7 with the front end's word"));
  CHECK(b.spool->store->holders.count(s->session().id()) == 1);
  const std::string one = std::to_string(b.sizes[0]);
  const std::string two = std::to_string(b.sizes[1]);
  CHECK(b.h.send(s, "XLIST") == "+OK 2 messages (" + std::to_string(std::stoul(one) + std::stoul(two)) +
                                    " octets)\r\n1 uidl-one " + one + " 100\r\n2 uidl-two " + two + " 200\r\n.\r\n");
  CHECK(b.h.send(s, "XLIST 1") == "-ERR syntax: XLIST\r\n");
  CHECK(b.h.send(s, "RETR 1") == "+OK " + one + " octets\r\nReturn-Path: <alice@example.com>\r\nSubject: one\r\n\r\n"
                                     "..dotted\r\n.\r\n");
  CHECK(b.h.send(s, "*ENV 2") == "+OK envelope follows\r\nOK\r\nfinchley\r\n\r\njane@sample.demon.co.uk\r\n.\r\n");
  CHECK(b.h.send(s, "XREAD 2") == "+OK message 2 marked read\r\n");
  CHECK(b.spool->store->read_marks == std::vector<std::string>{"uidl-one", "uidl-two"});
  CHECK(b.h.send(s, "XREAD 3") == "-ERR no such message, only 2 messages in maildrop\r\n");
  CHECK(b.h.send(s, "XREAD") == "-ERR syntax: XREAD msg\r\n");
  // A deleted message leaves the listing; QUIT removes it.
  CHECK(b.h.send(s, "DELE 1").starts_with("+OK"));
  CHECK(b.h.send(s, "XLIST") == "+OK 1 message (" + two + " octets)\r\n2 uidl-two " + two + " 200\r\n.\r\n");
  CHECK(b.h.send(s, "QUIT").starts_with("+OK"));
  CHECK(b.spool->store->removed == std::vector<std::string>{"uidl-one"});
}

TEST_CASE("a user login reaches the back end as user+host") {
  backend_chain b;
  auto s = b.h.connect();
  b.authenticate(s);
  CHECK(b.h.send(s, "USER Fred+Sample.demon.co.uk") == "+OK send PASS\r\n");
  CHECK(b.h.send(s, "USER ../etc") == "-ERR invalid login: use HOST or USER+HOST\r\n");
  // A bad USER forgets the one before it.
  CHECK(b.h.send(s, "PASS") == "-ERR send USER first\r\n");
  CHECK(b.h.send(s, "USER Fred+Sample.demon.co.uk") == "+OK send PASS\r\n");
  // Nothing is set on the session before every login stage has passed.
  CHECK_FALSE(s->login());
  CHECK(b.h.send(s, "PASS").starts_with("+OK fred+sample has 2 messages"));
  REQUIRE(s->login());
  CHECK(s->login()->host == "sample");
  CHECK(s->login()->user == "fred");
  CHECK(b.spool->store->prepared == std::vector<std::string>{"fred+sample #1"});
}

TEST_CASE("a second front end finds the maildrop locked") {
  backend_chain b;
  auto first = b.h.connect();
  b.authenticate(first);
  b.h.send(first, "USER sample");
  CHECK(b.h.send(first, "PASS").starts_with("+OK"));
  auto second = b.h.connect();
  b.authenticate(second);
  b.h.send(second, "USER sample");
  CHECK(b.h.send(second, "PASS") == "-ERR [IN-USE] maildrop already locked\r\n");
  // The first front end's connection drops: its lock goes with it. The
  // refused PASS used up its USER, as a front end expects (it retries
  // with USER and PASS).
  b.h.disconnect(first);
  CHECK(b.h.send(second, "PASS") == "-ERR send USER first\r\n");
  b.h.send(second, "USER sample");
  CHECK(b.h.send(second, "PASS").starts_with("+OK"));
}

TEST_CASE("a wrong proof is refused and the connection closed") {
  backend_chain b;
  SECTION("another secret") {
    auto s = b.h.connect();
    const auto [nonce, proof] =
        b.answer("a different secret of 32 octets!", backend_proto::role::frontend, b.challenge(s));
    CHECK(b.h.send(s, "XAUTH " + nonce + " " + proof) == "-ERR [AUTH] XAUTH refused\r\n");
    CHECK(s->closed());
    CHECK(b.h.log_of("backend_auth").contains("refused"));
  }
  SECTION("the back end's own proof replayed as the front end's") {
    auto s = b.h.connect();
    const auto [nonce, proof] = b.answer(secret_text, backend_proto::role::backend, b.challenge(s));
    CHECK(b.h.send(s, "XAUTH " + nonce + " " + proof).starts_with("-ERR [AUTH]"));
  }
  SECTION("an answer to an old challenge") {
    auto s = b.h.connect();
    const std::string stale = b.challenge(s);
    b.challenge(s);  // a new challenge replaces it
    const auto [nonce, proof] = b.answer(secret_text, backend_proto::role::frontend, stale);
    CHECK(b.h.send(s, "XAUTH " + nonce + " " + proof).starts_with("-ERR [AUTH]"));
  }
  SECTION("malformed answers: the wrong number of words keeps the challenge, a bad nonce uses it") {
    auto s = b.h.connect();
    const auto greeted = backend_proto::parse_challenge(s->greeting.substr(4, s->greeting.size() - 6));
    REQUIRE(greeted);
    CHECK(b.h.send(s, "XAUTH a b c") == "-ERR syntax: XAUTH, then XAUTH NONCE PROOF\r\n");
    CHECK_FALSE(s->closed());
    const auto [nonce, proof] = b.answer(secret_text, backend_proto::role::frontend, greeted->nonce);
    CHECK(b.h.send(s, "XAUTH " + nonce + " " + proof).starts_with("+OK "));
    auto t = b.h.connect();
    CHECK(b.h.send(t, "XAUTH short " + std::string(64, 'b')) == "-ERR [AUTH] XAUTH refused\r\n");
    CHECK(t->closed());
  }
  SECTION("an answer without a challenge: another module gave the greeting") {
    backend_chain c("", true);
    auto s = c.h.connect();
    CHECK(s->greeting == "+OK welcome to the back end\r\n");
    CHECK(c.h.send(s, "XAUTH " + std::string(64, 'a') + " " + std::string(64, 'b')) ==
          "-ERR send XAUTH without arguments first, for a challenge\r\n");
    CHECK_FALSE(s->closed());
    c.authenticate(s);
    CHECK(c.h.send(s, "USER sample") == "+OK send PASS\r\n");
    CHECK(c.h.send(s, "PASS").starts_with("+OK sample has 2 messages"));
  }
  SECTION("the right proof in upper case: proofs are lower-case hex") {
    auto s = b.h.connect();
    auto [nonce, upper] = b.answer(secret_text, backend_proto::role::frontend, b.challenge(s));
    for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    CHECK(b.h.send(s, "XAUTH " + nonce + " " + upper) == "-ERR [AUTH] XAUTH refused\r\n");
    CHECK(s->closed());
  }
}

TEST_CASE("backend_auth takes the punt from the chain's one spool, or from 'punt:'") {
  SECTION("two spools and no 'punt:' refuse to start") {
    secret_file secret;
    harness h;
    h.add<backend::backend_auth>("backend_auth", "{secret: " + secret.path.string() + "}");
    h.add<fake_spool>("finchley", "{}", "finchley");
    h.add<fake_spool>("docklands", "{}", "docklands");
    CHECK_THROWS_AS(h.start(), config_error);
  }
  SECTION("'punt:' names the punt in the challenge") {
    backend_chain b(", punt: docklands");
    auto s = b.h.connect();
    const std::string offered = b.h.send(s, "XAUTH");
    CHECK(offered.ends_with(" docklands\r\n"));
  }
  SECTION("a world-readable secret refuses to start") {
    secret_file secret;
    REQUIRE(::chmod(secret.path.c_str(), 0644) == 0);
    harness h;
    CHECK_THROWS_AS(h.add<backend::backend_auth>("backend_auth", "{secret: " + secret.path.string() + "}"),
                    config_error);
  }
}

TEST_CASE("XRESET ends the login without UPDATE and keeps the link, trusted, for the next login") {
  backend_chain b;
  auto s = b.h.connect();
  b.authenticate(s);
  CHECK(b.h.send(s, "CAPA").find("\r\nXRESET\r\n") != std::string::npos);
  CHECK(b.h.send(s, "XRESET") == "-ERR command not valid in the AUTHORIZATION state\r\n");
  b.h.send(s, "USER sample");
  CHECK(b.h.send(s, "PASS").starts_with("+OK sample has 2 messages"));
  CHECK(b.h.send(s, "DELE 1").starts_with("+OK"));
  CHECK(b.h.send(s, "XRESET x") == "-ERR syntax: XRESET\r\n");
  CHECK(b.h.send(s, "XRESET") == "+OK sample logged out, nothing removed; the connection stays open\r\n");
  // The lock went before the reply: another front end gets in at once.
  CHECK(b.spool->store->holders.empty());
  CHECK(b.spool->store->removed.empty());
  CHECK_FALSE(s->closed());
  CHECK_FALSE(s->login());
  CHECK(b.h.send(s, "XLIST") == "-ERR command not valid in the AUTHORIZATION state\r\n");
  auto other = b.h.connect();
  b.authenticate(other);
  b.h.send(other, "USER sample");
  CHECK(b.h.send(other, "PASS").starts_with("+OK sample has 2 messages"));
  CHECK(b.h.send(other, "XRESET").starts_with("+OK"));
  // No XAUTH again: the trust is the connection's, a login is not.
  CHECK(b.h.send(s, "USER fred+sample") == "+OK send PASS\r\n");
  CHECK(b.h.send(s, "PASS").starts_with("+OK fred+sample has 2 messages"));
  CHECK(s->login()->display() == "fred+sample");
  CHECK(b.h.send(s, "XAUTH") == "-ERR [AUTH] XAUTH already done\r\n");
}

TEST_CASE("XUPDATE KEEP removes what was marked deleted, reports the counts and keeps the link") {
  backend_chain b;
  auto s = b.h.connect();
  b.authenticate(s);
  b.h.send(s, "USER sample");
  CHECK(b.h.send(s, "PASS").starts_with("+OK sample has 2 messages"));
  CHECK(b.h.send(s, "XUPDATE NOW") == "-ERR syntax: XUPDATE [KEEP]\r\n");
  CHECK(b.h.send(s, "DELE 1").starts_with("+OK"));
  CHECK(b.h.send(s, "XUPDATE keep") == "+OK 1 0\r\n");
  CHECK(b.spool->store->removed == std::vector<std::string>{"uidl-one"});
  CHECK(b.spool->store->holders.empty());
  CHECK_FALSE(s->closed());
  CHECK_FALSE(s->login());
  b.h.send(s, "USER sample");
  CHECK(b.h.send(s, "PASS").starts_with("+OK sample has 1 message"));
  // Plain XUPDATE, as a front end from before XRESET sends it: UPDATE, then
  // the back end closes the connection.
  CHECK(b.h.send(s, "XUPDATE") == "+OK 0 0\r\n");
  CHECK(s->closed());
}
