// The auth module: USER and PASS as a client sends them on a session of the
// core's engine, and the verify stage run on the login they hand the core
// (what the verify stage answers, how long it takes); then whole logins
// through the engine, where the core logs and counts them.

#include "auth_module.hpp"
#include "config.hpp"  // core::yaml_settings: module settings from inline YAML
#include "support/harness.hpp"
#include "support/postgres.hpp"
#include "support/temp_dir.hpp"

#include <catch2/catch.hpp>
#include <sodium.h>

#include <algorithm>
#include <map>
#include <mutex>
#include <thread>

using namespace sdps;
using namespace std::chrono_literals;
using boost::asio::ip::make_address;

namespace {

using testing::capture_log;
using testing::fake_config;
using testing::fake_server;
using testing::test_session;

/// What one command came to: an answer, or a login the core would run;
/// for a login, what the verify stage (this instance's on_login) said.
struct outcome {
  bool answered = false;
  bool positive = false;
  std::string text;  ///< the answer's, or the verify stage's refusal's
  bool login = false;
  identity who;          ///< the login's
  bool accepted = false;  ///< the verify stage accepted the credentials
  std::string method;     ///< how ("the POP3 password")
  std::string reason;     ///< why it refused (the log's and the metrics' words)
  std::chrono::milliseconds took{};
  int ticks = 0;  // other work the event loop did meanwhile
};

// Plain coroutine functions owning their arguments (no lambda parameters).
// The command, then, for a login, the verify stage as the core runs it.
awaitable<outcome> exchange(auth::auth_module* m, session* s, command cmd) {
  outcome out;
  verdict v = co_await m->on_command(*s, cmd);
  if (v.answered()) {
    out.answered = true;
    out.positive = v.reply().positive;
    out.text = v.reply().text;
    co_return out;
  }
  if (!v.is_login()) co_return out;
  out.login = true;
  login_attempt attempt(std::move(v.login_credentials()));
  out.who = attempt.who();
  login_verdict said = co_await m->on_login(*s, login_stage::verify, attempt);
  if (said.refused()) {
    out.text = said.reply().text;
    out.reason = said.reason();
  } else {
    out.accepted = attempt.accepted();
    out.method = attempt.method();
  }
  co_return out;
}

awaitable<void> ticker(std::shared_ptr<int> ticks, std::shared_ptr<bool> stop) {
  asio::steady_timer timer(co_await asio::this_coro::executor);
  while (!*stop) {
    timer.expires_after(5ms);
    co_await timer.async_wait(asio::use_awaitable);
    ++*ticks;
  }
}

/// The host database both kinds of test use.
void write_hosts(const std::filesystem::path& file) {
  hostdb::database db;
  hostdb::host_record sample{"sample",
                             {*base::address_prefix::parse("192.0.2.0/24"), *base::address_prefix::parse("2001:db8::/64")},
                             hostdb::hash_password("dial pw", hostdb::cost::min),
                             hostdb::hash_password("pop3 secret", hostdb::cost::min)};
  db.add(sample);
  db.add({"nopop", {*base::address_prefix::parse("198.51.100.7")}, hostdb::hash_password("dial only", hostdb::cost::min),
          ""});
  hostdb::save(file, db);
}

/// A host database, a site config, a module built from inline YAML, and a
/// session of the core's engine to call it on.
struct fixture {
  explicit fixture(const std::string& module_yaml = "fail_delay: 50ms", const std::string& cost = "min",
                   bool write_hosts_file = true, core::engine_settings settings = testing::test_engine_settings()) {
    REQUIRE(sodium_init() >= 0);
    if (write_hosts_file) write_hosts(hosts_file());
    site_yaml = YAML::Load("hosts: hosts\npassword_cost: " + cost + "\n");
    site.emplace(site_yaml, dir / "sdps.yaml", "");
    options.emplace(YAML::Load(module_yaml.empty() ? "{}" : module_yaml), dir / "sdps.yaml",
                    "module instance 'auth'", std::set<std::string>{});
    server.emplace(io, *site, &log, 2);
    config.emplace("auth", *options, *server, log);
    // What the module logs through the session (its debug lines) lands in
    // `log` too.
    session_log.copy_to(&log);
    session.emplace(io, 7, nullptr, std::move(settings), &session_log);
    from("203.0.113.50");
  }

  void build() { module = std::make_unique<auth::auth_module>(*config); }

  std::filesystem::path hosts_file() const { return dir / "hosts"; }
  /// The client's address.
  void from(const char* address) { session->client().remote = {make_address(address), 40000}; }

  outcome run(const std::string& line) {
    command cmd;
    const auto space = line.find(' ');
    cmd.name = line.substr(0, space);
    if (space != std::string::npos) cmd.argument = line.substr(space + 1);
    auto ticks = std::make_shared<int>(0);
    auto stop = std::make_shared<bool>(false);
    asio::co_spawn(io, ticker(ticks, stop), asio::detached);
    std::optional<outcome> result;
    std::exception_ptr error;
    const auto start = std::chrono::steady_clock::now();
    auto took = std::make_shared<std::chrono::milliseconds>();
    asio::co_spawn(io, exchange(module.get(), &session->get(), std::move(cmd)),
                   [&, stop, took, start](std::exception_ptr e, outcome o) {
                     *took = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() -
                                                                                   start);
                     *stop = true;
                     error = e;
                     if (!e) result.emplace(std::move(o));
                   });
    io.restart();
    io.run();
    if (error) std::rethrow_exception(error);
    REQUIRE(result);
    result->took = *took;
    result->ticks = *ticks;
    return std::move(*result);
  }

  /// USER then PASS from `address`; the PASS outcome.
  outcome login(const std::string& user, const std::string& password, const char* address = "203.0.113.50") {
    from(address);
    const outcome u = run("USER " + user);
    REQUIRE(u.answered);
    REQUIRE(u.positive);
    return run("PASS " + password);
  }

  sdps::testing::temp_dir dir;
  capture_log log;
  asio::io_context io;
  YAML::Node site_yaml;
  std::optional<core::yaml_settings> site;
  std::optional<core::yaml_settings> options;
  std::optional<fake_server> server;
  std::optional<fake_config> config;
  std::unique_ptr<auth::auth_module> module;
  logging::source_log session_log{log_level::error, "test"};
  std::optional<test_session> session;
};

/// Polls `condition` every 10 ms for up to 20 s (what the host store's
/// thread does comes a moment later).
template <typename F>
bool eventually(F condition) {
  const auto deadline = std::chrono::steady_clock::now() + 20s;
  while (!condition()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(10ms);
  }
  return true;
}

std::size_t count_lines(const capture_log& log, std::string_view text) {
  const auto lines = log.lines();
  return static_cast<std::size_t>(
      std::count_if(lines.begin(), lines.end(), [&](const std::string& l) { return l.find(text) != std::string::npos; }));
}

/// The verify stage accepted the login.
bool verified(const outcome& o) { return o.login && o.accepted && o.reason.empty(); }

/// The verify stage refused it, as it refuses every bad login.
bool refused(const outcome& o) { return o.login && !o.accepted && o.text == "[AUTH] invalid login"; }

}  // namespace

TEST_CASE("auth: the POP3 password works from any address; spaces are part of it", "[auth][pass]") {
  fixture f;
  f.build();
  const outcome o = f.login("sample", "pop3 secret");
  CHECK(verified(o));  // the later stages (lock, the maildrop) finish the login
  CHECK(o.who == identity{"sample", ""});
  CHECK(o.method == "the POP3 password");
  // The core, not auth, sets the login once every stage has passed.
  CHECK(f.session->get().login() == nullptr);
  CHECK(f.session->get().state() == pop3_state::authorization);

  fixture g;
  g.build();
  const outcome user = g.login("Fred@Sample.demon.co.uk", "pop3 secret", "2001:db8:ffff::1");
  CHECK(verified(user));
  CHECK(user.who.display() == "fred+sample");
  CHECK(user.method == "the POP3 password");
}

TEST_CASE("auth: the dialup password works only from the host's dialup addresses", "[auth][pass]") {
  fixture f;
  f.build();
  for (const auto& [host, password, address] :
       std::vector<std::tuple<std::string, std::string, const char*>>{
           {"sample", "dial pw", "192.0.2.77"},
           {"sample", "dial pw", "::ffff:192.0.2.77"},  // IPv4 through a dual-stack listener
           {"sample", "dial pw", "2001:db8::abcd"},
           {"nopop", "dial only", "198.51.100.7"}}) {
    INFO(host << " from " << address);
    const outcome o = f.login(host, password, address);
    CHECK(verified(o));
    CHECK(o.method == "the dialup password");
  }

  const outcome outside = f.login("sample", "dial pw", "192.0.3.1");
  CHECK(refused(outside));
  CHECK(outside.reason == "wrong password");
  CHECK(refused(f.login("sample", "dial pw", "2001:db8:0:1::1")));
  CHECK(refused(f.login("nopop", "dial only", "198.51.100.8")));
  CHECK(refused(f.login("nopop", "", "198.51.100.7")));
}

TEST_CASE("auth: a failing PASS answers after the delay, and the loop serves others meanwhile", "[auth][pass]") {
  fixture f("fail_delay: 300ms");
  f.build();
  const outcome o = f.login("sample", "wrong");
  CHECK(refused(o));
  CHECK(o.took >= 300ms);
  // The ticker (another coroutine on the same io_context) ran throughout.
  CHECK(o.ticks >= 20);
  CHECK(o.reason == "wrong password");

  // Success does not wait.
  const outcome good = f.login("sample", "pop3 secret");
  CHECK(verified(good));
  CHECK(good.took < 300ms);
}

TEST_CASE("auth: every failure looks the same to the client", "[auth][pass]") {
  fixture f("fail_delay: 10ms");
  f.build();
  const outcome wrong = f.login("sample", "wrong");
  const outcome unknown = f.login("nosuchhost", "pop3 secret");
  const outcome unset = f.login("nopop", "whatever", "203.0.113.50");
  const outcome user_wrong = f.login("fred+sample", "dial pw", "203.0.113.50");
  for (const outcome* o : {&wrong, &unknown, &unset, &user_wrong}) {
    CHECK(refused(*o));
    CHECK(o->text == wrong.text);
  }
  // Only the log and the metrics are told why.
  CHECK(wrong.reason == "wrong password");
  CHECK(unknown.reason == "unknown host");
  CHECK(unset.reason == "no usable password");
  CHECK(user_wrong.reason == "wrong password");
  // USER says +OK for an unknown host: no enumeration.
  const outcome user = f.run("USER nosuchhost");
  CHECK(user.positive);
  const outcome known = f.run("USER sample");
  CHECK(known.text == user.text);
}

TEST_CASE("auth: the connection stays usable after a failure", "[auth][pass]") {
  fixture f("fail_delay: 10ms");
  f.build();
  CHECK(refused(f.login("sample", "wrong")));
  // PASS again without USER: a refused PASS uses up its USER (RFC 1939).
  const outcome again = f.run("PASS pop3 secret");
  CHECK(again.answered);
  CHECK_FALSE(again.login);
  CHECK(again.text == "send USER first");
  CHECK(verified(f.login("sample", "pop3 secret")));
}

TEST_CASE("auth: PASS without USER, bad USER, APOP", "[auth][user]") {
  fixture f;
  f.build();
  const outcome pass = f.run("PASS pop3 secret");
  CHECK(pass.answered);
  CHECK_FALSE(pass.positive);
  CHECK(pass.text == "send USER first");
  CHECK(pass.took < 50ms);  // nothing to verify, nothing to delay

  const outcome user = f.run("USER sample");
  CHECK(user.positive);
  CHECK(user.text == "send PASS");
  const outcome bad = f.run("USER fred sample");
  CHECK(bad.answered);
  CHECK_FALSE(bad.positive);
  CHECK(bad.text == "invalid user name: use HOST or USER+HOST");
  // The earlier USER is forgotten too: PASS is no login.
  const outcome after_bad = f.run("PASS pop3 secret");
  CHECK_FALSE(after_bad.login);
  CHECK(after_bad.text == "send USER first");
  CHECK_FALSE(f.run("USER").positive);
  CHECK_FALSE(f.run("USER sample.example.com").positive);

  const outcome apop = f.run("APOP sample 0123456789abcdef0123456789abcdef");
  CHECK(apop.answered);
  CHECK_FALSE(apop.positive);
  CHECK(apop.text.find("not implemented") != std::string::npos);
}

TEST_CASE("auth: commands and capabilities", "[auth]") {
  fixture f;
  f.build();
  std::vector<std::string> names;
  for (const auto& spec : f.module->commands()) {
    names.push_back(spec.name);
    CHECK(spec.states == state_mask(pop3_state::authorization));
  }
  CHECK(names == std::vector<std::string>{"USER", "PASS", "APOP"});
  CHECK(f.module->login_stages().contains(login_stage::verify));
  CHECK_FALSE(f.module->login_stages().contains(login_stage::authorize));
  std::vector<std::string> lines;
  f.module->capabilities(*f.session, lines);
  CHECK(lines == std::vector<std::string>{"USER", "AUTH-RESP-CODE"});
}

TEST_CASE("auth: the plaintext policy refuses USER and PASS and hides USER", "[auth][user]") {
  core::engine_settings policy = testing::test_engine_settings();
  policy.plaintext = core::plaintext_policy::tls_or_trusted;
  fixture f("fail_delay: 1ms", "min", true, policy);
  f.build();
  std::vector<std::string> lines;
  f.module->capabilities(*f.session, lines);
  CHECK(lines == std::vector<std::string>{"AUTH-RESP-CODE"});
  const outcome user = f.run("USER sample");
  CHECK(user.text == "[AUTH] plaintext login is not allowed here: connect with TLS");
  f.session->client().tls_offered = true;
  const outcome pass = f.run("PASS pop3 secret");
  CHECK_FALSE(pass.login);
  CHECK(pass.text == "[AUTH] plaintext login is not allowed here: use STLS first");
  // Under TLS, passwords may go.
  f.session->client().tls = true;
  CHECK(verified(f.login("sample", "pop3 secret")));
}

TEST_CASE("auth: only logins with a password are its to verify", "[auth][pass]") {
  fixture f;
  f.build();
  login_attempt front_end(credentials({"sample", ""}, "XAUTH", ""));
  const login_verdict v =
      testing::run(f.io, f.module->on_login(*f.session, login_stage::verify, front_end));
  CHECK_FALSE(v.refused());
  CHECK_FALSE(front_end.accepted());
  // AUTH PLAIN (from sasl) is checked as PASS is.
  login_attempt plain(credentials({"sample", ""}, "PLAIN", "pop3 secret"));
  CHECK_FALSE(testing::run(f.io, f.module->on_login(*f.session, login_stage::verify, plain)).refused());
  CHECK(plain.accepted());
  CHECK(plain.method() == "the POP3 password");
  login_attempt wrong(credentials({"sample", ""}, "PLAIN", "wrong"));
  CHECK(testing::run(f.io, f.module->on_login(*f.session, login_stage::verify, wrong)).refused());
  CHECK_FALSE(wrong.accepted());
}

TEST_CASE("auth: the password never reaches the log", "[auth][pass]") {
  fixture f("fail_delay: 1ms");
  f.build();
  CHECK(verified(f.login("sample", "pop3 secret")));
  CHECK(verified(f.login("sample", "pop3 secret")));  // from the cache
  f.login("sample", "Tr0ub4dor&3");
  f.login("nosuchhost", "Tr0ub4dor&3");
  CHECK(f.log.size() > 0);
  CHECK_FALSE(f.log.contains("pop3 secret"));
  CHECK_FALSE(f.log.contains("Tr0ub4dor"));
}

TEST_CASE("auth: an edited database is picked up at the next PASS", "[auth][reload]") {
  fixture f("fail_delay: 1ms");
  f.build();
  CHECK(refused(f.login("newhost", "new pw")));
  hostdb::edit(f.hosts_file(), [](hostdb::database& db) {
    db.find("sample")->pop3_hash = hostdb::hash_password("changed", hostdb::cost::min);
    return db.add({"newhost", {}, "", hostdb::hash_password("new pw", hostdb::cost::min)});
  });
  CHECK(verified(f.login("newhost", "new pw")));
  CHECK(verified(f.login("sample", "changed")));
  CHECK(refused(f.login("sample", "pop3 secret")));
}

TEST_CASE("auth: a broken file keeps the old data, at PASS and at SIGHUP", "[auth][reload]") {
  fixture f("fail_delay: 1ms");
  f.build();
  std::string text = sdps::testing::read_text(f.hosts_file());
  text += "this is broken\n";
  text += "newhost - - " + hostdb::hash_password("new pw", hostdb::cost::min) + "\n";
  sdps::testing::write_text(f.hosts_file(), text);

  CHECK(refused(f.login("newhost", "new pw")));
  CHECK(verified(f.login("sample", "pop3 secret")));
  CHECK(f.log.contains("hosts:6: expected 4 fields"));
  CHECK(f.log.contains("keeping the 2 host(s) loaded before"));
  f.module->reload();
  CHECK(eventually([&] { return count_lines(f.log, "keeping the 2 host(s) loaded before") == 2; }));
  CHECK(refused(f.login("newhost", "new pw")));
  CHECK(verified(f.login("sample", "pop3 secret")));

  // Fixed by hand: the next PASS reads it.
  text.replace(text.find("this is broken\n"), 15, "");
  sdps::testing::write_text(f.hosts_file(), text);
  CHECK(verified(f.login("newhost", "new pw")));
}

TEST_CASE("auth: SIGHUP reload reads a changed file", "[auth][reload]") {
  fixture f("fail_delay: 1ms");
  f.build();
  f.module->reload();
  CHECK(eventually([&] { return f.log.contains("unchanged, 2 host(s)"); }));
  hostdb::edit(f.hosts_file(), [](hostdb::database& db) { return db.remove("sample"); });
  f.module->reload();
  CHECK(eventually([&] { return f.log.contains("loaded 1 host(s), 1 changed"); }));
  CHECK(refused(f.login("sample", "pop3 secret")));
  CHECK(verified(f.login("nopop", "dial only", "198.51.100.7")));
}

TEST_CASE("auth: start-up skips malformed lines, and survives a missing file", "[auth][reload]") {
  {
    fixture f("fail_delay: 1ms", "min", false);
    sdps::testing::write_text(f.hosts_file(), "broken\nsample - - " +
                                               hostdb::hash_password("pw", hostdb::cost::min) + "\n");
    f.build();
    CHECK(f.log.contains("hosts:1: expected 4 fields"));
    CHECK(verified(f.login("sample", "pw")));
  }
  {
    fixture f("fail_delay: 1ms", "min", false);
    f.build();
    CHECK(f.log.contains("does not exist"));
    CHECK(refused(f.login("sample", "pw")));
    hostdb::edit(f.hosts_file(), [](hostdb::database& db) {
      return db.add({"sample", {}, "", hostdb::hash_password("pw", hostdb::cost::min)});
    });
    CHECK(verified(f.login("sample", "pw")));
  }
}

TEST_CASE("auth: configuration errors", "[auth][config]") {
  {
    fixture f("fail_delay: 1ms", "cheap");
    CHECK_THROWS_AS(f.build(), config_error);
  }
  {
    fixture f("fail_delay: 31s");
    CHECK_THROWS_AS(f.build(), config_error);
  }
  {
    fixture f("fail_delay: soon");
    CHECK_THROWS_AS(f.build(), config_error);
  }
  {
    fixture f;
    f.site_yaml = YAML::Load("password_cost: min\n");
    f.site.emplace(f.site_yaml, f.dir / "sdps.yaml", "");
    try {
      f.build();
      FAIL("no error without 'hosts'");
    } catch (const config_error& e) {
      CHECK(std::string(e.what()).find("hosts") != std::string::npos);
    }
  }
  {
    fixture f("");  // fail_delay defaults to 1s
    f.build();
    const outcome o = f.login("sample", "wrong");
    CHECK(refused(o));
    CHECK(o.took >= 1000ms);
  }
}

TEST_CASE("auth: verification at the interactive cost runs off the event loop", "[auth][pass][slow]") {
  // No hosts: the dummy hash has the configured cost.
  fixture f("fail_delay: 0ms", "interactive", false);
  f.build();
  const outcome o = f.login("nosuchhost", "whatever");
  CHECK(refused(o));
  // Two Argon2id checks of 64 MiB each take tens of milliseconds at least;
  // the loop kept ticking through them.
  CHECK(o.ticks >= 2);
}

TEST_CASE("run_blocking resumes the caller on its own event loop thread", "[auth][loop]") {
  capture_log log;
  asio::io_context io;
  YAML::Node node = YAML::Load("{}");
  core::yaml_settings site(node, "/nonexistent/sdps.yaml", "");
  fake_server server(io, site, &log);
  std::thread::id loop_thread, worker_thread, resumed_thread;
  asio::co_spawn(
      io,
      [&]() -> awaitable<void> {
        loop_thread = std::this_thread::get_id();
        auto job = [] { return std::this_thread::get_id(); };
        worker_thread = co_await run_blocking(server, std::move(job));
        resumed_thread = std::this_thread::get_id();
      },
      asio::detached);
  io.run();
  CHECK(worker_thread != loop_thread);
  CHECK(resumed_thread == loop_thread);
}

// -- the auth cache (auth_cache_ttl, auth_cache_size) -------------------------

namespace {

constexpr const char* cache_hit = "auth cache: sample: the POP3 password passed its check";

}  // namespace

TEST_CASE("auth cache: a repeated good login is answered from the cache", "[auth][cache]") {
  fixture f("fail_delay: 1ms");
  f.build();
  CHECK(verified(f.login("sample", "pop3 secret")));
  CHECK_FALSE(f.log.contains("auth cache:"));  // the first one ran Argon2id
  CHECK(f.module->cache()->size() == 1);
  CHECK(verified(f.login("fred+sample", "pop3 secret")));  // any login of the host
  CHECK(verified(f.login("sample", "pop3 secret")));
  CHECK(count_lines(f.log, cache_hit) == 2);
  // A cached check says which password it was, as a full one does.
  const outcome cached = f.login("sample", "pop3 secret");
  CHECK(cached.method == "the POP3 password");
  CHECK(count_lines(f.log, cache_hit) == 3);
  CHECK_FALSE(f.log.contains("pop3 secret"));
  CHECK(f.module->cache()->size() == 1);
}

TEST_CASE("auth cache: a wrong password right after a good login is refused after the delay", "[auth][cache]") {
  fixture f("fail_delay: 300ms");
  f.build();
  CHECK(verified(f.login("sample", "pop3 secret")));
  CHECK(verified(f.login("sample", "pop3 secret")));
  for (const char* wrong : {"pop3 secreT", "pop3 secret ", "dial pw"}) {
    const outcome o = f.login("sample", wrong);
    CHECK(refused(o));
    CHECK(o.took >= 300ms);
    CHECK(o.reason == "wrong password");
  }
  // The failures left the good entry alone, and cached nothing of theirs.
  CHECK(f.module->cache()->size() == 1);
  CHECK(verified(f.login("sample", "pop3 secret")));
  CHECK(count_lines(f.log, cache_hit) == 2);
}

TEST_CASE("auth cache: the dialup address rule applies to every login", "[auth][cache]") {
  fixture f("fail_delay: 1ms");
  f.build();
  CHECK(verified(f.login("sample", "dial pw", "192.0.2.77")));
  CHECK(verified(f.login("sample", "dial pw", "192.0.2.77")));
  CHECK(f.log.contains("auth cache: sample: the dialup password passed its check"));
  CHECK(refused(f.login("sample", "dial pw", "192.0.3.1")));
  CHECK(refused(f.login("sample", "dial pw", "2001:db8:0:1::1")));
}

TEST_CASE("auth cache: a changed password refuses the old one at once", "[auth][cache][reload]") {
  fixture f("fail_delay: 1ms");
  f.build();
  CHECK(verified(f.login("sample", "pop3 secret")));
  CHECK(verified(f.login("sample", "pop3 secret")));
  hostdb::edit(f.hosts_file(), [](hostdb::database& db) {
    db.find("sample")->pop3_hash = hostdb::hash_password("changed", hostdb::cost::min);
    return true;
  });
  CHECK(refused(f.login("sample", "pop3 secret")));
  CHECK(f.module->cache()->size() == 0);
  CHECK(verified(f.login("sample", "changed")));
  CHECK(count_lines(f.log, cache_hit) == 1);
}

TEST_CASE("auth cache: a host's entries go when its record changes, others stay", "[auth][cache][reload]") {
  fixture f("fail_delay: 1ms");
  f.build();
  CHECK(verified(f.login("sample", "pop3 secret")));
  CHECK(verified(f.login("nopop", "dial only", "198.51.100.7")));
  CHECK(f.module->cache()->size() == 2);

  SECTION("a new dialup address list, announced by the store") {
    hostdb::edit(f.hosts_file(), [](hostdb::database& db) {
      db.find("sample")->dialup.push_back(*base::address_prefix::parse("198.51.100.0/24"));
      return true;
    });
    CHECK(verified(f.login("nopop", "dial only", "198.51.100.7")));
    CHECK(eventually([&] { return f.module->cache()->size() == 1; }));
    CHECK(f.log.contains("auth cache: nopop: the dialup password passed its check"));
  }
  SECTION("a removed host, announced by the store") {
    hostdb::edit(f.hosts_file(), [](hostdb::database& db) { return db.remove("sample"); });
    CHECK(eventually([&] { return f.module->cache()->size() == 1; }));
    CHECK(refused(f.login("sample", "pop3 secret")));
  }
  SECTION("an unchanged record keeps its entry") {
    hostdb::edit(f.hosts_file(), [](hostdb::database& db) {
      return db.add({"newhost", {}, "", hostdb::hash_password("new pw", hostdb::cost::min)});
    });
    CHECK(verified(f.login("newhost", "new pw")));  // the new version is in force
    CHECK(f.module->cache()->size() == 3);
  }
}

TEST_CASE("auth cache: auth_cache_ttl 0 or auth_cache_size 0 turn it off; limits", "[auth][cache][config]") {
  for (const char* off : {"fail_delay: 1ms\nauth_cache_ttl: 0s", "fail_delay: 1ms\nauth_cache_size: 0"}) {
    fixture f(off);
    f.build();
    CHECK(verified(f.login("sample", "pop3 secret")));
    CHECK(verified(f.login("sample", "pop3 secret")));
    CHECK_FALSE(f.log.contains("auth cache:"));
    CHECK(f.module->cache()->size() == 0);
  }
  for (const char* bad : {"auth_cache_size: -1", "auth_cache_size: 10000001", "auth_cache_ttl: 8d",
                          "auth_cache_ttl: 169h", "auth_cache_ttl: later"}) {
    fixture f(bad);
    CHECK_THROWS_AS(f.build(), config_error);
  }
}

TEST_CASE("auth cache: entries expire after auth_cache_ttl", "[auth][cache]") {
  fixture f("fail_delay: 1ms\nauth_cache_ttl: 2s");
  f.build();
  CHECK(verified(f.login("sample", "pop3 secret")));
  CHECK(verified(f.login("sample", "pop3 secret")));
  CHECK(count_lines(f.log, cache_hit) == 1);
  std::this_thread::sleep_for(2100ms);
  CHECK(verified(f.login("sample", "pop3 secret")));  // checked in full again
  CHECK(count_lines(f.log, cache_hit) == 1);
  CHECK(verified(f.login("sample", "pop3 secret")));
  CHECK(count_lines(f.log, cache_hit) == 2);
}

// -- whole logins, through the core's session engine ---------------------------

namespace {

/// Refuses every login in the authorize stage while `refusing`: a site
/// policy after auth.
class policy final : public sdps::module {
 public:
  explicit policy(module_config&) {}
  stage_set login_stages() const override { return {login_stage::authorize}; }
  awaitable<login_verdict> on_login(session&, login_stage, login_attempt&) override {
    if (!refusing) co_return login_verdict::proceed();
    co_return login_verdict::refuse(response::err("[AUTH] not at this hour"), "outside hours");
  }
  bool refusing = true;
};

/// auth (and a policy after it) in a chain without a maildrop, over the
/// same host database.
struct chain {
  explicit chain(bool with_policy = false) : h(site_for(dir)) {
    REQUIRE(sodium_init() >= 0);
    h.add<auth::auth_module>("auth", "fail_delay: 1ms");
    if (with_policy) refuser = &h.add<policy>("policy");
    h.start();
    s = h.connect();
    s->connection().remote = {make_address("203.0.113.50"), 40000};
  }
  static std::string site_for(const sdps::testing::temp_dir& d) {
    write_hosts(d / "hosts");
    return "{hosts: " + (d / "hosts").string() + ", password_cost: min}";
  }
  std::string send(const std::string& line) { return h.send(s, line); }

  sdps::testing::temp_dir dir;
  testing::harness h;
  policy* refuser = nullptr;
  std::shared_ptr<testing::client> s;
};

}  // namespace

TEST_CASE("auth in a chain: the core logs the login auth verified, and only then", "[auth][chain]") {
  chain c;
  REQUIRE(c.send("USER sample") == "+OK send PASS\r\n");
  REQUIRE(c.send("PASS Tr0ub4dor&3") == "-ERR [AUTH] invalid login\r\n");
  REQUIRE(c.h.core_log().contains("login failed: host sample from 203.0.113.50: wrong password (auth)"));
  // The refused PASS used up its USER.
  REQUIRE(c.send("PASS pop3 secret") == "-ERR send USER first\r\n");
  REQUIRE(c.s->login() == nullptr);
  REQUIRE(c.send("USER fred+sample") == "+OK send PASS\r\n");
  REQUIRE(c.send("PASS pop3 secret") == "+OK fred+sample logged in\r\n");
  REQUIRE(c.s->state() == pop3_state::transaction);
  REQUIRE(*c.s->login() == identity{"sample", "fred"});
  REQUIRE(c.h.core_log().contains("login fred+sample from 203.0.113.50 with the POP3 password"));
  // The module itself logs no login: the core does, once.
  REQUIRE_FALSE(c.h.log_of("auth").contains("login fred+sample"));
  for (const char* secret : {"pop3 secret", "Tr0ub4dor"}) {
    REQUIRE_FALSE(c.h.core_log().contains(secret));
    REQUIRE_FALSE(c.h.log_of("auth").contains(secret));
  }
}

TEST_CASE("auth in a chain: a login a later stage refuses is not logged, counted or kept", "[auth][chain]") {
  chain c(true);
  REQUIRE(c.send("USER sample") == "+OK send PASS\r\n");
  REQUIRE(c.send("PASS pop3 secret") == "-ERR [AUTH] not at this hour\r\n");
  REQUIRE(c.h.core_log().contains("login failed: host sample from 203.0.113.50: outside hours (policy)"));
  REQUIRE_FALSE(c.h.core_log().contains("login sample from"));
  REQUIRE(c.s->login() == nullptr);
  REQUIRE(c.s->state() == pop3_state::authorization);
  // Nothing of that login is left for a bare second PASS.
  REQUIRE(c.send("PASS pop3 secret") == "-ERR send USER first\r\n");
  c.refuser->refusing = false;
  REQUIRE(c.send("USER sample") == "+OK send PASS\r\n");
  REQUIRE(c.send("PASS pop3 secret") == "+OK sample logged in\r\n");
  REQUIRE(c.h.core_log().contains("login sample from 203.0.113.50 with the POP3 password"));
}

// -- the host store in PostgreSQL ---------------------------------------------

namespace {

/// A fixture whose `hosts:` is a database of `server` holding write_hosts()'s hosts.
struct pg_fixture : fixture {
  explicit pg_fixture(testing::postgres_server& server, const std::string& module_yaml = "fail_delay: 1ms")
      : fixture(module_yaml, "min", true), db(server.create_database()), uri(server.uri(db)) {
    auto admin = hostdb::open_admin(hostdb::locate(uri, "/"));
    admin->init();
    admin->import_file(hosts_file());
    site_yaml = YAML::Load("hosts: \"" + uri + "\"\npassword_cost: min\n");
    site.emplace(site_yaml, dir / "sdps.yaml", "");
  }
  std::string db, uri;
};

}  // namespace

TEST_CASE("auth on a database: logins, a change announced, the cache's word while it is down", "[auth][pg]") {
  testing::postgres_server server;
  pg_fixture f(server, "fail_delay: 1ms\nstore_retry_max: 200ms");
  f.build();
  REQUIRE(f.module->store().up());
  CHECK(f.module->check().empty());
  CHECK(verified(f.login("sample", "pop3 secret")));
  CHECK(verified(f.login("nopop", "dial only", "198.51.100.7")));
  CHECK(refused(f.login("nosuchhost", "x")));
  CHECK(f.module->cache()->size() == 2);
  // Listening: a change drops that host's entries.
  REQUIRE(eventually([&] { return f.log.contains("listening for changes"); }));
  server.sql("UPDATE sdps_hosts SET dialup = '{198.51.100.0/24}' WHERE name = 'nopop'", f.db);
  REQUIRE(eventually([&] { return f.module->cache()->size() == 1; }));
  CHECK(f.log.contains("auth cache: nopop changed in the host store: its entries dropped"));
  CHECK(verified(f.login("nopop", "dial only", "198.51.100.8")));  // the new prefix, from the database

  server.stop();
  REQUIRE(eventually([&] { return !f.module->store().up(); }));
  // What the cache vouches for passes; nothing else does, and the reply says why.
  const outcome cached = f.login("sample", "pop3 secret");
  CHECK(verified(cached));
  CHECK(cached.method == "the POP3 password");
  CHECK(f.log.contains("(the host store is unavailable)"));
  CHECK(verified(f.login("nopop", "dial only", "198.51.100.9")));
  // A dialup entry vouches only from the prefixes it was checked with.
  for (const auto& [user, password, from] : std::vector<std::tuple<std::string, std::string, const char*>>{
           {"nopop", "dial only", "203.0.113.50"},
           {"sample", "wrong", "203.0.113.50"},
           {"sample", "dial pw", "192.0.2.77"},  // never checked: not in the cache
           {"nosuchhost", "x", "203.0.113.50"}}) {
    INFO(user << " " << password);
    const outcome o = f.login(user, password, from);
    CHECK(o.login);
    CHECK_FALSE(o.accepted);
    CHECK(o.text == "[SYS/TEMP] the host database is unavailable, try again later");
    CHECK(o.reason == "host store unavailable");
  }
  server.start();
  REQUIRE(eventually([&] { return f.module->store().up(); }));
  CHECK(verified(f.login("sample", "dial pw", "192.0.2.77")));
}

TEST_CASE("auth on a database: --check names a missing schema; a database down waits, then serves", "[auth][pg]") {
  testing::postgres_server server;
  {
    fixture f("fail_delay: 1ms\nstore_startup_wait: 5s");
    const std::string uri = server.uri(server.create_database());
    f.site_yaml = YAML::Load("hosts: \"" + uri + "\"\npassword_cost: min\n");
    f.site.emplace(f.site_yaml, f.dir / "sdps.yaml", "");
    f.build();
    CHECK(f.log.contains("is down at start: serving without it"));
    const auto problems = f.module->check();
    REQUIRE(problems.size() == 1);
    CHECK(problems[0].find("host init") != std::string::npos);
    const outcome o = f.login("sample", "pop3 secret");
    CHECK(o.reason == "host store unavailable");
  }
  {
    fixture f("fail_delay: 1ms");
    f.site_yaml = YAML::Load("hosts: \"postgresql://sdps@db/sdps?password=secret\"\npassword_cost: min\n");
    f.site.emplace(f.site_yaml, f.dir / "sdps.yaml", "");
    try {
      f.build();
      FAIL("a password in the URI was taken");
    } catch (const config_error& e) {
      CHECK(std::string(e.what()).find(".pgpass") != std::string::npos);
    }
  }
  for (const char* bad : {"store_pool_size: 0", "store_pool_size: 65", "store_query_timeout: 0s",
                          "store_connect_timeout: 2m", "store_startup_wait: 61s", "store_retry_max: soon"}) {
    INFO(bad);
    fixture f(bad);
    CHECK_THROWS_AS(f.build(), config_error);
  }
}
