// The host store on a hosts file: lookups from memory, re-reads on the
// store's thread while lookups go on against the table in force, change
// notifications, a broken or malformed file, the admin operations.

#include "hostdb/file_store.hpp"
#include "hostdb/synthetic.hpp"
#include "store_support.hpp"
#include "support/fakes.hpp"
#include "support/temp_dir.hpp"

#include <catch2/catch.hpp>
#include <sodium.h>

#include <future>
#include <sstream>

using namespace sdps::hostdb;
using sdps::hostdb::testing::eventually;
using sdps::hostdb::testing::look;
using sdps::hostdb::testing::recorder;
using sdps::testing::capture_log;
using sdps::testing::read_text;
using sdps::testing::temp_dir;
using sdps::testing::write_text;

namespace {

struct file_fixture {
  file_fixture() {
    REQUIRE(sodium_init() >= 0);
    pop3 = hash_password("pop3 pw", cost::min);
    dialup = hash_password("dial pw", cost::min);
    write_text(file(), "sample 192.0.2.0/24 " + dialup + " " + pop3 + "\nother - - " + pop3 + "\n");
  }
  std::filesystem::path file() const { return dir / "hosts"; }
  std::unique_ptr<host_store> open(store_options o) {
    o.check_interval = std::chrono::milliseconds(100);
    return open_file_store(file(), std::move(o));
  }
  temp_dir dir;
  capture_log log;
  recorder events;
  std::string pop3, dialup;
};

}  // namespace

TEST_CASE("file store: a known host, an unknown one, on the caller's loop", "[hostdb][file_store]") {
  file_fixture f;
  auto store = f.open(f.events.options(f.log));
  CHECK(store->up());
  CHECK(store->where() == f.file().string());
  const lookup_result found = look(*store, "sample");
  REQUIRE(found.status == lookup_status::found);
  CHECK(found.record.pop3_hash == f.pop3);
  CHECK(found.record.dialup_hash == f.dialup);
  REQUIRE(found.record.dialup.size() == 1);
  CHECK(found.record.dialup[0].to_string() == "192.0.2.0/24");
  CHECK(look(*store, "nosuch").status == lookup_status::unknown);
  CHECK(look(*store, "x'; DROP TABLE sdps_hosts; --").status == lookup_status::unknown);
  CHECK(f.log.contains("loaded 2 host(s)"));
  CHECK(f.events.wait_health(true));
  store->reload();
  CHECK(eventually([&] { return f.log.contains("unchanged, 2 host(s)"); }));
}

TEST_CASE("file store: an edit is noticed, re-read and announced host by host", "[hostdb][file_store]") {
  file_fixture f;
  auto store = f.open(f.events.options(f.log));
  const std::string changed = hash_password("new", cost::min);
  edit(f.file(), [&](database& db) {
    db.find("sample")->pop3_hash = changed;
    db.remove("other");
    return db.add({"added", {}, "", changed});
  });
  // In name order, one at a time: the last one says they all came.
  REQUIRE(f.events.wait_change("sample"));
  const auto changes = f.events.changes();
  CHECK(changes == std::vector<std::string>{"added", "other", "sample"});
  CHECK(look(*store, "sample").record.pop3_hash == changed);
  CHECK(look(*store, "other").status == lookup_status::unknown);
  CHECK(look(*store, "added").status == lookup_status::found);
}

TEST_CASE("file store: lookups during a re-read are answered from the table in force", "[hostdb][file_store]") {
  file_fixture f;
  std::promise<void> parsed, go_on;
  auto resume = go_on.get_future().share();
  store_options o = f.events.options(f.log);
  o.wait_for_reread_below = 0;  // as for a big file: known hosts do not wait
  o.before_swap = [&parsed, resume] {
    parsed.set_value();
    resume.wait();
  };
  auto store = f.open(std::move(o));
  const std::string changed = hash_password("new", cost::min);
  edit(f.file(), [&](database& db) {
    db.find("sample")->pop3_hash = changed;
    return true;
  });
  // The new version is parsed and held back before the swap: lookups meanwhile see the old one.
  REQUIRE(parsed.get_future().wait_for(std::chrono::seconds(20)) == std::future_status::ready);
  for (int i = 0; i < 10; ++i) CHECK(look(*store, "sample").record.pop3_hash == f.pop3);
  go_on.set_value();
  REQUIRE(f.events.wait_change("sample"));
  CHECK(look(*store, "sample").record.pop3_hash == changed);
}

TEST_CASE("file store: a version with malformed lines is refused, the table in force stays", "[hostdb][file_store]") {
  file_fixture f;
  auto store = f.open(f.events.options(f.log));
  write_text(f.file(), "sample - - " + f.dialup + "\nbroken line\n");
  REQUIRE(eventually([&] { return f.log.contains("not reloading"); }));
  CHECK(f.log.contains(":2: expected 4 fields"));
  CHECK(look(*store, "sample").record.pop3_hash == f.pop3);
  CHECK(look(*store, "other").status == lookup_status::found);
  CHECK(store->up());
  // SIGHUP reads the refused version again and says so again.
  const auto refusals = [&] {
    const auto lines = f.log.lines();
    return std::count_if(lines.begin(), lines.end(), [](const std::string& l) { return l.find("not reloading") != std::string::npos; });
  };
  CHECK(refusals() == 1);
  store->reload();
  REQUIRE(eventually([&] { return refusals() == 2; }));
  // Fixed: read at once.
  write_text(f.file(), "sample - - " + f.dialup + "\n");
  REQUIRE(f.events.wait_change("other"));
  CHECK(look(*store, "sample").record.pop3_hash == f.dialup);
}

TEST_CASE("file store: malformed lines at start are logged and skipped", "[hostdb][file_store]") {
  file_fixture f;
  write_text(f.file(), "sample - - " + f.pop3 + "\nbad_name - - -\n");
  auto store = f.open(f.events.options(f.log));
  CHECK(f.log.contains(":2: 'bad_name' is not a valid host name"));
  CHECK(f.log.contains("skipping 1 malformed line(s)"));
  CHECK(look(*store, "sample").status == lookup_status::found);
}

TEST_CASE("file store: an insecure or unreadable file makes it unavailable until fixed", "[hostdb][file_store]") {
  file_fixture f;
  auto store = f.open(f.events.options(f.log));
  std::filesystem::permissions(f.file(), std::filesystem::perms::others_read, std::filesystem::perm_options::add);
  REQUIRE(f.events.wait_health(false));
  CHECK_FALSE(store->up());
  const lookup_result r = look(*store, "sample");
  CHECK(r.status == lookup_status::unavailable);
  CHECK(r.detail.find("readable by others") != std::string::npos);
  CHECK(f.log.contains("down:"));
  std::filesystem::permissions(f.file(), std::filesystem::perms::others_read, std::filesystem::perm_options::remove);
  REQUIRE(f.events.wait_health(true));
  CHECK(look(*store, "sample").status == lookup_status::found);
  CHECK(f.log.contains("up again"));
}

TEST_CASE("file store: the lookup right after the fix is answered, not the reader's next event",
          "[hostdb][file_store]") {
  file_fixture f;
  auto store = f.open(f.events.options(f.log));
  // Each time the file is made insecure, then fixed, and looked up at once:
  // the lookup sees a version other than the one found broken and waits
  // for the reader rather than answering from the broken state.
  for (int i = 0; i < 20; ++i) {
    REQUIRE(::chmod(f.file().c_str(), 0666) == 0);
    REQUIRE(f.events.wait_health(false));
    REQUIRE(::chmod(f.file().c_str(), 0600) == 0);
    const lookup_result r = look(*store, "sample");
    REQUIRE(r.status == lookup_status::found);
  }
  // Broken and unchanged since: answered at once, unavailable.
  REQUIRE(::chmod(f.file().c_str(), 0666) == 0);
  REQUIRE(f.events.wait_health(false));
  const auto started = std::chrono::steady_clock::now();
  CHECK(look(*store, "sample").status == lookup_status::unavailable);
  CHECK(std::chrono::steady_clock::now() - started < std::chrono::seconds(1));
  REQUIRE(::chmod(f.file().c_str(), 0600) == 0);
}

TEST_CASE("file store: an insecure file at start is an error", "[hostdb][file_store]") {
  file_fixture f;
  std::filesystem::permissions(f.file(), std::filesystem::perms::others_read, std::filesystem::perm_options::add);
  CHECK_THROWS_AS(f.open(f.events.options(f.log)), insecure_file);
}

TEST_CASE("file store: a missing file is an empty store, and its creation is noticed", "[hostdb][file_store]") {
  file_fixture f;
  std::filesystem::remove(f.file());
  auto store = f.open(f.events.options(f.log));
  CHECK(f.log.contains("does not exist"));
  CHECK(look(*store, "sample").status == lookup_status::unknown);
  write_text(f.file(), "sample - - " + f.pop3 + "\n");
  REQUIRE(f.events.wait_change("sample"));
  CHECK(look(*store, "sample").status == lookup_status::found);
}

TEST_CASE("file admin: every operation, import and export", "[hostdb][file_store][admin]") {
  file_fixture f;
  auto admin = open_admin(locate(f.file().string(), "/"));
  CHECK(admin->where() == f.file().string());
  CHECK(admin->init().find("is a hosts file: there is no schema to create") != std::string::npos);
  REQUIRE(admin->find("sample"));
  CHECK_FALSE(admin->find("nosuch"));
  CHECK_FALSE(admin->add({"sample", {}, "", ""}));
  CHECK(admin->add({"third", {*prefix::parse("2001:db8::/48")}, "", ""}));
  CHECK(admin->set_password("third", password_kind::pop3, f.pop3));
  CHECK_FALSE(admin->set_password("nosuch", password_kind::pop3, f.pop3));
  CHECK(admin->set_dialup("third", {*prefix::parse("198.51.100.0/24")}));
  CHECK(admin->edit("third", [](host_record&) { return false; }) == edit_outcome::unchanged);
  CHECK(admin->find("third")->dialup[0].to_string() == "198.51.100.0/24");
  std::vector<std::string> names;
  CHECK(admin->list([&](const host_record& r) { names.push_back(r.name); }).empty());
  CHECK(names == std::vector<std::string>{"other", "sample", "third"});
  CHECK(admin->remove("other"));
  CHECK_FALSE(admin->remove("other"));

  std::ostringstream exported;
  CHECK(admin->export_to(exported).empty());
  CHECK(exported.str() == read_text(f.file()));

  // Import: the store then holds exactly the file's hosts.
  write_text(f.dir / "incoming", "sample - - " + f.dialup + "\nthird 198.51.100.0/24 - " + f.pop3 + "\nnew - - -\n");
  const import_summary s = admin->import_file(f.dir / "incoming");
  CHECK(s.hosts == 3);
  CHECK(s.added == 1);
  CHECK(s.changed == 1);
  CHECK(s.removed == 0);
  std::ostringstream again;
  admin->export_to(again);
  CHECK(again.str() == format(parse(read_text(f.dir / "incoming")).hosts));
  // A file with malformed lines changes nothing.
  write_text(f.dir / "bad", "sample - - -\nbroken\n");
  const std::string before = read_text(f.file());
  CHECK_THROWS_AS(admin->import_file(f.dir / "bad"), malformed_file);
  CHECK(read_text(f.file()) == before);
  CHECK_THROWS_AS(admin->import_file(f.dir / "missing"), std::system_error);
}

TEST_CASE("locate: a path, or a libpq URI without a password", "[hostdb][store]") {
  CHECK(locate("hosts", "/etc/sdps").file == "/etc/sdps/hosts");
  CHECK(locate("/var/lib/sdps/hosts", "/etc/sdps").type == location::kind::file);
  const location pg = locate("postgresql://sdps@db1/sdps", "/etc");
  CHECK(pg.type == location::kind::postgresql);
  CHECK(pg.to_string() == "postgresql://sdps@db1/sdps");
  CHECK(locate("postgres:///sdps?host=/run/postgresql", "/").type == location::kind::postgresql);
  CHECK(locate("postgresql:///sdps?host=/run/postgresql&port=5433&user=sdps&sslmode=verify-full", "/").type ==
        location::kind::postgresql);
  CHECK_THROWS_WITH(locate("postgresql://sdps:secret@db1/sdps", "/"), Catch::Contains("password"));
  CHECK_THROWS_WITH(locate("postgresql:///sdps?password=x", "/"), Catch::Contains(".pgpass"));
  CHECK_THROWS_WITH(locate("postgresql://db1/sdps?nosuchoption=1", "/"), Catch::Contains("not a valid PostgreSQL URI"));
  CHECK_THROWS_AS(locate("", "/"), std::invalid_argument);
}

TEST_CASE("file store: a small file's change is seen by the next lookup, even before its re-read", "[hostdb][file_store]") {
  file_fixture f;
  std::promise<void> go_on;
  auto resume = go_on.get_future().share();
  store_options o = f.events.options(f.log);
  o.query_timeout = std::chrono::seconds(20);
  o.before_swap = [resume] { resume.wait(); };
  auto store = f.open(std::move(o));
  const std::string changed = hash_password("new", cost::min);
  edit(f.file(), [&](database& db) {
    db.find("sample")->pop3_hash = changed;
    return true;
  });
  // The lookup finds the file changed and waits for the re-read, which
  // the test lets go on a moment later: it never answers the old hash.
  std::thread release([&go_on] {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    go_on.set_value();
  });
  const lookup_result r = look(*store, "sample");
  release.join();
  CHECK(r.status == lookup_status::found);
  CHECK(r.record.pop3_hash == changed);
  CHECK_FALSE(r.stale);
}

TEST_CASE("file store: a big file's re-read is waited for by missing hosts only", "[hostdb][file_store]") {
  file_fixture f;
  std::promise<void> parsed, go_on;
  auto resume = go_on.get_future().share();
  store_options o = f.events.options(f.log);
  o.query_timeout = std::chrono::seconds(20);
  o.wait_for_reread_below = 0;  // every file is "big"
  o.before_swap = [&parsed, resume] {
    parsed.set_value();
    resume.wait();
  };
  auto store = f.open(std::move(o));
  const std::string changed = hash_password("new", cost::min);
  edit(f.file(), [&](database& db) {
    db.find("sample")->pop3_hash = changed;
    return db.add({"added", {}, "", changed});
  });
  REQUIRE(parsed.get_future().wait_for(std::chrono::seconds(20)) == std::future_status::ready);
  // A known host: the version in force at once, marked stale.
  const lookup_result old = look(*store, "sample");
  CHECK(old.record.pop3_hash == f.pop3);
  CHECK(old.stale);
  // A missing one waits for the swap (let go from another thread).
  std::thread release([&go_on] {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    go_on.set_value();
  });
  const lookup_result added = look(*store, "added");
  release.join();
  CHECK(added.status == lookup_status::found);
  CHECK_FALSE(added.stale);
  const lookup_result now = look(*store, "sample");
  CHECK(now.record.pop3_hash == changed);
  CHECK_FALSE(now.stale);
}

TEST_CASE("file store: a missing host's wait is bounded by query_timeout", "[hostdb][file_store]") {
  file_fixture f;
  std::promise<void> go_on;
  auto resume = go_on.get_future().share();
  store_options o = f.events.options(f.log);
  o.query_timeout = std::chrono::milliseconds(300);
  o.before_swap = [resume] { resume.wait(); };
  auto store = f.open(std::move(o));
  edit(f.file(), [&](database& db) { return db.add({"added", {}, "", f.pop3}); });
  const auto start = std::chrono::steady_clock::now();
  const lookup_result r = look(*store, "added");
  const auto took = std::chrono::steady_clock::now() - start;
  CHECK(r.status == lookup_status::unknown);
  CHECK(r.stale);
  CHECK(took >= std::chrono::milliseconds(300));
  CHECK(took < std::chrono::seconds(15));
  go_on.set_value();
  REQUIRE(f.events.wait_change("added"));
  CHECK(look(*store, "added").status == lookup_status::found);
}

TEST_CASE("file store: the usual hash cost, readiness and the access check", "[hostdb][file_store]") {
  file_fixture f;
  auto store = f.open(f.events.options(f.log));
  CHECK(store->wait_ready(std::chrono::milliseconds(0)));
  REQUIRE(store->usual_cost());
  CHECK(*store->usual_cost() == parameters(cost::min));
  CHECK(store->check(nullptr).empty());
  // Two costs: the warning, and the commoner one (ties to the dearer).
  write_text(f.file(), std::string("sample - - ")
                           .append(hash_password("x", hash_cost{2, 16}))
                           .append("\nother - - ")
                           .append(f.pop3)
                           .append("\nthird - - ")
                           .append(hash_password("y", hash_cost{2, 16}))
                           .append("\n"));
  REQUIRE(f.events.wait_change("third"));
  CHECK(*store->usual_cost() == (hash_cost{2, 16}));
  CHECK(f.log.contains("the password hashes have 2 different costs"));
  f.events.clear();
  write_text(f.file(), "");
  REQUIRE(f.events.wait_change("sample"));
  CHECK_FALSE(store->usual_cost());
}

TEST_CASE("host finder on a hosts file: read once, again when it changes", "[hostdb][file_store][finder]") {
  file_fixture f;
  host_finder finder(locate(f.file().string(), "/"));
  CHECK(finder.where() == f.file().string());
  lookup_result r = finder.find("sample");
  REQUIRE(r.status == lookup_status::found);
  CHECK(r.record.dialup[0].to_string() == "192.0.2.0/24");
  CHECK(finder.find("nosuch").status == lookup_status::unknown);
  edit(f.file(), [&](database& db) { return db.add({"added", {}, "", f.pop3}); });
  CHECK(finder.find("added").status == lookup_status::found);
  std::filesystem::permissions(f.file(), std::filesystem::perms::others_read, std::filesystem::perm_options::add);
  r = finder.find("sample");
  CHECK(r.status == lookup_status::unavailable);
  CHECK(r.detail.find("readable by others") != std::string::npos);
  std::filesystem::remove(f.file());
  CHECK(finder.find("sample").status == lookup_status::unknown);
}

TEST_CASE("file store: a folder others can write makes it unavailable until fixed, and stops it at start",
          "[hostdb][file_store][place]") {
  file_fixture f;
  auto store = f.open(f.events.options(f.log));
  // No new version of the file: the folder is looked at all the same.
  REQUIRE(::chmod(f.dir.path().c_str(), 0777) == 0);
  REQUIRE(f.events.wait_health(false));
  const lookup_result r = look(*store, "sample");
  CHECK(r.status == lookup_status::unavailable);
  CHECK(r.detail.find("chmod go-w " + f.dir.path().string()) != std::string::npos);
  REQUIRE(::chmod(f.dir.path().c_str(), 0700) == 0);
  REQUIRE(f.events.wait_health(true));
  CHECK(look(*store, "sample").status == lookup_status::found);
  store.reset();

  REQUIRE(::chmod(f.dir.path().c_str(), 0770) == 0);
  CHECK_THROWS_WITH(f.open(f.events.options(f.log)), Catch::Contains("chmod g-w " + f.dir.path().string()));
  REQUIRE(::chmod(f.dir.path().c_str(), 0700) == 0);
}

TEST_CASE("file store: a hosts file given to another user makes it unavailable until given back",
          "[hostdb][file_store][place]") {
  if (::geteuid() != 0) {
    WARN("not root: cannot give files to another user");
    return;
  }
  file_fixture f;
  auto store = f.open(f.events.options(f.log));
  REQUIRE(::chown(f.file().c_str(), 65534, 0) == 0);
  REQUIRE(f.events.wait_health(false));
  CHECK(look(*store, "sample").detail.find("chown root: " + f.file().string()) != std::string::npos);
  REQUIRE(::chown(f.file().c_str(), 0, 0) == 0);
  REQUIRE(f.events.wait_health(true));
  store.reset();
  // The user sdpsd becomes (`user:`) may own it.
  REQUIRE(::chown(f.file().c_str(), 65534, 0) == 0);
  store_options o = f.events.options(f.log);
  o.check_interval = std::chrono::milliseconds(100);
  CHECK(open_file_store(f.file(), std::move(o), 65534)->up());
  REQUIRE(::chown(f.file().c_str(), 0, 0) == 0);
}

TEST_CASE("file admin: refuses to read or edit a file in a folder others can write", "[hostdb][file_store][admin]") {
  file_fixture f;
  auto admin = open_file_admin(f.file(), std::chrono::seconds(1));
  const std::string before = read_text(f.file());
  REQUIRE(::chmod(f.dir.path().c_str(), 0777) == 0);
  host_record r;
  r.name = "added";
  CHECK_THROWS_AS(admin->add(r), insecure_file);
  CHECK_THROWS_AS(admin->find("sample"), insecure_file);
  CHECK_THROWS_AS(admin->remove("sample"), insecure_file);
  std::ostringstream out;
  CHECK_THROWS_AS(admin->export_to(out), insecure_file);
  REQUIRE(::chmod(f.dir.path().c_str(), 0700) == 0);
  CHECK(read_text(f.file()) == before);
  CHECK(admin->add(r));
}
