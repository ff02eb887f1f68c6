// The host database: dialup addresses, names, the file and its edits, hashes.

#include "hostdb/hostdb.hpp"
#include "support/temp_dir.hpp"

#include <catch2/catch.hpp>
#include <sodium.h>
#include <sys/stat.h>

#include <atomic>
#include <thread>

using namespace sdps::hostdb;
using boost::asio::ip::make_address;
using sdps::base::address_prefix;

namespace {

struct sodium_ready {
  sodium_ready() { REQUIRE(sodium_init() >= 0); }
};

}  // namespace

TEST_CASE("dialup_from: any of the host's dialup prefixes", "[hostdb]") {
  const host_record sample{"sample", {*address_prefix::parse("192.0.2.7"), *address_prefix::parse("2001:db8::/64")},
                           "", ""};
  CHECK(sample.dialup_from(make_address("192.0.2.7")));
  CHECK(sample.dialup_from(make_address("::ffff:192.0.2.7")));
  CHECK(sample.dialup_from(make_address("2001:db8::99")));
  CHECK_FALSE(sample.dialup_from(make_address("192.0.2.8")));
  CHECK_FALSE(host_record{"none", {}, "", ""}.dialup_from(make_address("192.0.2.7")));
}

TEST_CASE("normalise_host: short names, full names, case, junk", "[hostdb][names]") {
  CHECK(normalise_host("sample", "demon.co.uk") == "sample");
  CHECK(normalise_host("Sample", "demon.co.uk") == "sample");
  CHECK(normalise_host("sample.demon.co.uk", "demon.co.uk") == "sample");
  CHECK(normalise_host("SAMPLE.Demon.CO.uk", "demon.co.uk") == "sample");
  CHECK(normalise_host("sample.demon.co.uk", "Demon.Co.UK") == "sample");
  CHECK(normalise_host("a-1", "demon.co.uk") == "a-1");
  CHECK(normalise_host("9lives", "demon.co.uk") == "9lives");
  CHECK(normalise_host(std::string(63, 'a'), "demon.co.uk") == std::string(63, 'a'));

  CHECK(normalise_host("", "demon.co.uk").empty());
  CHECK(normalise_host(std::string(64, 'a'), "demon.co.uk").empty());
  CHECK(normalise_host("sample.other.com", "demon.co.uk").empty());
  CHECK(normalise_host("demon.co.uk", "demon.co.uk").empty());
  CHECK(normalise_host(".demon.co.uk", "demon.co.uk").empty());
  CHECK(normalise_host("a.b.demon.co.uk", "demon.co.uk").empty());
  CHECK(normalise_host("sample.demon.co.uk.", "demon.co.uk").empty());
  CHECK(normalise_host("-sample", "demon.co.uk").empty());
  CHECK(normalise_host("sample-", "demon.co.uk").empty());
  CHECK(normalise_host("sam_ple", "demon.co.uk").empty());
  CHECK(normalise_host("sam ple", "demon.co.uk").empty());
  CHECK(normalise_host("../etc", "demon.co.uk").empty());
  CHECK(normalise_host("sample/x", "demon.co.uk").empty());
  CHECK(normalise_host(std::string("sam\0ple", 7), "demon.co.uk").empty());
  // Without a customer domain only the short form is a host name.
  CHECK(normalise_host("sample", "") == "sample");
  CHECK(normalise_host("sample.demon.co.uk", "").empty());
}

TEST_CASE("hashes: Argon2id at the min cost verifies the right password only", "[hostdb][hash]") {
  sodium_ready ready;
  const std::string hash = hash_password("correct horse", cost::min);
  CHECK(hash.rfind("$argon2id$", 0) == 0);
  CHECK(is_hash(hash));
  CHECK(verify_password(hash, "correct horse"));
  CHECK_FALSE(verify_password(hash, "correct horse "));
  CHECK_FALSE(verify_password(hash, "Correct horse"));
  CHECK_FALSE(verify_password(hash, ""));
  // Salted: the same password hashes differently each time.
  CHECK(hash_password("correct horse", cost::min) != hash);
  // Spaces and every printable character are part of a password.
  const std::string odd = " a b\tc ~!@#$%^&*() ";
  CHECK(verify_password(hash_password(odd, cost::min), odd));

  CHECK_FALSE(verify_password("", "x"));
  CHECK_FALSE(verify_password("-", "x"));
  CHECK_FALSE(verify_password("$argon2id$garbage", "x"));
  CHECK_FALSE(is_hash("$argon2i$v=19$m=8,t=1,p=1$c2FsdA$aGFzaA"));
  CHECK_FALSE(is_hash("$argon2id$v=19$m=8,t=1,p=1$c2F sdA$aGFzaA"));
  CHECK_FALSE(is_hash("$argon2id$" + std::string(200, 'a')));
}

TEST_CASE("hashes: cost names", "[hostdb][hash]") {
  CHECK(parse_cost("interactive") == cost::interactive);
  CHECK(parse_cost("moderate") == cost::moderate);
  CHECK(parse_cost("sensitive") == cost::sensitive);
  CHECK(parse_cost("min") == cost::min);
  CHECK_FALSE(parse_cost("Interactive"));
  CHECK_FALSE(parse_cost(""));
  CHECK_FALSE(parse_cost("max"));
  CHECK(std::string(to_string(cost::moderate)) == "moderate");
}

TEST_CASE("secret: holds the text and empties when cleared or moved from", "[hostdb][hash]") {
  secret s("pass word");
  CHECK(s.view() == "pass word");
  secret t = std::move(s);
  CHECK(s.empty());
  CHECK(t.view() == "pass word");
  t.clear();
  CHECK(t.empty());
  CHECK(t.view().empty());
}

TEST_CASE("file: malformed lines are reported by line number and skipped", "[hostdb][file]") {
  sodium_ready ready;
  const std::string good = hash_password("pw", cost::min);
  const std::string text =
      "# comment\n"
      "\n"
      "   # indented comment\n"
      "sample 192.0.2.7,2001:db8::/64 - " + good + "\n"       // 4
      "Upper - - -\r\n"                                          // 5: upper case is fine, CRLF too
      "toofew - -\n"                                             // 6
      "bad_name - - -\n"                                         // 7
      "badnet 192.0.2.300 - -\n"                                 // 8
      "badnet2 192.0.2.1,,192.0.2.2 - -\n"                       // 9
      "badhash - nothash -\n"                                    // 10
      "badhash2 - - $argon2id$v=19$m=8,t=1,p=1$c2F\n"            // 11: hash-shaped: loads, never verifies
      "sample - - -\n"                                           // 12: duplicate
      "toomany - - - extra\n"                                    // 13
      "\tspaced\t192.0.2.9\t-\t-\n";                             // 14
  const load_result r = parse(text);
  std::vector<std::size_t> lines;
  for (const auto& p : r.problems) lines.push_back(p.line);
  CHECK(lines == std::vector<std::size_t>{6, 7, 8, 9, 10, 12, 13});
  REQUIRE(r.hosts.size() == 4);
  const host_record* sample = r.hosts.find("sample");
  REQUIRE(sample);
  CHECK(sample->dialup.size() == 2);
  CHECK(sample->pop3_hash == good);
  CHECK(sample->dialup_hash.empty());
  CHECK(r.hosts.find("upper"));
  CHECK(r.hosts.find("badhash2"));  // a hash-shaped string; verifying it simply fails
  CHECK_FALSE(verify_password(r.hosts.find("badhash2")->pop3_hash, "pw"));
  CHECK(r.hosts.find("spaced"));
  CHECK(r.problems[0].message.find("4 fields") != std::string::npos);
  CHECK(r.problems[2].message.find("192.0.2.300") != std::string::npos);
  CHECK(r.problems[5].message.find("line 4") != std::string::npos);
  // Messages never quote a hash field.
  for (const auto& p : r.problems) CHECK(p.message.find("nothash") == std::string::npos);
}

TEST_CASE("file: save and load round trip", "[hostdb][file]") {
  sodium_ready ready;
  sdps::testing::temp_dir dir;
  const auto file = dir / "var" / "hosts";  // the folder does not exist yet
  database db;
  host_record sample{"sample", {*address_prefix::parse("192.0.2.7"), *address_prefix::parse("2001:db8::/64")},
                     hash_password("dial", cost::min), hash_password("pop", cost::min)};
  REQUIRE(db.add(sample));
  REQUIRE(db.add({"other", {}, "", ""}));
  CHECK_FALSE(db.add({"other", {}, "", ""}));
  save(file, db);

  const load_result r = load(file);
  CHECK(r.problems.empty());
  CHECK(r.stamp.exists);
  REQUIRE(r.hosts.size() == 2);
  const host_record* back = r.hosts.find("sample");
  REQUIRE(back);
  CHECK(back->dialup.size() == 2);
  CHECK(back->dialup[0].to_string() == "192.0.2.7");
  CHECK(back->dialup[1].to_string() == "2001:db8::/64");
  CHECK(verify_password(back->dialup_hash, "dial"));
  CHECK(verify_password(back->pop3_hash, "pop"));
  CHECK(r.hosts.find("other")->pop3_hash.empty());
  CHECK(format(r.hosts) == format(db));

  struct stat st {};
  REQUIRE(::stat(file.c_str(), &st) == 0);
  CHECK((st.st_mode & 07777) == 0600);
  // A replacement keeps the mode the admin chose (0640: a service group
  // reads it), less what load() would refuse.
  REQUIRE(::chmod(file.c_str(), 0640) == 0);
  save(file, db);
  REQUIRE(::stat(file.c_str(), &st) == 0);
  CHECK((st.st_mode & 07777) == 0640);
  REQUIRE(::chmod(file.c_str(), 0666) == 0);
  save(file, db);
  REQUIRE(::stat(file.c_str(), &st) == 0);
  CHECK((st.st_mode & 07777) == 0640);

  // Nothing but the file and its lock file is left behind.
  edit(file, [](database&) { return false; });
  std::vector<std::string> names;
  for (const auto& e : std::filesystem::directory_iterator(file.parent_path())) names.push_back(e.path().filename());
  std::sort(names.begin(), names.end());
  CHECK(names == std::vector<std::string>{"hosts", "hosts.lock"});
}

TEST_CASE("file: a missing file is an empty database", "[hostdb][file]") {
  sdps::testing::temp_dir dir;
  const load_result r = load(dir / "nothing");
  CHECK(r.hosts.size() == 0);
  CHECK(r.problems.empty());
  CHECK_FALSE(r.stamp.exists);
  CHECK(stamp(dir / "nothing") == r.stamp);
  CHECK_FALSE(host_exists(dir / "nothing", "sample"));
  // A folder where the file should be cannot be read: that is an error, not "no hosts".
  CHECK_THROWS_AS(load(dir.path()), std::system_error);
  CHECK_THROWS_AS(host_exists(dir.path(), "sample"), std::system_error);
}

TEST_CASE("file: a hosts file writable by group or others, or readable by others, is refused", "[hostdb][file]") {
  sdps::testing::temp_dir dir;
  sdps::testing::write_text(dir / "hosts", "sample - - -\n");
  for (const auto mode : {0600, 0640, 0400, 0440}) {
    REQUIRE(::chmod((dir / "hosts").c_str(), static_cast<mode_t>(mode)) == 0);
    CHECK(load(dir / "hosts").hosts.size() == 1);
  }
  for (const auto mode : {0644, 0660, 0666, 0602, 0604}) {
    REQUIRE(::chmod((dir / "hosts").c_str(), static_cast<mode_t>(mode)) == 0);
    CHECK_THROWS_AS(load(dir / "hosts"), insecure_file);
    CHECK_THROWS_AS(host_exists(dir / "hosts", "sample"), insecure_file);
  }
}

TEST_CASE("passwords: the cost of a stored hash is read back", "[hostdb][password]") {
  const auto h = hash_password("pw", cost::min);
  REQUIRE(cost_of(h));
  CHECK(*cost_of(h) == parameters(cost::min));
  const auto explicit_cost = hash_password("pw", hash_cost{2, 16});
  CHECK(cost_of(explicit_cost) == hash_cost{2, 16});
  CHECK(verify_password(explicit_cost, "pw"));
  CHECK_FALSE(cost_of("-"));
}

TEST_CASE("file: host_exists reads the file as the server does", "[hostdb][file]") {
  sdps::testing::temp_dir dir;
  sdps::testing::write_text(dir / "hosts", "sample - - -\nbroken 1.2.3 - -\nSecond - - -\n");
  CHECK(host_exists(dir / "hosts", "sample"));
  CHECK(host_exists(dir / "hosts", "second"));
  CHECK_FALSE(host_exists(dir / "hosts", "broken"));
  CHECK_FALSE(host_exists(dir / "hosts", "samp"));
}

TEST_CASE("file: edit is read-modify-write and changes the stamp", "[hostdb][file]") {
  sdps::testing::temp_dir dir;
  const auto file = dir / "hosts";
  const file_stamp before = stamp(file);
  CHECK(edit(file, [](database& db) { return db.add({"sample", {}, "", ""}); }));
  const file_stamp first = stamp(file);
  CHECK(first.exists);
  CHECK(first != before);
  // A change that declines writes nothing.
  CHECK_FALSE(edit(file, [](database& db) { return db.add({"sample", {}, "", ""}); }));
  CHECK(stamp(file) == first);
  CHECK(edit(file, [](database& db) { return db.remove("sample"); }));
  CHECK(stamp(file) != first);
  CHECK(load(file).hosts.size() == 0);
}

TEST_CASE("file: edit refuses a file with malformed lines and leaves it alone", "[hostdb][file]") {
  sdps::testing::temp_dir dir;
  const auto file = dir / "hosts";
  const std::string text = "sample - - -\nnot a valid line at all\n";
  sdps::testing::write_text(file, text);
  try {
    edit(file, [](database& db) { return db.add({"other", {}, "", ""}); });
    FAIL("edit accepted a malformed file");
  } catch (const malformed_file& e) {
    CHECK(std::string(e.what()).find("hosts:2:") != std::string::npos);
  }
  CHECK(sdps::testing::read_text(file) == text);
}

TEST_CASE("file: editors are serialised by the lock", "[hostdb][file]") {
  sdps::testing::temp_dir dir;
  const auto file = dir / "hosts";
  {
    edit_lock held(file);
    CHECK_THROWS_AS(edit(file, [](database&) { return true; }, std::chrono::milliseconds(100)), busy);
  }
  // Many concurrent read-modify-write editors lose no update.
  constexpr int editors = 8;
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int i = 0; i < editors; ++i)
    threads.emplace_back([&, i] {
      try {
        edit(file, [i](database& db) { return db.add({"host" + std::to_string(i), {}, "", ""}); });
      } catch (...) {
        ++failures;
      }
    });
  for (auto& t : threads) t.join();
  CHECK(failures == 0);
  const load_result r = load(file);
  CHECK(r.problems.empty());
  CHECK(r.hosts.size() == editors);
}

TEST_CASE("file: a folder others or its group can write is refused, unless sticky", "[hostdb][file][place]") {
  sdps::testing::temp_dir dir;
  const auto hosts = dir / "hosts";
  sdps::testing::write_text(hosts, "sample - - -\n");
  REQUIRE(::chmod(hosts.c_str(), 0600) == 0);
  CHECK_NOTHROW(check_place(hosts, std::nullopt));
  const std::pair<int, const char*> refused[] = {{0777, "chmod go-w "}, {0775, "chmod g-w "}, {0757, "chmod o-w "}};
  for (const auto& [mode, fix] : refused) {
    REQUIRE(::chmod(dir.path().c_str(), static_cast<mode_t>(mode)) == 0);
    CHECK_THROWS_WITH(check_place(hosts, std::nullopt),
                      Catch::Contains("could replace the file by rename") && Catch::Contains(fix + dir.path().string()));
  }
  // The sticky bit: only the file's owner may rename over it.
  REQUIRE(::chmod(dir.path().c_str(), 01777) == 0);
  CHECK_NOTHROW(check_place(hosts, std::nullopt));
  // A missing file: its folder still counts (anyone could create it).
  REQUIRE(::chmod(dir.path().c_str(), 0777) == 0);
  CHECK_THROWS_AS(check_place(dir / "absent", std::nullopt), insecure_file);
  CHECK_NOTHROW(check_place(dir / "no" / "hosts", std::nullopt));
  REQUIRE(::chmod(dir.path().c_str(), 0700) == 0);
}

TEST_CASE("file: a hosts file or folder owned by another user than root and sdps's is refused",
          "[hostdb][file][place]") {
  if (::geteuid() != 0) {
    WARN("not root: cannot give files to another user");
    return;
  }
  const uid_t other = 65534;  // nobody
  sdps::testing::temp_dir dir;
  const auto hosts = dir / "hosts";
  sdps::testing::write_text(hosts, "sample - - -\n");
  REQUIRE(::chmod(hosts.c_str(), 0600) == 0);
  REQUIRE(::chown(hosts.c_str(), other, 0) == 0);
  CHECK_THROWS_WITH(check_place(hosts, std::nullopt), Catch::Contains(hosts.string() + " is owned by") &&
                                                          Catch::Contains("(uid 65534)") &&
                                                          Catch::Contains("chown root: " + hosts.string()));
  // The user sdps works as (`user:`) may own it, and root always may.
  CHECK_NOTHROW(check_place(hosts, other));
  REQUIRE(::chown(hosts.c_str(), 0, 0) == 0);
  CHECK_NOTHROW(check_place(hosts, other));
  CHECK_NOTHROW(check_place(hosts, 1));
  REQUIRE(::chown(dir.path().c_str(), other, 0) == 0);
  CHECK_THROWS_WITH(check_place(hosts, std::nullopt),
                    Catch::Contains(dir.path().string() + ", the folder of the host database") &&
                        Catch::Contains("could replace the file") &&
                        Catch::Contains("chown root: " + dir.path().string()));
  CHECK_NOTHROW(check_place(hosts, other));
  REQUIRE(::chown(dir.path().c_str(), 0, 0) == 0);
}
