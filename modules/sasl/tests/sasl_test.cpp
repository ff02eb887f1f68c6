// The sasl module: AUTH as a client sends it, called on a session of the
// core's engine (the verdict it returns: a login for the core, or an
// answer), and in a chain through the engine, where AUTH PLAIN passes the
// same login stages as USER/PASS.

#include "sasl.hpp"
#include "support/harness.hpp"

#include <catch2/catch.hpp>
#include <sodium.h>

using namespace sdps;
using namespace sdps::testing;

namespace {

awaitable<verdict> call(sasl::sasl_module* m, session* s, command cmd) { co_return co_await m->on_command(*s, cmd); }

/// One sasl instance and one session to call it on.
struct fixture {
  explicit fixture(core::engine_settings settings = test_engine_settings()) : session(io, 1, nullptr, settings) {}

  asio::io_context io;
  fake_server server{io};
  capture_log log;
  core::service_registry services;
  fake_config config{"sasl", "{}", 0, server, log, services};
  sasl::sasl_module module{config};
  test_session session;

  verdict run(const std::string& argument) {
    return testing::run(io, call(&module, &session.get(), command{"AUTH", argument}));
  }
  std::vector<std::string> capabilities() {
    std::vector<std::string> lines;
    module.capabilities(session, lines);
    return lines;
  }
};

/// The engine's settings with the plaintext policy of a real site:
/// passwords only under TLS or from `trusted`.
core::engine_settings tls_or_trusted(const std::vector<std::string>& trusted = {}) {
  core::engine_settings s = test_engine_settings();
  s.plaintext = core::plaintext_policy::tls_or_trusted;
  for (const auto& n : trusted) s.trusted.push_back(*base::address_prefix::parse(n));
  return s;
}

// base64 of "authzid\0authcid\0password".
std::string plain(const std::string& authzid, const std::string& authcid, const std::string& password) {
  const std::string raw = authzid + '\0' + authcid + '\0' + password;
  std::string out(sodium_base64_ENCODED_LEN(raw.size(), sodium_base64_VARIANT_ORIGINAL), '\0');
  sodium_bin2base64(out.data(), out.size(), reinterpret_cast<const unsigned char*>(raw.data()), raw.size(),
                    sodium_base64_VARIANT_ORIGINAL);
  out.resize(out.size() - 1);
  return out;
}

/// Takes part in login stages, records every login that reaches it
/// ("verify PLAIN sample pw"), and refuses in the authorize stage while
/// `refusing`: a site policy.
class policy final : public sdps::module {
 public:
  policy(module_config&, stage_set stages) : stages_(stages) {}
  stage_set login_stages() const override { return stages_; }
  awaitable<login_verdict> on_login(session&, login_stage stage, login_attempt& attempt) override {
    seen.push_back(std::string(to_string(stage)) + " " + attempt.mechanism() + " " + attempt.who().display() + " " +
                   std::string(attempt.password()));
    if (stage == login_stage::authorize && refusing)
      co_return login_verdict::refuse(response::err("[AUTH] not at this hour"), "outside hours");
    co_return login_verdict::proceed();
  }
  bool refusing = false;
  std::vector<std::string> seen;

 private:
  stage_set stages_;
};

}  // namespace

TEST_CASE("decode_plain splits the three fields", "[sasl]") {
  const auto m = sasl::decode_plain(plain("", "sample", "pop secret"));
  REQUIRE(m);
  CHECK(m->authzid.empty());
  CHECK(m->authcid == "sample");
  CHECK(m->password == "pop secret");
  CHECK_FALSE(sasl::decode_plain("not base64!"));
  CHECK_FALSE(sasl::decode_plain(plain("", "", "pw")));
  CHECK_FALSE(sasl::decode_plain(plain("", "sample", "")));
  CHECK_FALSE(sasl::decode_plain("c2FtcGxl"));  // "sample": no NULs
}

TEST_CASE("AUTH PLAIN with an initial response hands the core a login of the identity", "[sasl]") {
  fixture f;
  auto v = f.run("PLAIN " + plain("", "fred+Sample.demon.co.uk", "pop secret"));
  REQUIRE_FALSE(v.answered());
  REQUIRE(v.is_login());
  CHECK(v.login_credentials().who == identity{"sample", "fred"});
  CHECK(v.login_credentials().mechanism == "PLAIN");
  CHECK(v.login_credentials().password == "pop secret");
  // Nothing is set on the session: the core logs in once every stage passed.
  CHECK(f.session.get().login() == nullptr);
  CHECK(f.session.get().state() == pop3_state::authorization);
  // "=" is an empty initial response (RFC 5034 section 4): malformed here.
  auto empty = f.run("PLAIN =");
  REQUIRE(empty.answered());
  CHECK(empty.reply().text == "[AUTH] malformed PLAIN response");
}

TEST_CASE("AUTH PLAIN without an initial response asks with a continuation", "[sasl]") {
  fixture f;
  f.session.client().push(plain("sample", "sample", "pw"));
  auto v = f.run("plain");
  REQUIRE(v.is_login());
  CHECK(f.session.client().output() == "+ \r\n");
  CHECK(v.login_credentials().who == identity{"sample", ""});
  CHECK(v.login_credentials().password == "pw");

  SECTION("* cancels") {
    f.session.client().push("*");
    auto cancelled = f.run("PLAIN");
    REQUIRE(cancelled.answered());
    CHECK_FALSE(cancelled.reply().positive);
    CHECK(cancelled.reply().text == "AUTH cancelled");
  }
  SECTION("a line over the limit fails as any over-long line does") {
    f.session.client().push(std::string(600, 'A'));
    auto overlong = f.run("PLAIN");
    REQUIRE(overlong.answered());
    CHECK_FALSE(overlong.reply().positive);
    CHECK(overlong.reply().text == "line too long (the limit is 512 octets)");
  }
  SECTION("the client leaving fails (and nobody reads the reply)") {
    f.session.client().hang_up();
    auto gone = f.run("PLAIN");
    REQUIRE(gone.answered());
    CHECK_FALSE(gone.reply().positive);
    CHECK_FALSE(gone.is_login());
  }
}

TEST_CASE("AUTH PLAIN refuses another authorization identity and bad input", "[sasl]") {
  fixture f;
  auto other = f.run("PLAIN " + plain("other", "sample", "pw"));
  REQUIRE(other.answered());
  CHECK(other.reply().text == "[AUTH] the authorization identity must be empty or the authentication identity");
  CHECK_FALSE(other.is_login());
  auto other_user = f.run("PLAIN " + plain("jim+sample", "fred+sample", "pw"));
  REQUIRE(other_user.answered());
  CHECK(other_user.reply().text.find("[AUTH]") == 0);
  // The same identity in another form is the same identity.
  CHECK(f.run("PLAIN " + plain("fred@sample.demon.co.uk", "fred+sample", "pw")).is_login());
  auto garbage = f.run("PLAIN %%%");
  REQUIRE(garbage.answered());
  CHECK(garbage.reply().text == "[AUTH] malformed PLAIN response");
  auto bad_name = f.run("PLAIN " + plain("", "../etc", "pw"));
  REQUIRE(bad_name.answered());
  CHECK(bad_name.reply().text == "[AUTH] invalid login");
  auto unknown = f.run("CRAM-MD5");
  REQUIRE(unknown.answered());
  CHECK(unknown.reply().text == "unsupported SASL mechanism; AUTH lists them");
  auto extra = f.run("PLAIN abc def");
  REQUIRE(extra.answered());
  CHECK(extra.reply().text == "syntax: AUTH PLAIN [initial-response]");
}

TEST_CASE("AUTH lists PLAIN; the plaintext policy refuses it and hides it from CAPA", "[sasl]") {
  SECTION("allowed") {
    fixture f;
    auto list = f.run("");
    REQUIRE(list.answered());
    CHECK(list.reply().positive);
    CHECK(f.capabilities() == std::vector<std::string>{"SASL PLAIN"});
  }
  SECTION("STLS possible") {
    fixture f(tls_or_trusted());
    f.session.client().tls_offered = true;
    CHECK(f.capabilities().empty());
    auto refused = f.run("PLAIN " + plain("", "sample", "pw"));
    REQUIRE(refused.answered());
    CHECK(refused.reply().text == "[AUTH] plaintext login is not allowed here: use STLS first");
  }
  SECTION("no TLS on this listener") {
    fixture f(tls_or_trusted());
    CHECK(f.capabilities().empty());
    auto refused = f.run("PLAIN " + plain("", "sample", "pw"));
    REQUIRE(refused.answered());
    CHECK(refused.reply().text == "[AUTH] plaintext login is not allowed here: connect with TLS");
  }
  SECTION("under TLS") {
    fixture f(tls_or_trusted());
    f.session.client().tls = true;
    CHECK(f.capabilities() == std::vector<std::string>{"SASL PLAIN"});
    CHECK(f.run("PLAIN " + plain("", "sample", "pw")).is_login());
  }
  SECTION("from a trusted network") {
    fixture f(tls_or_trusted({"192.0.2.0/24"}));  // memory_transport's client is 192.0.2.7
    CHECK(f.capabilities() == std::vector<std::string>{"SASL PLAIN"});
    CHECK(f.run("PLAIN " + plain("", "sample", "pw")).is_login());
  }
}

TEST_CASE("AUTH PLAIN passes the same verify stage as USER and PASS", "[sasl]") {
  harness h;
  h.add<sasl::sasl_module>("sasl");
  h.add<fake_auth>("auth");
  auto& recorder = h.add<policy>("policy", "{}", stage_set{login_stage::verify, login_stage::authorize});
  h.start();
  auto s = h.connect();
  // A wrong password: the verifier's own refusal, as for PASS.
  REQUIRE(h.send(s, "AUTH PLAIN " + plain("", "sample", "wrong")) == "-ERR [AUTH] invalid password\r\n");
  REQUIRE(h.send(s, "USER sample") == "+OK send PASS\r\n");
  REQUIRE(h.send(s, "PASS wrong") == "-ERR [AUTH] invalid password\r\n");
  REQUIRE(h.core_log().contains("login failed: host sample from 192.0.2.7: wrong password (auth)"));
  REQUIRE(recorder.seen.empty());  // auth, before it in the verify stage, refused
  REQUIRE(s->login() == nullptr);
  // The right one, through a continuation.
  REQUIRE(h.send(s, "AUTH PLAIN") == "+ \r\n");
  REQUIRE(h.send(s, plain("", "fred+sample", "pw")) == "+OK fred+sample logged in\r\n");
  REQUIRE(recorder.seen == std::vector<std::string>{"verify PLAIN fred+sample pw", "authorize PLAIN fred+sample "});
  REQUIRE(s->state() == pop3_state::transaction);
  REQUIRE(*s->login() == identity{"sample", "fred"});
  REQUIRE(h.core_log().contains("login fred+sample from 192.0.2.7 with the test password"));
  REQUIRE_FALSE(h.core_log().contains(plain("", "fred+sample", "pw")));
}

TEST_CASE("no chain order lets AUTH PLAIN skip a login policy", "[sasl]") {
  // The policy first (where a command filter would go), between, or last.
  for (const int at : {0, 1, 2}) {
    INFO("policy at " << at);
    harness h;
    policy* p = nullptr;
    if (at == 0) p = &h.add<policy>("policy", "{}", stage_set{login_stage::authorize});
    h.add<sasl::sasl_module>("sasl");
    if (at == 1) p = &h.add<policy>("policy", "{}", stage_set{login_stage::authorize});
    h.add<fake_auth>("auth");
    if (at == 2) p = &h.add<policy>("policy", "{}", stage_set{login_stage::authorize});
    h.start();
    p->refusing = true;
    auto s = h.connect();
    REQUIRE(h.send(s, "AUTH PLAIN " + plain("", "sample", "pw")) == "-ERR [AUTH] not at this hour\r\n");
    REQUIRE(h.send(s, "USER sample") == "+OK send PASS\r\n");
    REQUIRE(h.send(s, "PASS pw") == "-ERR [AUTH] not at this hour\r\n");
    REQUIRE(p->seen == std::vector<std::string>{"authorize PLAIN sample ", "authorize USER sample "});
    REQUIRE(s->login() == nullptr);
    REQUIRE(h.core_log().contains("outside hours (policy)"));
    REQUIRE_FALSE(h.core_log().contains("login sample from"));
    p->refusing = false;
    REQUIRE(h.send(s, "AUTH PLAIN " + plain("", "sample", "pw")) == "+OK sample logged in\r\n");
  }
}

TEST_CASE("sasl needs a verifier anywhere in the chain", "[sasl][config]") {
  SECTION("none") {
    harness h;
    h.add<sasl::sasl_module>("sasl");
    REQUIRE_THROWS_WITH(h.start(), Catch::Contains("no module of the chain checks passwords"));
  }
  SECTION("after it") {
    harness h;
    h.add<sasl::sasl_module>("sasl");
    h.add<fake_auth>("auth");
    REQUIRE_NOTHROW(h.start());
  }
  SECTION("before it: sasl may come anywhere") {
    harness h;
    h.add<fake_auth>("auth");
    h.add<sasl::sasl_module>("sasl");
    h.start();
    auto s = h.connect();
    REQUIRE(h.send(s, "AUTH PLAIN " + plain("", "sample", "pw")) == "+OK sample logged in\r\n");
  }
}
