// The auth module driven through a fake session: USER and PASS as a client
// sends them, the verdicts the chain would see.

#include "auth_module.hpp"
#include "config.hpp"  // core::yaml_settings: module settings from inline YAML
#include "support/fakes.hpp"
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
using testing::fake_session;

// Plain coroutine functions owning their arguments (no lambda parameters).
awaitable<verdict> call(auth::auth_module* m, fake_session* s, command cmd) {
  co_return co_await m->on_command(*s, cmd);
}

awaitable<void> ticker(std::shared_ptr<int> ticks, std::shared_ptr<bool> stop) {
  asio::steady_timer timer(co_await asio::this_coro::executor);
  while (!*stop) {
    timer.expires_after(5ms);
    co_await timer.async_wait(asio::use_awaitable);
    ++*ticks;
  }
}

struct outcome {
  bool answered = false;
  bool positive = false;
  std::string text;
  std::chrono::milliseconds took{};
  int ticks = 0;  // other work the event loop did meanwhile
};

/// A host database, a site config and a module built from inline YAML.
struct fixture {
  explicit fixture(const std::string& module_yaml = "fail_delay: 50ms", const std::string& cost = "min",
                   bool write_hosts = true) {
    REQUIRE(sodium_init() >= 0);
    if (write_hosts) {
      hostdb::database db;
      hostdb::host_record sample{"sample",
                                 {*hostdb::prefix::parse("192.0.2.0/24"), *hostdb::prefix::parse("2001:db8::/64")},
                                 hostdb::hash_password("dial pw", hostdb::cost::min),
                                 hostdb::hash_password("pop3 secret", hostdb::cost::min)};
      db.add(sample);
      db.add({"nopop", {*hostdb::prefix::parse("198.51.100.7")}, hostdb::hash_password("dial only", hostdb::cost::min),
              ""});
      hostdb::save(hosts_file(), db);
    }
    site_yaml = YAML::Load("hosts: hosts\npassword_cost: " + cost + "\n");
    site.emplace(site_yaml, dir / "sdps.yaml", "");
    options.emplace(YAML::Load(module_yaml.empty() ? "{}" : module_yaml), dir / "sdps.yaml",
                    "module instance 'auth'", std::set<std::string>{});
    server.emplace(io, *site, &log, 2);
    config.emplace("auth", *options, *server, log);
    session.remote = {make_address("203.0.113.50"), 40000};
    session.log_to = &log;
    session.state_changes_allowed = false;
  }

  void build() { module = std::make_unique<auth::auth_module>(*config); }

  std::filesystem::path hosts_file() const { return dir / "hosts"; }

  outcome run(const std::string& line) {
    command cmd;
    const auto space = line.find(' ');
    cmd.name = line.substr(0, space);
    if (space != std::string::npos) cmd.argument = line.substr(space + 1);
    auto ticks = std::make_shared<int>(0);
    auto stop = std::make_shared<bool>(false);
    asio::co_spawn(io, ticker(ticks, stop), asio::detached);
    std::optional<verdict> result;
    std::exception_ptr error;
    const auto start = std::chrono::steady_clock::now();
    auto took = std::make_shared<std::chrono::milliseconds>();
    asio::co_spawn(io, call(module.get(), &session, std::move(cmd)),
                   [&, stop, took, start](std::exception_ptr e, verdict v) {
                     *took = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() -
                                                                                   start);
                     *stop = true;
                     error = e;
                     if (!e) result.emplace(std::move(v));
                   });
    io.restart();
    io.run();
    if (error) std::rethrow_exception(error);
    REQUIRE(result);
    outcome out;
    out.answered = result->answered();
    if (out.answered) {
      out.positive = result->reply().positive;
      out.text = result->reply().text;
    }
    out.took = *took;
    out.ticks = *ticks;
    return out;
  }

  /// USER then PASS from `from`; the PASS outcome.
  outcome login(const std::string& user, const std::string& password, const char* from = "203.0.113.50") {
    session.remote = {make_address(from), 40000};
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
  fake_session session{7, io.get_executor()};
};

bool passed_on(const outcome& o) { return !o.answered; }

bool refused(const outcome& o) { return o.answered && !o.positive && o.text == "[AUTH] invalid login"; }

}  // namespace

TEST_CASE("auth: the POP3 password works from any address; spaces are part of it", "[auth][pass]") {
  fixture f;
  f.build();
  const outcome o = f.login("sample", "pop3 secret");
  CHECK(passed_on(o));  // lock, merge and commands finish the login
  REQUIRE(f.session.login());
  CHECK(f.session.login()->host == "sample");
  CHECK(f.session.login()->host_login());
  CHECK(f.log.contains("login sample from 203.0.113.50 with the POP3 password"));

  fixture g;
  g.build();
  CHECK(passed_on(g.login("Fred@Sample.demon.co.uk", "pop3 secret", "2001:db8:ffff::1")));
  REQUIRE(g.session.login());
  CHECK(g.session.login()->display() == "fred+sample");
}

TEST_CASE("auth: the dialup password works only from the host's dialup addresses", "[auth][pass]") {
  fixture f;
  f.build();
  CHECK(passed_on(f.login("sample", "dial pw", "192.0.2.77")));
  CHECK(passed_on(f.login("sample", "dial pw", "::ffff:192.0.2.77")));  // IPv4 through a dual-stack listener
  CHECK(passed_on(f.login("sample", "dial pw", "2001:db8::abcd")));
  CHECK(passed_on(f.login("nopop", "dial only", "198.51.100.7")));
  CHECK(f.log.contains("with the dialup password"));

  CHECK(refused(f.login("sample", "dial pw", "192.0.3.1")));
  CHECK_FALSE(f.session.login());
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
  CHECK_FALSE(f.session.login());
  CHECK(f.log.contains("login failed: host sample from 203.0.113.50"));

  // Success does not wait.
  const outcome good = f.login("sample", "pop3 secret");
  CHECK(passed_on(good));
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
  CHECK(f.log.contains("login failed: host nosuchhost from 203.0.113.50"));
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
  // PASS again without USER: the identity was forgotten.
  const outcome again = f.run("PASS pop3 secret");
  CHECK(again.answered);
  CHECK_FALSE(again.positive);
  CHECK(again.text != "[AUTH] invalid login");
  CHECK(passed_on(f.login("sample", "pop3 secret")));
}

TEST_CASE("auth: PASS without USER, bad USER, APOP", "[auth][user]") {
  fixture f;
  f.build();
  const outcome pass = f.run("PASS pop3 secret");
  CHECK(pass.answered);
  CHECK_FALSE(pass.positive);
  CHECK(pass.took < 50ms);  // nothing to verify, nothing to delay

  CHECK(f.run("USER sample").positive);
  const outcome bad = f.run("USER fred sample");
  CHECK(bad.answered);
  CHECK_FALSE(bad.positive);
  CHECK_FALSE(f.session.login());  // the earlier USER is forgotten too
  CHECK_FALSE(f.run("PASS pop3 secret").positive);
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
    CHECK(spec.states == static_cast<state_mask>(pop3_state::authorization));
  }
  CHECK(names == std::vector<std::string>{"USER", "PASS", "APOP"});
  std::vector<std::string> lines;
  f.module->capabilities(f.session, lines);
  CHECK(lines == std::vector<std::string>{"USER", "AUTH-RESP-CODE"});
}

TEST_CASE("auth: the password never reaches the log", "[auth][pass]") {
  fixture f("fail_delay: 1ms");
  f.build();
  f.login("sample", "pop3 secret");
  f.login("sample", "Tr0ub4dor&3");
  f.login("nosuchhost", "Tr0ub4dor&3");
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
  CHECK(passed_on(f.login("newhost", "new pw")));
  CHECK(passed_on(f.login("sample", "changed")));
  CHECK(refused(f.login("sample", "pop3 secret")));
  CHECK(f.module->hosts()->size() == 3);
}

TEST_CASE("auth: a broken file keeps the old data, at PASS and at SIGHUP", "[auth][reload]") {
  fixture f("fail_delay: 1ms");
  f.build();
  std::string text = sdps::testing::read_text(f.hosts_file());
  text += "this is broken\n";
  text += "newhost - - " + hostdb::hash_password("new pw", hostdb::cost::min) + "\n";
  sdps::testing::write_text(f.hosts_file(), text);

  CHECK(refused(f.login("newhost", "new pw")));
  CHECK(passed_on(f.login("sample", "pop3 secret")));
  CHECK(f.log.contains("hosts:6: expected 4 fields"));
  CHECK(f.log.contains("keeping the 2 host(s) loaded before"));
  f.module->reload();
  CHECK(f.module->hosts()->size() == 2);
  CHECK(refused(f.login("newhost", "new pw")));

  // Fixed by hand: the next PASS reads it.
  text.replace(text.find("this is broken\n"), 15, "");
  sdps::testing::write_text(f.hosts_file(), text);
  CHECK(passed_on(f.login("newhost", "new pw")));
}

TEST_CASE("auth: SIGHUP reload reads a changed file", "[auth][reload]") {
  fixture f("fail_delay: 1ms");
  f.build();
  f.module->reload();
  CHECK(f.log.contains("unchanged, 2 host(s)"));
  hostdb::edit(f.hosts_file(), [](hostdb::database& db) { return db.remove("sample"); });
  f.module->reload();
  CHECK(f.log.contains("loaded 1 host(s)"));
  CHECK(f.module->hosts()->size() == 1);
  CHECK_FALSE(f.module->hosts()->find("sample"));
}

TEST_CASE("auth: start-up skips malformed lines, and survives a missing file", "[auth][reload]") {
  {
    fixture f("fail_delay: 1ms", "min", false);
    sdps::testing::write_text(f.hosts_file(), "broken\nsample - - " +
                                               hostdb::hash_password("pw", hostdb::cost::min) + "\n");
    f.build();
    CHECK(f.log.contains("hosts:1: expected 4 fields"));
    CHECK(passed_on(f.login("sample", "pw")));
  }
  {
    fixture f("fail_delay: 1ms", "min", false);
    f.build();
    CHECK(f.log.contains("does not exist"));
    CHECK(refused(f.login("sample", "pw")));
    hostdb::edit(f.hosts_file(), [](hostdb::database& db) {
      return db.add({"sample", {}, "", hostdb::hash_password("pw", hostdb::cost::min)});
    });
    CHECK(passed_on(f.login("sample", "pw")));
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

std::size_t count_lines(const capture_log& log, std::string_view text) {
  const auto lines = log.lines();
  return static_cast<std::size_t>(
      std::count_if(lines.begin(), lines.end(), [&](const std::string& l) { return l.find(text) != std::string::npos; }));
}

}  // namespace

TEST_CASE("auth cache: a repeated good login is answered from the cache", "[auth][cache]") {
  fixture f("fail_delay: 1ms");
  f.build();
  CHECK(passed_on(f.login("sample", "pop3 secret")));
  CHECK_FALSE(f.log.contains("auth cache:"));  // the first one ran Argon2id
  CHECK(f.module->cache().size() == 1);
  CHECK(passed_on(f.login("fred+sample", "pop3 secret")));  // any login of the host
  CHECK(passed_on(f.login("sample", "pop3 secret")));
  CHECK(count_lines(f.log, cache_hit) == 2);
  CHECK(f.log.contains("login sample from 203.0.113.50 with the POP3 password"));
  CHECK_FALSE(f.log.contains("pop3 secret"));
  CHECK(f.module->cache().size() == 1);
}

TEST_CASE("auth cache: a wrong password right after a good login is refused after the delay", "[auth][cache]") {
  fixture f("fail_delay: 300ms");
  f.build();
  CHECK(passed_on(f.login("sample", "pop3 secret")));
  CHECK(passed_on(f.login("sample", "pop3 secret")));
  for (const char* wrong : {"pop3 secreT", "pop3 secret ", "dial pw"}) {
    const outcome o = f.login("sample", wrong);
    CHECK(refused(o));
    CHECK(o.took >= 300ms);
    CHECK_FALSE(f.session.login());
  }
  // The failures left the good entry alone, and cached nothing of theirs.
  CHECK(f.module->cache().size() == 1);
  CHECK(passed_on(f.login("sample", "pop3 secret")));
  CHECK(count_lines(f.log, cache_hit) == 2);
}

TEST_CASE("auth cache: the dialup address rule applies to every login", "[auth][cache]") {
  fixture f("fail_delay: 1ms");
  f.build();
  CHECK(passed_on(f.login("sample", "dial pw", "192.0.2.77")));
  CHECK(passed_on(f.login("sample", "dial pw", "192.0.2.77")));
  CHECK(f.log.contains("auth cache: sample: the dialup password passed its check"));
  CHECK(refused(f.login("sample", "dial pw", "192.0.3.1")));
  CHECK(refused(f.login("sample", "dial pw", "2001:db8:0:1::1")));
}

TEST_CASE("auth cache: a changed password refuses the old one at once", "[auth][cache][reload]") {
  fixture f("fail_delay: 1ms");
  f.build();
  CHECK(passed_on(f.login("sample", "pop3 secret")));
  CHECK(passed_on(f.login("sample", "pop3 secret")));
  hostdb::edit(f.hosts_file(), [](hostdb::database& db) {
    db.find("sample")->pop3_hash = hostdb::hash_password("changed", hostdb::cost::min);
    return true;
  });
  CHECK(refused(f.login("sample", "pop3 secret")));
  CHECK(f.module->cache().size() == 0);
  CHECK(passed_on(f.login("sample", "changed")));
  CHECK(count_lines(f.log, cache_hit) == 1);
}

TEST_CASE("auth cache: a host's entries go when its record changes, others stay", "[auth][cache][reload]") {
  fixture f("fail_delay: 1ms");
  f.build();
  CHECK(passed_on(f.login("sample", "pop3 secret")));
  CHECK(passed_on(f.login("nopop", "dial only", "198.51.100.7")));
  CHECK(f.module->cache().size() == 2);

  SECTION("a new dialup address list, at the next PASS") {
    hostdb::edit(f.hosts_file(), [](hostdb::database& db) {
      db.find("sample")->dialup.push_back(*hostdb::prefix::parse("198.51.100.0/24"));
      return true;
    });
    CHECK(passed_on(f.login("nopop", "dial only", "198.51.100.7")));
    CHECK(f.module->cache().size() == 1);
    CHECK(f.log.contains("auth cache: nopop: the dialup password passed its check"));
  }
  SECTION("a removed host, at SIGHUP") {
    hostdb::edit(f.hosts_file(), [](hostdb::database& db) { return db.remove("sample"); });
    f.module->reload();
    CHECK(f.module->cache().size() == 1);
    CHECK(refused(f.login("sample", "pop3 secret")));
  }
  SECTION("an unchanged record keeps its entry") {
    hostdb::edit(f.hosts_file(), [](hostdb::database& db) {
      return db.add({"newhost", {}, "", hostdb::hash_password("new pw", hostdb::cost::min)});
    });
    f.module->reload();
    CHECK(f.module->cache().size() == 2);
  }
}

TEST_CASE("auth cache: auth_cache_ttl 0 or auth_cache_size 0 turn it off; limits", "[auth][cache][config]") {
  for (const char* off : {"fail_delay: 1ms\nauth_cache_ttl: 0s", "fail_delay: 1ms\nauth_cache_size: 0"}) {
    fixture f(off);
    f.build();
    CHECK(passed_on(f.login("sample", "pop3 secret")));
    CHECK(passed_on(f.login("sample", "pop3 secret")));
    CHECK_FALSE(f.log.contains("auth cache:"));
    CHECK(f.module->cache().size() == 0);
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
  CHECK(passed_on(f.login("sample", "pop3 secret")));
  CHECK(passed_on(f.login("sample", "pop3 secret")));
  CHECK(count_lines(f.log, cache_hit) == 1);
  std::this_thread::sleep_for(2100ms);
  CHECK(passed_on(f.login("sample", "pop3 secret")));  // checked in full again
  CHECK(count_lines(f.log, cache_hit) == 1);
  CHECK(passed_on(f.login("sample", "pop3 secret")));
  CHECK(count_lines(f.log, cache_hit) == 2);
}
