// The local_spool module, built from inline YAML and driven as the lock
// module and the core drive it: lock() and open() for a login on sessions
// of the core's engine, then the maildrop as the commands module reads it.

#include "local_spool.hpp"
#include "support/session.hpp"
#include "support/spool.hpp"
#include "support/temp_dir.hpp"

#include <catch2/catch.hpp>

#include <sys/stat.h>

using namespace sdps;
using namespace sdps::spoolstore;
using namespace sdps::local;
using namespace sdps::testing;

namespace {

/// A session of the core's engine, and the login being tried on it.
struct user_session {
  user_session(asio::io_context& io, std::uint64_t id, identity login) : session(io, id), who(std::move(login)) {}
  test_session session;
  identity who;
};

/// One local_spool instance over a temp_dir punt folder.
struct fixture {
  explicit fixture(const std::string& options = "{}", const std::string& instance = "finchley")
      : server(io, "punts: {finchley: " + (dir.path() / "finchley").string() + ", docklands: " +
                       (dir.path() / "docklands").string() + "}"),
        config(instance, options, server, log, services),
        spool(config) {
    config.yaml().refuse_unread(instance);
  }

  std::filesystem::path root() const { return dir.path() / "finchley"; }

  stored_copy put(const std::string& to, const std::string& message, const std::string& from = "alice@example.com") {
    return deliver_text({{"finchley", root()}}, from, {rcpt(to)}, message)[0];
  }

  /// A new connection trying to log in as `user`+`host`; destroying it
  /// ends the session (its slots go, and the lock with them).
  std::unique_ptr<user_session> connect(const std::string& host, const std::string& user = "") {
    return std::make_unique<user_session>(io, ++sessions, identity{host, user});
  }

  lock_status lock(user_session& s) { return run(io, spool.lock(s.session, s.who)); }
  std::shared_ptr<maildrop> open(user_session& s) { return run(io, spool.open(s.session, s.who)); }
  /// What RETR (nullopt) or TOP (`lines`) sends; neither marks read.
  std::string retrieve(maildrop& m, std::size_t i, std::optional<std::uint64_t> lines = std::nullopt) {
    return retrieve(m, i, retrieval{lines, false});
  }
  std::string retrieve(maildrop& m, std::size_t i, retrieval how) {
    auto body = run(io, m.retrieve(i, how));
    return run(io, drain(std::move(body)));
  }

  temp_dir dir;
  asio::io_context io;
  fake_server server;
  capture_log log;
  core::service_registry services;
  fake_config config;
  local_spool spool;
  std::uint64_t sessions = 0;
};

}  // namespace

TEST_CASE("local_spool takes its folder from the site's punts, or from path:") {
  fixture f;
  CHECK(f.spool.punt() == "finchley");
  CHECK(f.spool.root() == f.root());
  REQUIRE(f.services.entries().size() == 2);
  CHECK(f.services.find<sdps::spool>("finchley") == static_cast<sdps::spool*>(&f.spool));
  CHECK(f.services.find<maildrop_source>("finchley") == static_cast<maildrop_source*>(&f.spool));

  fixture named("{punt: docklands}", "second");
  CHECK(named.spool.punt() == "docklands");
  CHECK(named.spool.root() == named.dir.path() / "docklands");

  fixture own("{path: /srv/spool/elsewhere}", "elsewhere");
  CHECK(own.spool.punt() == "elsewhere");
  CHECK(own.spool.root() == "/srv/spool/elsewhere");

  fixture relative("{path: spool/x}", "x");
  CHECK(relative.spool.root() == "/etc/sdps/spool/x");  // against the config file's folder
}

TEST_CASE("local_spool refuses a punt with no folder, naming it") {
  try {
    fixture f("{}", "nowhere");
    FAIL("a punt without a folder was accepted");
  } catch (const config_error& e) {
    const std::string what = e.what();
    CHECK(what.find("nowhere") != std::string::npos);
    CHECK(what.find("punts") != std::string::npos);
    CHECK(what.find("test.yaml") != std::string::npos);
  }
  asio::io_context io;
  fake_server bare(io, "{}");
  capture_log log;
  core::service_registry services;
  fake_config config("finchley", "{}", bare, log, services);
  CHECK_THROWS_WITH(local_spool(config), Catch::Contains("no top-level 'punts:'"));
  fake_config typo("finchley", "{path: /x, locking: maybe}", bare, log, services);
  CHECK_THROWS_AS(local_spool(typo), config_error);
}

TEST_CASE("open() needs this session's lock, then snapshots by name only") {
  fixture f;
  const auto first = f.put("fred", "Subject: one\n\nfirst\n");
  const auto second = f.put("jim", "Subject: two\n\nsecond\n", "");
  auto s = f.connect("sample");
  CHECK_THROWS_AS(f.open(*s), spool_error);
  f.spool.prepare(s->session, s->who);  // nothing to do ahead for a local folder
  REQUIRE(f.lock(*s) == lock_status::acquired);
  CHECK(f.lock(*s) == lock_status::acquired);  // again: still ours
  auto drop = f.open(*s);
  REQUIRE(drop);
  REQUIRE(drop->count() == 2);
  CHECK(drop->info(0).uidl == first.uidl);
  CHECK(drop->info(1).uidl == second.uidl);
  CHECK(drop->info(0).punt == "finchley");
  CHECK(drop->info(0).arrival == uidl_arrival(first.uidl));

  // The snapshot: later mail is not in it. The core opens once per login;
  // each open() is a snapshot of its own.
  f.put("fred", "Subject: three\n\nlate\n");
  CHECK(drop->count() == 2);
  const auto again = f.open(*s);
  CHECK(again != drop);
  CHECK(again->count() == 3);

  // What RETR sends is exactly what LIST said.
  for (std::size_t i = 0; i < drop->count(); ++i) CHECK(f.retrieve(*drop, i).size() == drop->info(i).size);
  CHECK(f.retrieve(*drop, 0) == "Return-Path: <alice@example.com>\r\nSubject: one\r\n\r\nfirst\r\n");
  CHECK(f.retrieve(*drop, 1) == "Return-Path: <>\r\nSubject: two\r\n\r\nsecond\r\n");
  CHECK(f.retrieve(*drop, 0, 0) == "Return-Path: <alice@example.com>\r\nSubject: one\r\n\r\n");
  CHECK(f.retrieve(*drop, 0, 99999999) == f.retrieve(*drop, 0));
  CHECK(live_totals(*drop, marks{}) ==
        std::pair<std::size_t, std::uint64_t>{2, drop->info(0).size + drop->info(1).size});
}

TEST_CASE("with locking: false, open() needs no lock and lock() touches nothing") {
  fixture f("{locking: false}");
  f.put("fred", "Subject: one\n\nfirst\n");
  auto a = f.connect("sample");
  auto b = f.connect("sample");
  CHECK(f.open(*a)->count() == 1);
  CHECK(f.lock(*b) == lock_status::acquired);
  CHECK(f.lock(*a) == lock_status::acquired);
  CHECK_FALSE(std::filesystem::exists(f.root() / "sample" / "locks" / "host"));
}

TEST_CASE("locks between sessions: host vs user vs user, released at unlock or session end") {
  fixture f;
  // (A host with no folder has nothing to lock: see the next test.)
  std::filesystem::create_directories(f.root() / "sample");
  auto host = f.connect("sample");
  auto fred = f.connect("sample", "fred");
  auto fred2 = f.connect("sample", "fred");
  auto jim = f.connect("sample", "jim");
  auto other = f.connect("other");

  REQUIRE(f.lock(*host) == lock_status::acquired);
  CHECK(f.lock(*fred) == lock_status::in_use);
  CHECK(f.lock(*other) == lock_status::acquired);
  f.spool.unlock(host->session);
  CHECK(f.lock(*fred) == lock_status::acquired);
  CHECK(f.lock(*fred2) == lock_status::in_use);
  CHECK(f.lock(*jim) == lock_status::acquired);
  CHECK(f.lock(*host) == lock_status::in_use);
  fred.reset();  // the connection ended: its slots, and the lock, are gone
  CHECK(f.lock(*fred2) == lock_status::acquired);
  fred2.reset();
  jim.reset();
  CHECK(f.lock(*host) == lock_status::acquired);
}

TEST_CASE("a host with no folder: its first login makes it, and its locks hold as any host's") {
  fixture f;
  std::filesystem::create_directories(f.root());
  auto host = f.connect("sample");
  auto fred = f.connect("sample", "fred");
  REQUIRE(f.lock(*host) == lock_status::acquired);
  CHECK(f.lock(*fred) == lock_status::in_use);
  CHECK(std::filesystem::is_directory(f.root() / "sample"));
  CHECK(f.open(*host)->count() == 0);
}

TEST_CASE("a punt that cannot be reached is unavailable, not in use") {
  fixture f;
  write_text(f.root(), "a file where the punt folder should be");
  auto s = f.connect("sample");
  CHECK(f.lock(*s) == lock_status::unavailable);
  CHECK(f.log.contains("finchley"));

  fixture g("{locking: false}");
  write_text(g.root(), "a file where the punt folder should be");
  auto t = g.connect("sample");
  CHECK_THROWS_AS(g.open(*t), spool_error);
}

TEST_CASE("a punt folder missing at start-up is created at the first login; one that vanishes is unavailable") {
  fixture f;  // its punt folder does not exist yet
  REQUIRE_FALSE(std::filesystem::exists(f.root()));
  CHECK(f.log.contains("does not exist yet"));
  auto s = f.connect("sample");
  REQUIRE(f.lock(*s) == lock_status::acquired);
  CHECK(f.open(*s)->count() == 0);  // a host that never had mail: an empty maildrop
  s.reset();
  CHECK(std::filesystem::is_directory(f.root()));
  // Gone after it was seen (an unmounted file system): not recreated.
  std::filesystem::remove_all(f.root());
  auto t = f.connect("sample", "fred");
  CHECK(f.lock(*t) == lock_status::unavailable);
  CHECK_FALSE(std::filesystem::exists(f.root()));
  CHECK(f.log.contains("punt folder is missing"));

  // Without locks: empty while never seen, unavailable once it vanished.
  fixture g("{locking: false}");
  auto u = g.connect("sample");
  CHECK(g.open(*u)->count() == 0);
  CHECK_FALSE(std::filesystem::exists(g.root()));
  g.put("fred", "Subject: one\n\n");
  auto v = g.connect("sample");
  CHECK(g.open(*v)->count() == 1);
  std::filesystem::remove_all(g.root());
  auto w = g.connect("sample");
  CHECK_THROWS_AS(g.open(*w), spool_error);
}

TEST_CASE("a user login sees only its own mail") {
  fixture f;
  f.put("fred", "Subject: fred 1\n\n.\n");
  f.put("jim", "Subject: jim 1\n\n.\n");
  f.put("Fred", "Subject: fred 2\n\n.\n");
  deliver_text({{"finchley", f.root()}}, "a@b", {{"FRED@Sample.Demon.Co.UK", "FRED", "sample"}}, "Subject: fred 3\n\n");
  auto s = f.connect("sample", "fred");
  REQUIRE(f.lock(*s) == lock_status::acquired);
  auto drop = f.open(*s);
  REQUIRE(drop->count() == 3);
  CHECK(f.retrieve(*drop, 0, 0).find("fred 1") != std::string::npos);
  CHECK(f.retrieve(*drop, 1, 0).find("fred 2") != std::string::npos);
  CHECK(f.retrieve(*drop, 2, 0).find("fred 3") != std::string::npos);
  auto j = f.connect("sample", "jim");
  REQUIRE(f.lock(*j) == lock_status::acquired);
  CHECK(f.open(*j)->count() == 1);
}

TEST_CASE("RETR's read flag persists and shows in the envelope; TOP sets it only when asked") {
  fixture f;
  const auto stored = f.put("fred", "Subject: one\n\nfirst\n");
  const auto topped = f.put("fred", "Subject: two\n\nsecond\n");
  f.put("fred", "Subject: three\n\nthird\n");
  {
    auto s = f.connect("sample");
    REQUIRE(f.lock(*s) == lock_status::acquired);
    auto drop = f.open(*s);
    auto e = run(f.io, drop->envelope(0));
    CHECK_FALSE(e.read);
    CHECK(e.note == "finchley");
    CHECK(e.from == "alice@example.com");
    CHECK(e.to == "fred@sample.demon.co.uk");
    // TOP (and a RETR that does not mark, as nothing in sdps asks) leave it.
    f.retrieve(*drop, 1, retrieval::top(0));
    f.retrieve(*drop, 0, retrieval{std::nullopt, false});
    CHECK_FALSE(run(f.io, drop->envelope(0)).read);
    CHECK_FALSE(run(f.io, drop->envelope(1)).read);
    // RETR sets it in the same step, and sends the whole message.
    CHECK(f.retrieve(*drop, 0, retrieval::whole_message()) == f.retrieve(*drop, 0));
    CHECK(run(f.io, drop->envelope(0)).read);
    // A TOP that marks (a back end's XREAD) sends only the header.
    CHECK(f.retrieve(*drop, 1, retrieval{0, true}) == "Return-Path: <alice@example.com>\r\nSubject: two\r\n\r\n");
    CHECK(run(f.io, drop->envelope(1)).read);
    CHECK_FALSE(run(f.io, drop->envelope(2)).read);
  }
  struct stat st;
  REQUIRE(::stat(stored.file.c_str(), &st) == 0);
  CHECK((st.st_mode & S_IXUSR) != 0);
  REQUIRE(::stat(topped.file.c_str(), &st) == 0);
  CHECK((st.st_mode & S_IXUSR) != 0);
  auto s = f.connect("sample");
  REQUIRE(f.lock(*s) == lock_status::acquired);
  auto drop = f.open(*s);
  CHECK(run(f.io, drop->envelope(0)).read);
  CHECK(run(f.io, drop->envelope(1)).read);
  CHECK_FALSE(run(f.io, drop->envelope(2)).read);
}

TEST_CASE("UPDATE removes the messages asked; one already gone counts as removed") {
  fixture f;
  const auto a = f.put("fred", "Subject: a\n\n");
  const auto b = f.put("fred", "Subject: b\n\n");
  const auto c = f.put("fred", "Subject: c\n\n");
  auto s = f.connect("sample");
  REQUIRE(f.lock(*s) == lock_status::acquired);
  auto drop = f.open(*s);
  CHECK(run(f.io, drop->remove({})).removed == 0);
  CHECK(std::filesystem::exists(a.file));
  std::filesystem::remove(c.file);  // SMTP took it meanwhile
  const auto result = run(f.io, drop->remove({0, 2}));
  CHECK(result.removed == 2);
  CHECK(result.failed == 0);
  CHECK_FALSE(std::filesystem::exists(a.file));
  CHECK(std::filesystem::exists(b.file));
}

TEST_CASE("UPDATE reports a message that cannot be removed") {
  fixture f;
  const auto stored = f.put("fred", "Subject: a\n\n");
  auto s = f.connect("sample");
  REQUIRE(f.lock(*s) == lock_status::acquired);
  auto drop = f.open(*s);
  // A folder under the message's name cannot be unlinked.
  std::filesystem::remove(stored.file);
  std::filesystem::create_directory(stored.file);
  write_text(stored.file / "x", "x");
  const auto result = run(f.io, drop->remove({0}));
  CHECK(result.removed == 0);
  CHECK(result.failed == 1);
  CHECK(f.log.contains("cannot remove"));
}

TEST_CASE("a message SMTP took during the session comes back as a dummy notice") {
  fixture f;
  const auto a = f.put("fred", "Subject: a\nMessage-ID: <original@example.com>\n\nthe original\n");
  const auto b = f.put("fred", "Subject: b\n\n");
  auto s = f.connect("sample");
  REQUIRE(f.lock(*s) == lock_status::acquired);
  auto drop = f.open(*s);
  const auto size = drop->info(0).size;
  run(f.io, drop->envelope(1));  // *ENV before SMTP takes it
  std::filesystem::remove(a.file);
  std::filesystem::remove(b.file);

  const std::string dummy = f.retrieve(*drop, 0);
  CHECK(dummy.find("original") == std::string::npos);
  CHECK(dummy.find("\r\nMessage-ID: <sdps-dummy." + a.uidl) != std::string::npos);
  CHECK(dummy.find("@pop3.test>") != std::string::npos);
  CHECK(dummy.find("\r\nTo: <fred@sample.demon.co.uk>\r\n") != std::string::npos);
  CHECK(dummy.find("\r\nFrom: ") != std::string::npos);
  CHECK(dummy.find("\r\nDate: ") != std::string::npos);
  CHECK(dummy.find("\r\nSubject: ") != std::string::npos);
  CHECK(dummy.find("\r\n\r\n") != std::string::npos);
  // LIST and UIDL keep the original's.
  CHECK(drop->info(0).size == size);
  CHECK(drop->info(0).uidl == a.uidl);
  // TOP of the dummy: its header only.
  const std::string top = f.retrieve(*drop, 0, 0);
  CHECK(top.substr(top.size() - 4) == "\r\n\r\n");
  CHECK(top.find("Message-ID") != std::string::npos);
  CHECK(top.find("SMTP after") == std::string::npos);
  // RETR of a vanished message marks nothing, and is no error: the same
  // notice, Message-ID and Date included, at every RETR and TOP of it in
  // the session (a client that fetches it again sees one message).
  CHECK(f.retrieve(*drop, 0, retrieval::whole_message()) == dummy);
  CHECK(f.retrieve(*drop, 0) == dummy);
  CHECK(dummy.starts_with(f.retrieve(*drop, 0, 0)));
  // *ENV: the full envelope if it was read before; otherwise still an
  // answer (fetchmail would hang on -ERR): the recipient from the file
  // name, an empty sender.
  CHECK(run(f.io, drop->envelope(1)).to == "fred@sample.demon.co.uk");
  const auto gone = run(f.io, drop->envelope(0));
  CHECK(gone.from.empty());
  CHECK_FALSE(gone.read);
  CHECK(gone.note == "finchley");
  CHECK_FALSE(gone.to.empty());
  CHECK(gone.to.find("@sample.demon.co.uk") != std::string::npos);
  CHECK(f.log.contains("left the spool"));
}

TEST_CASE("the dummy notice says why the message left: its departure record, or none (issue 19.2)") {
  fixture f;
  const auto delivered = f.put("fred", "Subject: a\n\n");
  const auto returned = f.put("fred", "Subject: b\n\n");
  const auto by_hand = f.put("fred", "Subject: c\n\n");
  auto s = f.connect("sample");
  REQUIRE(f.lock(*s) == lock_status::acquired);
  auto drop = f.open(*s);
  std::string error, note;
  REQUIRE(depart(delivered.file, departure::delivered, error, note));
  REQUIRE(depart(returned.file, departure::returned, error, note));
  std::filesystem::remove(by_hand.file);
  CHECK(f.retrieve(*drop, 0).find("\r\nSubject: Message already delivered by SMTP\r\n") != std::string::npos);
  const std::string bounced = f.retrieve(*drop, 1);
  CHECK(bounced.find("\r\nSubject: Message expired and returned to its sender\r\n") != std::string::npos);
  CHECK(bounced.find("You should already have it through SMTP") == std::string::npos);
  CHECK(f.retrieve(*drop, 2).find("\r\nSubject: Message removed from the spool\r\n") != std::string::npos);
  // Made once: a record swept meanwhile changes nothing in this session.
  std::filesystem::remove_all(f.root() / "sample" / gone_folder);
  CHECK(f.retrieve(*drop, 1) == bounced);
}

TEST_CASE("junk in the spool folder is skipped; a damaged message fails alone") {
  fixture f;
  std::filesystem::create_directories(f.root());
  std::filesystem::copy(std::filesystem::path(SDPS_SPOOL_FIXTURES) / "handmade", f.root(),
                        std::filesystem::copy_options::recursive);
  auto s = f.connect("sample");
  REQUIRE(f.lock(*s) == lock_status::acquired);
  auto drop = f.open(*s);
  REQUIRE(drop->count() == 3);
  CHECK(f.log.contains("README"));
  CHECK(f.retrieve(*drop, 0).size() == drop->info(0).size);
  CHECK_THROWS_AS(f.retrieve(*drop, 1), spool_error);
  CHECK_THROWS_AS(run(f.io, drop->envelope(1)), spool_error);
  CHECK(f.log.contains("damaged envelope header"));
  CHECK(f.retrieve(*drop, 2) == "Return-Path: <>\r\nSubject: a bounce, no Arrival field\r\n\r\nbody\r\n");
}

TEST_CASE("a small host folder is listed on the session's loop, a big one on the blocking pool") {
  fixture f;
  f.put("fred", "Subject: one\n\nfirst\n");
  auto s = f.connect("sample");
  REQUIRE(f.lock(*s) == lock_status::acquired);
  CHECK(f.open(*s)->count() == 1);
  CHECK(f.log.contains("listed 1 message(s) on the session's loop"));
  CHECK_FALSE(f.log.contains("on the blocking pool"));
  f.spool.unlock(s->session);

  // Grow the folder past loop_listing_max with entries that are not
  // messages (skipped, and logged in a bounded summary).
  const auto folder = host_dir(f.root(), "sample");
  struct stat st {};
  for (int i = 0; ::stat(folder.c_str(), &st) == 0 && static_cast<std::uintmax_t>(st.st_size) <= loop_listing_max;
       ++i) {
    std::filesystem::create_directory(folder / ("not-a-message-but-a-rather-long-folder-name-" + std::to_string(i)));
    REQUIRE(i < 100000);
  }
  auto big = f.connect("sample");
  REQUIRE(f.lock(*big) == lock_status::acquired);
  CHECK(f.open(*big)->count() == 1);
  CHECK(f.log.contains("listed 1 message(s) on the blocking pool"));
}

TEST_CASE("a 20 MiB message is streamed, not loaded whole") {
  fixture f;
  std::string big = "Subject: big\n\n";
  const std::string line(1000, 'x');
  while (big.size() < 20u * 1024 * 1024) big += line + "\n";
  f.put("fred", big);
  auto s = f.connect("sample");
  REQUIRE(f.lock(*s) == lock_status::acquired);
  auto drop = f.open(*s);
  auto body = run(f.io, drop->retrieve(0, retrieval::whole_message()));
  std::vector<char> buffer(64 * 1024);
  std::uint64_t total = 0;
  std::size_t reads = 0, largest = 0;
  for (;;) {
    const std::size_t n = run(f.io, body->read(std::span<char>(buffer)));
    if (n == 0) break;
    total += n;
    ++reads;
    largest = std::max(largest, n);
  }
  CHECK(total == drop->info(0).size);
  CHECK(largest <= buffer.size());
  CHECK(reads > 300);
}

TEST_CASE("the probe: up while the folder is usable or not yet made, down once it vanished or cannot be used") {
  fixture f;  // its punt folder does not exist yet
  const auto probe = f.spool.make_probe(f.io.get_executor());
  REQUIRE(probe);
  punt_health h = run(f.io, probe->check());
  CHECK(h.up);
  CHECK_THAT(h.detail, Catch::Contains("does not exist yet"));
  std::filesystem::create_directories(f.root());
  h = run(f.io, probe->check());
  CHECK(h.up);
  CHECK(h.detail.empty());
  // Seen, then gone (an unmounted file system): down, and not recreated.
  std::filesystem::remove_all(f.root());
  h = run(f.io, probe->check());
  CHECK_FALSE(h.up);
  CHECK_THAT(h.detail, Catch::Contains("is missing"));
  CHECK_FALSE(std::filesystem::exists(f.root()));
  write_text(f.root(), "a file where the punt folder should be");
  h = run(f.io, probe->check());
  CHECK_FALSE(h.up);
  CHECK_THAT(h.detail, Catch::Contains("is not a folder"));
}

TEST_CASE("sessions() counts the sessions holding one of the punt's locks") {
  fixture f;
  CHECK(f.spool.sessions() == 0);
  auto a = f.connect("sample", "fred");
  auto b = f.connect("sample", "jim");
  REQUIRE(f.lock(*a) == lock_status::acquired);
  REQUIRE(f.lock(*b) == lock_status::acquired);
  CHECK(f.spool.sessions() == 2);
  auto host = f.connect("sample");
  CHECK(f.lock(*host) == lock_status::in_use);  // refused: holds nothing
  CHECK(f.spool.sessions() == 2);
  f.spool.unlock(a->session);
  CHECK(f.spool.sessions() == 1);
  b.reset();  // the session ends: its slot goes, the lock with it
  CHECK(f.spool.sessions() == 0);

  fixture g("{locking: false}");
  auto c = g.connect("sample");
  REQUIRE(g.lock(*c) == lock_status::acquired);
  CHECK(g.spool.sessions() == 0);
}
