// The sasl module driven through a fake session: AUTH as a client sends it,
// the verdict the chain would see (a PASS for auth, or an answer).

#include "sasl.hpp"
#include "loader.hpp"  // core::service_registry
#include "support/fakes.hpp"

#include <catch2/catch.hpp>
#include <sodium.h>

using namespace sdps;

namespace {

using testing::capture_log;
using testing::fake_config;
using testing::fake_server;
using testing::fake_session;

awaitable<verdict> call(sasl::sasl_module* m, fake_session* s, command cmd) {
  co_return co_await m->on_command(*s, cmd);
}

struct fixture {
  asio::io_context io;
  fake_server server{io};
  capture_log log;
  core::service_registry services;
  fake_config config{"sasl", "{}", 0, server, log, services};
  sasl::sasl_module module{config};
  fake_session session{io};

  verdict run(const std::string& argument) {
    return testing::run(io, call(&module, &session, command{"AUTH", argument}));
  }
};

// base64 of "authzid\0authcid\0password".
std::string plain(const std::string& authzid, const std::string& authcid, const std::string& password) {
  const std::string raw = authzid + '\0' + authcid + '\0' + password;
  std::string out(sodium_base64_ENCODED_LEN(raw.size(), sodium_base64_VARIANT_ORIGINAL), '\0');
  sodium_bin2base64(out.data(), out.size(), reinterpret_cast<const unsigned char*>(raw.data()), raw.size(),
                    sodium_base64_VARIANT_ORIGINAL);
  out.resize(out.size() - 1);
  return out;
}

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

TEST_CASE("AUTH PLAIN with an initial response becomes PASS for the identity", "[sasl]") {
  fixture f;
  auto v = f.run("PLAIN " + plain("", "fred+Sample.demon.co.uk", "pop secret"));
  REQUIRE_FALSE(v.answered());
  REQUIRE(v.replaced());
  CHECK(v.replaced()->name == "PASS");
  CHECK(v.replaced()->argument == "pop secret");
  REQUIRE(f.session.login());
  CHECK(f.session.login()->host == "sample");
  CHECK(f.session.login()->user == "fred");
}

TEST_CASE("AUTH PLAIN without an initial response asks with a continuation", "[sasl]") {
  fixture f;
  f.session.client_lines = {plain("sample", "sample", "pw")};
  auto v = f.run("plain");
  REQUIRE(v.replaced());
  CHECK(f.session.challenges == std::vector<std::string>{""});
  CHECK(v.replaced()->argument == "pw");

  f.session.client_lines = {"*"};
  auto cancelled = f.run("PLAIN");
  REQUIRE(cancelled.answered());
  CHECK_FALSE(cancelled.reply().positive);
}

TEST_CASE("AUTH PLAIN refuses another authorization identity and bad input", "[sasl]") {
  fixture f;
  auto other = f.run("PLAIN " + plain("other", "sample", "pw"));
  REQUIRE(other.answered());
  CHECK(other.reply().text.find("[AUTH]") == 0);
  CHECK_FALSE(f.session.login());
  auto garbage = f.run("PLAIN %%%");
  REQUIRE(garbage.answered());
  CHECK_FALSE(garbage.reply().positive);
  auto unknown = f.run("CRAM-MD5");
  REQUIRE(unknown.answered());
  CHECK_FALSE(unknown.reply().positive);
}

TEST_CASE("AUTH lists PLAIN; the plaintext policy refuses it and hides it from CAPA", "[sasl]") {
  fixture f;
  auto list = f.run("");
  REQUIRE(list.answered());
  CHECK(list.reply().positive);
  std::vector<std::string> lines;
  f.module.capabilities(f.session, lines);
  CHECK(lines == std::vector<std::string>{"SASL PLAIN"});

  f.session.plaintext_allowed = false;
  f.session.tls_available = true;
  lines.clear();
  f.module.capabilities(f.session, lines);
  CHECK(lines.empty());
  auto refused = f.run("PLAIN " + plain("", "sample", "pw"));
  REQUIRE(refused.answered());
  CHECK(refused.reply().text.find("STLS") != std::string::npos);
}

TEST_CASE("sasl must come before the password check", "[sasl]") {
  fixture f;
  CHECK_THROWS_AS(f.module.start(f.services), config_error);
  password_verifier verifier;
  f.services.add({"auth", password_verifier::service_id, &verifier, 1});
  CHECK_NOTHROW(f.module.start(f.services));
}
