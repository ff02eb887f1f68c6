// The host store in PostgreSQL, against a real server the test starts
// (tests/support/postgres.hpp): the schema, every admin operation, import
// and export, lookups from several event loops, notifications, a database
// that stops and comes back, bad rows and hostile names.

#include "hostdb/pg_store.hpp"
#include "hostdb/synthetic.hpp"
#include "hostdb/table.hpp"
#include "store_support.hpp"
#include "support/fakes.hpp"
#include "support/postgres.hpp"
#include "support/temp_dir.hpp"

#include <catch2/catch.hpp>
#include <sodium.h>

#include <atomic>
#include <fstream>
#include <sstream>
#include <thread>

using namespace sdps::hostdb;
using sdps::hostdb::testing::eventually;
using sdps::hostdb::testing::look;
using sdps::hostdb::testing::recorder;
using sdps::testing::capture_log;
using sdps::testing::postgres_server;
using sdps::testing::read_text;
using sdps::testing::temp_dir;
using sdps::testing::write_text;

namespace {

// One server for the tests that do not stop it; a database each.
postgres_server& shared_server() {
  static postgres_server server;
  return server;
}

struct pg_fixture {
  pg_fixture() : pg_fixture(shared_server()) {}
  explicit pg_fixture(postgres_server& s) : server(s), db(s.create_database()), uri(s.uri(db)) {
    REQUIRE(sodium_init() >= 0);
    admin = open_admin(locate(uri, "/"));
    admin->init();
    pop3 = hash_password("pop3 pw", cost::min);
    dialup = hash_password("dial pw", cost::min);
    REQUIRE(admin->add({"sample", {*prefix::parse("192.0.2.0/24"), *prefix::parse("2001:db8::/64")}, dialup, pop3}));
    REQUIRE(admin->add({"other", {}, "", pop3}));
  }
  std::unique_ptr<host_store> open(std::size_t pool = 2) {
    store_options o = events.options(log);
    o.pool_size = pool;
    o.retry_min = std::chrono::milliseconds(50);
    o.retry_max = std::chrono::milliseconds(500);
    o.query_timeout = std::chrono::seconds(5);
    return open_store(locate(uri, "/"), std::move(o));
  }
  std::string sql_value(const std::string& query) { return server.value(query, db); }

  postgres_server& server;
  std::string db, uri;
  std::unique_ptr<host_admin> admin;
  capture_log log;
  recorder events;
  std::string pop3, dialup;
};

std::string synthetic_text(std::size_t hosts, std::uint64_t seed) {
  std::ostringstream out;
  synthetic_options o;
  o.hosts = hosts;
  o.seed = seed;
  write_synthetic_hosts(out, o);
  return out.str();
}

std::string exported(host_admin& admin) {
  std::ostringstream out;
  CHECK(admin.export_to(out).empty());
  return out.str();
}

}  // namespace

TEST_CASE("pg admin: init creates the schema, and again changes nothing", "[hostdb][pg]") {
  postgres_server& s = shared_server();
  const std::string db = s.create_database();
  auto admin = open_admin(locate(s.uri(db), "/"));
  CHECK(admin->init().find("created the host store's schema") != std::string::npos);
  REQUIRE(admin->add({"sample", {}, "", ""}));
  CHECK(admin->init().find("was there already") != std::string::npos);
  CHECK(admin->find("sample"));
  CHECK(s.value("SELECT count(*) FROM pg_trigger WHERE tgrelid = 'sdps_hosts'::regclass AND NOT tgisinternal", db) ==
        "5");
  // The file shipped for DBAs is the text init runs.
  CHECK(read_text(std::filesystem::path(SDPS_SOURCE_DIR) / "lib/hostdb/schema.sql") == std::string(schema_sql()));
}

TEST_CASE("pg admin: every operation", "[hostdb][pg]") {
  pg_fixture f;
  const auto sample = f.admin->find("sample");
  REQUIRE(sample);
  CHECK(sample->pop3_hash == f.pop3);
  CHECK(sample->dialup_hash == f.dialup);
  REQUIRE(sample->dialup.size() == 2);
  CHECK(sample->dialup[0].to_string() == "192.0.2.0/24");
  CHECK(sample->dialup[1].to_string() == "2001:db8::/64");
  CHECK(f.admin->find("other")->dialup_hash.empty());
  CHECK_FALSE(f.admin->find("nosuch"));
  CHECK_FALSE(f.admin->add({"sample", {}, "", ""}));

  CHECK(f.admin->set_password("other", password_kind::dialup, f.dialup));
  CHECK(f.admin->find("other")->dialup_hash == f.dialup);
  CHECK(f.admin->set_password("other", password_kind::dialup, ""));
  CHECK(f.sql_value("SELECT dialup_hash IS NULL FROM sdps_hosts WHERE name = 'other'") == "t");
  CHECK_FALSE(f.admin->set_password("nosuch", password_kind::pop3, f.pop3));
  CHECK(f.admin->set_dialup("other", {*prefix::parse("198.51.100.7"), *prefix::parse("::/0")}));
  CHECK(f.admin->find("other")->dialup[1].to_string() == "::/0");
  CHECK(f.admin->edit("other", [](host_record&) { return false; }) == edit_outcome::unchanged);
  CHECK(f.admin->edit("nosuch", [](host_record&) { return true; }) == edit_outcome::no_host);
  const auto updated_before = f.sql_value("SELECT updated_at FROM sdps_hosts WHERE name = 'other'");
  CHECK(f.admin->set_dialup("other", {}));
  CHECK(f.sql_value("SELECT updated_at > '" + updated_before + "' FROM sdps_hosts WHERE name = 'other'") == "t");

  REQUIRE(f.admin->add({"a-first", {}, "", ""}));
  std::vector<std::string> names;
  CHECK(f.admin->list([&](const host_record& r) { names.push_back(r.name); }).empty());
  CHECK(names == std::vector<std::string>{"a-first", "other", "sample"});
  CHECK(f.admin->remove("a-first"));
  CHECK_FALSE(f.admin->remove("a-first"));
  CHECK_FALSE(f.admin->find("a-first"));
}

TEST_CASE("pg admin: hostile names are parameters, never SQL", "[hostdb][pg]") {
  pg_fixture f;
  for (const char* name : {"x'; DROP TABLE sdps_hosts; --", "sample' OR '1'='1", "a\"b;c", "o'brien"}) {
    INFO(name);
    CHECK_FALSE(f.admin->find(name));
    CHECK_FALSE(f.admin->remove(name));
    CHECK(f.admin->edit(name, [](host_record&) { return true; }) == edit_outcome::no_host);
    // The table's check refuses what is not a host name.
    CHECK_THROWS_AS(f.admin->add({name, {}, "", ""}), store_error);
  }
  CHECK(f.sql_value("SELECT count(*) FROM sdps_hosts") == "2");
}

TEST_CASE("pg admin: import of a file, export in the file format, and back", "[hostdb][pg]") {
  pg_fixture f;
  temp_dir dir(sdps::testing::fast_base());
  // 3,000 hosts with synthetic Argon2id strings (synthetic.hpp).
  const std::string text = synthetic_text(3000, 7);
  write_text(dir / "hosts", text);
  import_summary s = f.admin->import_file(dir / "hosts");
  CHECK(s.hosts == 3000);
  CHECK(s.added == 3000);
  CHECK(s.removed == 2);  // sample and other were not in the file
  CHECK(s.changed == 0);
  const std::string out = exported(*f.admin);
  CHECK(out == text);

  // The export imports to the same database: nothing to do.
  write_text(dir / "exported", out);
  s = f.admin->import_file(dir / "exported");
  CHECK(s.added + s.changed + s.removed == 0);
  CHECK(exported(*f.admin) == text);

  // One host changed, one gone, one new.
  load_result edited = parse(text);
  edited.hosts.find(synthetic_name(5))->pop3_hash = f.pop3;
  edited.hosts.remove(synthetic_name(6));
  edited.hosts.add({"zz-new", {*prefix::parse("2001:db8::1")}, "", ""});
  write_text(dir / "edited", format(edited.hosts));
  s = f.admin->import_file(dir / "edited");
  CHECK(s.added == 1);
  CHECK(s.changed == 1);
  CHECK(s.removed == 1);
  CHECK(exported(*f.admin) == format(edited.hosts));

  // A file with a malformed line changes nothing.
  write_text(dir / "bad", "sample - - -\nnot a host line\n");
  CHECK_THROWS_AS(f.admin->import_file(dir / "bad"), malformed_file);
  CHECK(exported(*f.admin) == format(edited.hosts));
}

TEST_CASE("pg store: lookups on the caller's loop; unknown and hostile names", "[hostdb][pg]") {
  pg_fixture f;
  auto store = f.open();
  REQUIRE(f.events.wait_health(true));
  CHECK(store->up());
  CHECK(store->where() == f.uri);
  const lookup_result r = look(*store, "sample");
  REQUIRE(r.status == lookup_status::found);
  CHECK(r.record.name == "sample");
  CHECK(r.record.pop3_hash == f.pop3);
  CHECK(r.record.dialup_hash == f.dialup);
  REQUIRE(r.record.dialup.size() == 2);
  CHECK(r.record.dialup[1].to_string() == "2001:db8::/64");
  CHECK(look(*store, "nosuch").status == lookup_status::unknown);
  CHECK(look(*store, "x'; DROP TABLE sdps_hosts; --").status == lookup_status::unknown);
  CHECK(look(*store, "sample' OR '1'='1").status == lookup_status::unknown);
  CHECK(look(*store, "other").status == lookup_status::found);
  CHECK(f.log.contains("up (1 of 2 connection(s))"));
}

TEST_CASE("pg store: many lookups from several event loops share a small pool", "[hostdb][pg]") {
  pg_fixture f;
  auto store = f.open(2);
  REQUIRE(f.events.wait_health(true));
  std::atomic<int> found{0}, other{0};
  std::vector<std::thread> loops;
  for (int t = 0; t < 4; ++t)
    loops.emplace_back([&] {
      sdps::asio::io_context io;
      for (int i = 0; i < 25; ++i) {
        auto job = [&]() -> sdps::awaitable<void> {
          std::string name = "sample";
          const lookup_result r = co_await store->lookup(std::move(name));
          (r.status == lookup_status::found ? found : other)++;
        };
        sdps::asio::co_spawn(io, std::move(job), sdps::asio::detached);
      }
      io.run();
    });
  for (auto& t : loops) t.join();
  CHECK(found == 100);
  CHECK(other == 0);
}

TEST_CASE("pg store: each change reaches the change callback", "[hostdb][pg]") {
  pg_fixture f;
  auto store = f.open();
  REQUIRE(f.events.wait_health(true));
  // The listener connects beside the pool: wait until a change gets through.
  REQUIRE(eventually([&] {
    f.admin->set_dialup("other", {*prefix::parse("192.0.2.9")});
    f.admin->set_dialup("other", {});
    return !f.events.changes().empty();
  }));
  f.events.clear();
  REQUIRE(f.admin->add({"added", {}, "", ""}));
  CHECK(f.events.wait_change("added"));
  REQUIRE(f.admin->set_password("sample", password_kind::pop3, f.dialup));
  CHECK(f.events.wait_change("sample"));
  CHECK(look(*store, "sample").record.pop3_hash == f.dialup);
  REQUIRE(f.admin->remove("other"));
  CHECK(f.events.wait_change("other"));
  CHECK(look(*store, "other").status == lookup_status::unknown);
  // By hand, as a DBA would.
  f.server.sql("UPDATE sdps_hosts SET dialup = '{10.0.0.0/8}' WHERE name = 'sample'", f.db);
  CHECK(f.events.wait_change("sample"));
  // A bulk change (an import) says "every host" once.
  temp_dir dir;
  write_text(dir / "hosts", synthetic_text(1500, 3));
  f.events.clear();
  f.admin->import_file(dir / "hosts");
  CHECK(f.events.wait_change("*"));
}

TEST_CASE("pg store: a malformed row refuses that host, with a clear line, and serves the others", "[hostdb][pg]") {
  pg_fixture f;
  f.server.sql("INSERT INTO sdps_hosts (name, pop3_hash) VALUES ('badhash', 'plain text password')", f.db);
  f.server.sql("INSERT INTO sdps_hosts (name, dialup_hash) VALUES ('baddial', '$argon2i$v=19$m=8,t=1,p=1$x$y')", f.db);
  auto store = f.open();
  REQUIRE(f.events.wait_health(true));
  const lookup_result bad = look(*store, "badhash");
  CHECK(bad.status == lookup_status::malformed);
  CHECK(bad.detail.find("pop3_hash is not an Argon2id hash string") != std::string::npos);
  CHECK(f.log.contains("host badhash: its row in sdps_hosts is malformed"));
  CHECK_FALSE(f.log.contains("plain text password"));
  CHECK(look(*store, "baddial").status == lookup_status::malformed);
  CHECK(look(*store, "sample").status == lookup_status::found);

  std::vector<std::string> names;
  const auto problems = f.admin->list([&](const host_record& r) { names.push_back(r.name); });
  CHECK(names == std::vector<std::string>{"other", "sample"});
  REQUIRE(problems.size() == 2);
  CHECK(problems[0].message.find("host baddial") != std::string::npos);
  std::ostringstream out;
  CHECK(f.admin->export_to(out).size() == 2);
  CHECK(out.str().find("badhash") == std::string::npos);
  CHECK_THROWS_AS(f.admin->find("badhash"), store_error);
}

TEST_CASE("pg store: without the schema, lookups are unavailable and the log says why", "[hostdb][pg]") {
  postgres_server& s = shared_server();
  const std::string db = s.create_database();
  capture_log log;
  recorder events;
  store_options o = events.options(log);
  o.retry_min = std::chrono::milliseconds(50);
  auto store = open_store(locate(s.uri(db), "/"), std::move(o));
  REQUIRE(events.wait_health(false));
  const lookup_result r = look(*store, "sample");
  CHECK(r.status == lookup_status::unavailable);
  CHECK(r.detail.find("sdps host init") != std::string::npos);
  CHECK(log.contains("down:"));
}

TEST_CASE("pg store: the database stopped and restarted: unavailable at once, then back by itself", "[hostdb][pg]") {
  postgres_server own;
  pg_fixture f(own);
  auto store = f.open();
  REQUIRE(f.events.wait_health(true));
  REQUIRE(look(*store, "sample").status == lookup_status::found);
  // Listening too (it says so with an "every host" change).
  REQUIRE(f.events.wait_change("*"));
  f.events.clear();

  own.stop();
  // The idle connections see the server's goodbye: down without a lookup.
  REQUIRE(f.events.wait_health(false));
  CHECK_FALSE(store->up());
  for (int i = 0; i < 3; ++i) {
    const lookup_result r = look(*store, "sample");
    CHECK(r.status == lookup_status::unavailable);
    CHECK_FALSE(r.detail.empty());
  }
  CHECK(f.log.contains("down:"));
  CHECK(f.log.contains("change notifications lost"));

  own.start();
  REQUIRE(f.events.wait_health(true));
  CHECK(look(*store, "sample").status == lookup_status::found);
  // The listener is back too, and says that anything may have changed meanwhile.
  CHECK(f.events.wait_change("*"));
  CHECK(f.log.contains("listening for changes again"));
  f.events.clear();
  f.admin = open_admin(locate(f.uri, "/"));
  REQUIRE(f.admin->set_password("sample", password_kind::pop3, f.dialup));
  CHECK(f.events.wait_change("sample"));
  // Each change of state was logged once.
  std::size_t downs = 0, ups = 0;
  for (const auto& line : f.log.lines()) {
    if (line.find(": down: ") != std::string::npos) ++downs;
    if (line.find(": up (") != std::string::npos) ++ups;
  }
  CHECK(downs == 1);
  CHECK(ups == 2);
}

TEST_CASE("pg store: a database unreachable at start is a store that is down, not an error", "[hostdb][pg]") {
  temp_dir nowhere;
  const std::string uri = "postgresql:///sdps?host=" + nowhere.path().string() + "&port=5432&user=sdps";
  capture_log log;
  recorder events;
  store_options o = events.options(log);
  auto store = open_store(locate(uri, "/"), std::move(o));
  REQUIRE(events.wait_health(false));
  CHECK(look(*store, "sample").status == lookup_status::unavailable);
  CHECK_THROWS_AS(open_admin(locate(uri, "/")), store_unavailable);
}

TEST_CASE("pg store: ready, up to date at once, no usual cost; check finds a missing schema", "[hostdb][pg]") {
  pg_fixture f;
  auto store = f.open();
  CHECK(store->wait_ready(std::chrono::seconds(20)));
  CHECK_FALSE(store->usual_cost());
  CHECK(store->check(nullptr).empty());
  CHECK_FALSE(look(*store, "sample").stale);

  postgres_server& s = shared_server();
  capture_log log;
  recorder events;
  store_options o = events.options(log);
  o.retry_min = std::chrono::milliseconds(50);
  auto bare = open_store(locate(s.uri(s.create_database()), "/"), std::move(o));
  CHECK_FALSE(bare->wait_ready(std::chrono::seconds(20)));
  const auto problems = bare->check(nullptr);
  REQUIRE(problems.size() == 1);
  CHECK(problems[0].find("sdps_hosts") != std::string::npos);
  CHECK(problems[0].find("host init") != std::string::npos);
}

TEST_CASE("pg store: check finds a role that may not read the table", "[hostdb][pg]") {
  pg_fixture f;
  f.server.sql("DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'sdps_reader') THEN "
               "CREATE ROLE sdps_reader LOGIN; END IF; END $$");
  const std::string uri = "postgresql:///" + f.db + "?host=" + f.server.socket_dir().string() + "&port=" +
                          std::to_string(postgres_server::port) + "&user=sdps_reader";
  capture_log log;
  recorder events;
  store_options o = events.options(log);
  auto store = open_store(locate(uri, "/"), std::move(o));
  REQUIRE(store->wait_ready(std::chrono::seconds(20)));
  auto problems = store->check(nullptr);
  REQUIRE(problems.size() == 1);
  CHECK(problems[0].find("permission denied") != std::string::npos);
  CHECK(problems[0].find("grant SELECT") != std::string::npos);
  f.server.sql("GRANT SELECT ON sdps_hosts TO sdps_reader", f.db);
  CHECK(store->check(nullptr).empty());
  CHECK(look(*store, "sample").status == lookup_status::found);
}

TEST_CASE("pg store: a database that does not answer is waited for no longer than asked", "[hostdb][pg]") {
  temp_dir nowhere;
  const std::string uri = "postgresql:///sdps?host=" + nowhere.path().string() + "&port=5432&user=sdps";
  capture_log log;
  recorder events;
  auto store = open_store(locate(uri, "/"), events.options(log));
  CHECK_FALSE(store->wait_ready(std::chrono::seconds(20)));  // decided: every connection failed
  CHECK(store->check(nullptr).empty());                         // down is no config problem
}

TEST_CASE("host finder on a database: found, unknown, malformed, and a restart in between", "[hostdb][pg][finder]") {
  postgres_server own;
  pg_fixture f(own);
  host_finder finder(locate(f.uri, "/"));
  CHECK(finder.where() == f.uri);
  REQUIRE(finder.find("sample").status == lookup_status::found);
  CHECK(finder.find("sample").record.dialup.size() == 2);
  CHECK(finder.find("nosuch").status == lookup_status::unknown);
  CHECK(finder.find("x'; DROP TABLE sdps_hosts; --").status == lookup_status::unknown);
  f.server.sql("UPDATE sdps_hosts SET dialup_hash = 'bad' WHERE name = 'other'", f.db);
  const lookup_result bad = finder.find("other");
  CHECK(bad.status == lookup_status::malformed);
  CHECK(bad.detail.find("dialup_hash") != std::string::npos);

  own.stop();
  const lookup_result down = finder.find("sample");
  CHECK(down.status == lookup_status::unavailable);
  CHECK_FALSE(down.detail.empty());
  own.start();
  // A new connection at the next look-up.
  CHECK(finder.find("sample").status == lookup_status::found);
}
