// The spool on disk: scans, locks, message files, read flag, removal.

#include <fcntl.h>
#include <sys/file.h>
#include "support/fakes.hpp"
#include "support/spool.hpp"
#include "support/temp_dir.hpp"
#include "spoolstore/store.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <barrier>
#include <fstream>
#include <map>
#include <thread>
#include <utility>
#include <vector>

#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <utime.h>

using namespace sdps::spoolstore;
using namespace sdps::testing;

namespace {

std::string read_all(message_file& m, std::optional<std::uint64_t> lines = std::nullopt, std::size_t piece = 5) {
  m.rewind(lines);
  std::string out;
  std::vector<char> buffer(piece);
  while (const std::size_t n = m.read(std::span<char>(buffer))) out.append(buffer.data(), n);
  return out;
}

std::filesystem::path copy_fixture(const temp_dir& dir) {
  const auto root = dir.path() / "punt";
  std::filesystem::create_directories(root);
  std::filesystem::copy(std::filesystem::path(SDPS_SPOOL_FIXTURES) / "handmade", root,
                        std::filesystem::copy_options::recursive);
  return root;
}

}  // namespace

TEST_CASE("a scan reads names only, in arrival order, and skips junk with a log line") {
  temp_dir dir;
  const auto root = copy_fixture(dir);
  capture_log log;
  const auto all = scan(root, "sample", "", &log);
  REQUIRE(all.size() == 3);
  CHECK(all[0].name.uidl == "01732650000123456.00000000000000aa");
  CHECK(all[0].name.size == 219);
  CHECK(all[1].name.uidl == "01732650000123457.00000000000000bb");
  CHECK(all[2].name.uidl == "01732650000123458.00000000000000cc");
  CHECK(all[2].file == "01732650000123458.00000000000000cc,s=62,u=jim");
  CHECK(log.contains("README"));
  CHECK(log.contains("01732650000123459.zz"));
  CHECK(log.contains("not a regular file"));
  CHECK(log.contains("junk-folder"));
  CHECK_FALSE(log.contains(".hidden"));

  // Without a logger too.
  CHECK(scan(root, "sample", "", nullptr).size() == 3);
}

TEST_CASE("a user scan keeps only that user's mail, ignoring case") {
  temp_dir dir;
  const auto root = copy_fixture(dir);
  CHECK(scan(root, "sample", "fred", nullptr).size() == 2);
  CHECK(scan(root, "sample", "FRED", nullptr).size() == 2);
  CHECK(scan(root, "sample", "jim", nullptr).size() == 1);
  CHECK(scan(root, "sample", "sheila", nullptr).empty());
  CHECK(scan(root, "sample", "fre", nullptr).empty());
}

TEST_CASE("a host with no folder has an empty spool; an unreadable one is an error") {
  temp_dir dir;
  CHECK(scan(dir.path() / "nowhere", "sample", "", nullptr).empty());
  CHECK(scan(dir.path(), "sample", "", nullptr).empty());
  write_text(dir.path() / "sample", "a file where the host folder should be");
  CHECK_THROWS_AS(scan(dir.path(), "sample", "", nullptr), io_error);
  CHECK_THROWS_AS(scan(dir.path(), "../etc", "", nullptr), std::invalid_argument);
  if (::geteuid() != 0) {  // root reads anything
    std::filesystem::create_directories(dir.path() / "locked");
    ::chmod((dir.path() / "locked").c_str(), 0);
    CHECK_THROWS_AS(scan(dir.path(), "locked", "", nullptr), io_error);
  }
}

TEST_CASE("a second file claiming a UIDL is ignored") {
  temp_dir dir;
  const auto fixture = std::filesystem::path(SDPS_SPOOL_FIXTURES) / "handmade" / "sample";
  const auto folder = dir.path() / "sample";
  std::filesystem::create_directories(folder);
  std::filesystem::copy_file(fixture / "01732650000123456.00000000000000aa,s=219,u=fred",
                             folder / "01732650000123456.00000000000000aa,s=219,u=fred");
  std::filesystem::copy_file(fixture / "01732650000123456.00000000000000aa,s=219,u=fred",
                             folder / "01732650000123456.00000000000000aa,s=219,u=jim");
  capture_log log;
  const auto all = scan(dir.path(), "sample", "", &log);
  REQUIRE(all.size() == 1);
  CHECK(all[0].name.user == "fred");  // the first by name wins, every time
  CHECK(log.contains("duplicate UIDL"));
}

TEST_CASE("a big folder lists in UIDL order, sizes and files from the names") {
  temp_dir dir;
  const auto folder = dir.path() / "sample";
  std::filesystem::create_directories(folder / "tmp");
  // Created in an order unlike the UIDLs' (and read back in the file
  // system's hash order): the listing must sort them.
  std::vector<std::string> names;
  for (int i = 0; i < 3000; ++i) {
    // Groups of three arrive in the same microsecond (ordered by the
    // UIDL's random part); the times spread over 2^40 microseconds.
    const std::int64_t arrival = 1700000000000000 + std::int64_t{(i * 7919) % 3000 / 3} * 1000000007;
    const std::string user = i % 3 == 0 ? "jim" : "fred";
    names.push_back(format_name({new_uidl(arrival), static_cast<std::uint64_t>(100 + i), user, arrival}));
    std::ofstream(folder / names.back()) << "x";
  }
  std::ofstream(folder / "README") << "not a message";
  std::sort(names.begin(), names.end());
  capture_log log;
  const listing all = list_messages(dir.path(), "sample", "", &log);
  REQUIRE(all.size() == names.size());
  for (std::size_t i = 0; i < all.size(); ++i) {
    REQUIRE(all.file(i) == names[i]);
    const auto parsed = parse_name(names[i]);
    CHECK(all.uidl(i) == parsed->uidl);
    CHECK(all.messages[i].size == parsed->size);
    CHECK(all.messages[i].arrival == parsed->arrival);
  }
  CHECK(log.contains("README"));
  const auto old = scan(dir.path(), "sample", "", nullptr);  // the same, as entries
  REQUIRE(old.size() == names.size());
  for (std::size_t i = 0; i < old.size(); ++i) CHECK(old[i].file == names[i]);

  const listing jim = list_messages(dir.path(), "sample", "JIM", nullptr);
  CHECK(jim.size() == 1000);
  CHECK(std::is_sorted(jim.messages.begin(), jim.messages.end(), [&](const auto& a, const auto& b) {
    return std::pair(a.arrival, a.random) < std::pair(b.arrival, b.random);
  }));
  CHECK(list_messages(dir.path(), "nosuch", "", nullptr).size() == 0);
}

TEST_CASE("many junk entries are counted, not each logged") {
  temp_dir dir;
  std::filesystem::create_directories(dir.path() / "sample");
  for (int i = 0; i < 50; ++i) write_text(dir.path() / "sample" / ("junk" + std::to_string(i)), "x");
  capture_log log;
  CHECK(scan(dir.path(), "sample", "", &log).empty());
  CHECK(log.size() == 11);
  CHECK(log.contains("ignored 40 more"));
}

TEST_CASE("a hand-written message file streams as RETR and TOP want it") {
  temp_dir dir;
  const auto root = copy_fixture(dir);
  const auto file = root / "sample" / "01732650000123456.00000000000000aa,s=219,u=fred";
  auto m = message_file::open(file);
  REQUIRE(m);
  CHECK(m->envelope().from == "alice@example.com");
  CHECK(m->envelope().to == "Fred@sample.demon.co.uk");
  CHECK(m->retr_size() == 219);
  CHECK_FALSE(m->read_flag());
  const std::string whole = read_all(*m);
  CHECK(whole.size() == 219);
  CHECK(whole.rfind("Return-Path: <alice@example.com>\r\nFrom: Alice <alice@example.com>\r\n", 0) == 0);
  CHECK(whole.find("SDPS-Spool") == std::string::npos);
  CHECK(whole.substr(whole.size() - 30) == ".A line starting with a dot.\r\n");
  CHECK(read_all(*m, 0) ==
        "Return-Path: <alice@example.com>\r\nFrom: Alice <alice@example.com>\r\nTo: fred@sample.demon.co.uk\r\n"
        "Subject: written by hand\r\n\r\n");
  CHECK(read_all(*m, 1, 1) == read_all(*m, 0) + "This message file was written by hand, following docs/spool.md.\r\n");
  CHECK(read_all(*m, 99999999, 64 * 1024) == whole);

  auto bounce = message_file::open(root / "sample" / "01732650000123458.00000000000000cc,s=62,u=jim");
  REQUIRE(bounce);
  CHECK(bounce->envelope().from.empty());
  CHECK(read_all(*bounce).rfind("Return-Path: <>\r\nSubject: a bounce", 0) == 0);
  CHECK(bounce->retr_size() == 62);

  // A file with a message name but no envelope header is reported, not served.
  try {
    message_file::open(root / "sample" / "01732650000123457.00000000000000bb,s=10,u=fred");
    FAIL("a damaged file opened");
  } catch (const io_error& e) {
    CHECK(e.code() == EBADMSG);
  }
  CHECK(message_file::open(root / "sample" / "01732650000123499.00000000000000aa,s=1,u=fred") == nullptr);
}

TEST_CASE("a message file streams the same in any piece size, past the first read of the file") {
  temp_dir dir;
  const auto folder = dir.path() / "sample";
  std::filesystem::create_directories(folder);
  // About 200 KiB: longer than what opening the file reads, with a header
  // of about 70 KiB so that TOP's cut also falls past it.
  std::string header, body;
  for (int i = 0; i < 1000; ++i) header += "X-Filler-" + std::to_string(10000 + i) + ": " + std::string(60, 'h') + "\r\n";
  std::vector<std::string> lines;
  for (int i = 0; i < 400; ++i) {
    // (Built by appending: `"." + std::string(...)` trips GCC 12's
    // -Wrestrict false positive in Release builds, docs/toolchain.md.)
    std::string line(i % 3 ? 0 : 1, '.');
    line.append(static_cast<std::size_t>(i * 37 % 700), 'b');
    lines.push_back(std::move(line));
  }
  for (const auto& l : lines) body += l + "\r\n";
  const std::string stored = header + "\r\n" + body;
  const auto file = folder / "01732650000123456.00000000000000aa,s=1,u=fred";
  write_text(file, "SDPS-Spool: 1\r\nEnvelope-From: <a@example.com>\r\nEnvelope-To: <fred@sample.demon.co.uk>\r\n\r\n" +
                       stored);
  auto m = message_file::open(file);
  REQUIRE(m);
  const std::string expected = "Return-Path: <a@example.com>\r\n" + stored;
  CHECK(m->retr_size() == expected.size());
  for (std::size_t piece : {1ul, 7ul, 4096ul, 65536ul, 65537ul, 300000ul}) {
    CAPTURE(piece);
    CHECK(read_all(*m, std::nullopt, piece) == expected);
    for (std::uint64_t k : {0ul, 1ul, 2ul, 150ul, 399ul, 400ul, 401ul}) {
      CAPTURE(k);
      std::string top = "Return-Path: <a@example.com>\r\n" + header + "\r\n";
      for (std::size_t i = 0; i < std::min<std::uint64_t>(k, lines.size()); ++i) top += lines[i] + "\r\n";
      CHECK(read_all(*m, k, piece) == top);
    }
  }
  // A buffer is filled whole while the message lasts (one read per piece).
  m->rewind(std::nullopt);
  std::vector<char> big(100000);
  CHECK(m->read(std::span<char>(big)) == big.size());
}

TEST_CASE("the read flag is set through the open file, which may have left the spool") {
  temp_dir dir;
  const auto root = copy_fixture(dir);
  const auto file = root / "sample" / "01732650000123456.00000000000000aa,s=219,u=fred";
  ::chmod(file.c_str(), 0600);
  auto m = message_file::open(file);
  REQUIRE(m);
  CHECK_FALSE(m->read_flag());
  m->set_read_flag();
  CHECK(m->read_flag());
  CHECK(read_flag(file) == std::optional<bool>(true));
  std::filesystem::remove(file);
  auto gone = message_file::open(root / "sample" / "01732650000123458.00000000000000cc,s=62,u=jim");
  REQUIRE(gone);
  std::filesystem::remove(root / "sample" / "01732650000123458.00000000000000cc,s=62,u=jim");
  gone->set_read_flag();  // no error: the file is simply gone
  CHECK(gone->read_flag());
}

TEST_CASE("an open message file keeps streaming after SMTP removes it") {
  temp_dir dir;
  const auto root = copy_fixture(dir);
  const auto file = root / "sample" / "01732650000123456.00000000000000aa,s=219,u=fred";
  auto m = message_file::open(file);
  REQUIRE(m);
  std::filesystem::remove(file);
  CHECK(read_all(*m).size() == 219);
}

TEST_CASE("the read flag is a mode bit, set without renaming") {
  temp_dir dir;
  const auto root = copy_fixture(dir);
  const auto file = root / "sample" / "01732650000123456.00000000000000aa,s=219,u=fred";
  ::chmod(file.c_str(), 0600);
  struct stat before;
  REQUIRE(::stat(file.c_str(), &before) == 0);
  CHECK(read_flag(file) == std::optional<bool>(false));
  CHECK(set_read_flag(file));
  CHECK(read_flag(file) == std::optional<bool>(true));
  CHECK(set_read_flag(file));  // twice is fine
  struct stat after;
  REQUIRE(::stat(file.c_str(), &after) == 0);
  CHECK(after.st_ino == before.st_ino);
  CHECK((after.st_mode & 07777) == 0700);
  CHECK(message_file::open(file)->read_flag());
  const auto gone = root / "sample" / "01732650000123499.00000000000000aa,s=1,u=fred";
  CHECK_FALSE(read_flag(gone));
  CHECK_FALSE(set_read_flag(gone));
}

TEST_CASE("removal unlinks, and a message already gone counts as removed") {
  temp_dir dir;
  const auto root = copy_fixture(dir);
  const auto file = root / "sample" / "01732650000123456.00000000000000aa,s=219,u=fred";
  std::string error;
  CHECK(remove_message(file, error));
  CHECK_FALSE(std::filesystem::exists(file));
  CHECK(remove_message(file, error));
  CHECK(error.empty());
  CHECK(scan(root, "sample", "", nullptr).size() == 2);
  CHECK_FALSE(remove_message(root / "sample" / "junk-folder", error));  // a non-empty folder: unlink fails
  CHECK(error.find("junk-folder") != std::string::npos);
}

TEST_CASE("locks: a host login excludes everyone, user logins exclude the same user") {
  temp_dir dir;
  const auto root = dir.path();
  using outcome = lock_attempt::outcome;
  std::filesystem::create_directories(root / "sample");
  std::filesystem::create_directories(root / "other");

  SECTION("host then host, user") {
    auto host = lock_maildrop(root, "sample", "");
    REQUIRE(host.result == outcome::acquired);
    CHECK(lock_maildrop(root, "sample", "").result == outcome::in_use);
    CHECK(lock_maildrop(root, "sample", "fred").result == outcome::in_use);
    CHECK(lock_maildrop(root, "other", "").result == outcome::acquired);  // other hosts are independent
    host.lock.reset();
    CHECK(lock_maildrop(root, "sample", "fred").result == outcome::acquired);
  }
  SECTION("user then same user, other user, host") {
    auto fred = lock_maildrop(root, "sample", "fred");
    REQUIRE(fred.result == outcome::acquired);
    CHECK(lock_maildrop(root, "sample", "fred").result == outcome::in_use);
    CHECK(lock_maildrop(root, "sample", "FRED").result == outcome::in_use);
    auto jim = lock_maildrop(root, "sample", "jim");
    CHECK(jim.result == outcome::acquired);
    CHECK(lock_maildrop(root, "sample", "").result == outcome::in_use);
    fred.lock.reset();
    CHECK(lock_maildrop(root, "sample", "").result == outcome::in_use);  // jim still in
    jim.lock.reset();
    CHECK(lock_maildrop(root, "sample", "").result == outcome::acquired);
  }
  SECTION("a refused user lock leaves no shared host lock behind") {
    auto fred = lock_maildrop(root, "sample", "fred");
    REQUIRE(fred.result == outcome::acquired);
    for (int i = 0; i < 3; ++i) CHECK(lock_maildrop(root, "sample", "fred").result == outcome::in_use);
    fred.lock.reset();
    CHECK(lock_maildrop(root, "sample", "").result == outcome::acquired);
  }
  SECTION("odd user names lock as any other, and make no file") {
    auto odd = lock_maildrop(root, "sample", "a/../b");
    REQUIRE(odd.result == outcome::acquired);
    CHECK(lock_maildrop(root, "sample", "A/../B").result == outcome::in_use);
    CHECK(files_in(root / "sample" / "locks") == std::vector<std::string>{"host"});
  }
  SECTION("a punt that cannot hold locks fails, it is not 'in use'") {
    write_text(root / "file", "not a folder");
    const auto bad = lock_maildrop(root / "file", "sample", "");
    CHECK(bad.result == outcome::failed);
    CHECK_FALSE(bad.error.empty());
    // A missing punt folder is not created unless asked for, whether its
    // parent exists (an unmounted punt leaves its mount point) or not.
    const auto missing = lock_maildrop(root / "no" / "such" / "punt", "sample", "");
    CHECK(missing.result == outcome::failed);
    CHECK(missing.error.find("punt folder is missing") != std::string::npos);
    CHECK_FALSE(std::filesystem::exists(root / "no"));
    CHECK(lock_maildrop(root / "fresh", "sample", "").result == outcome::failed);
    CHECK_FALSE(std::filesystem::exists(root / "fresh"));
    // When asked for (a punt not seen since start-up), with its parents.
    // The punt folder, then the host's own folder for its locks.
    CHECK(lock_maildrop(root / "new" / "punt", "sample", "fred", true).result == outcome::acquired);
    CHECK(std::filesystem::is_directory(root / "new" / "punt"));
    CHECK(std::filesystem::is_directory(root / "new" / "punt" / "sample"));
  }
  SECTION("user logins make no file of their own; locks/host stays") {
    auto fred = lock_maildrop(root, "sample", "fred");
    REQUIRE(fred.result == outcome::acquired);
    for (int i = 0; i < 50; ++i) CHECK(lock_maildrop(root, "sample", "junk" + std::to_string(i)).result == outcome::acquired);
    CHECK(files_in(root / "sample" / "locks") == std::vector<std::string>{"host"});
    fred.lock.reset();
    CHECK(files_in(root / "sample" / "locks") == std::vector<std::string>{"host"});
    // Files an older version left behind are no lock any more.
    write_text(root / "sample" / "locks" / "user=jim", "");
    CHECK(lock_maildrop(root, "sample", "jim").result == outcome::acquired);
  }
  SECTION("a user login holds its byte of locks/host, as docs/spool.md says") {
    // Another owner of a lock on fred's byte: a classic record lock of
    // this process through its own open file (which conflicts with the
    // sessions' open file description locks, unlike classic locks of one
    // process among themselves).
    // jim keeps the sessions' open file of locks/host open throughout:
    // this process closing any file of it would drop its classic lock.
    auto jim = lock_maildrop(root, "sample", "jim");
    REQUIRE(jim.result == outcome::acquired);
    const int fd = ::open((root / "sample" / "locks" / "host").c_str(), O_RDWR);
    REQUIRE(fd >= 0);
    struct flock byte {};
    byte.l_type = F_WRLCK;
    byte.l_whence = SEEK_SET;
    byte.l_start = 3376544970729442226;  // user_lock_byte("fred")
    byte.l_len = 1;
    REQUIRE(::fcntl(fd, F_SETLK, &byte) == 0);
    CHECK(lock_maildrop(root, "sample", "fred").result == outcome::in_use);
    CHECK(lock_maildrop(root, "sample", "Fred").result == outcome::in_use);
    CHECK(lock_maildrop(root, "sample", "sheila").result == outcome::acquired);
    // ... and the other way round: jim's byte is taken.
    byte.l_start = 1754622957020777912;  // user_lock_byte("jim")
    CHECK(::fcntl(fd, F_SETLK, &byte) != 0);
    ::close(fd);
    CHECK(lock_maildrop(root, "sample", "fred").result == outcome::acquired);
  }
  SECTION("user logins of one host share one open file for locks/host; HOST/ is not held") {
    auto open_files = [] {
      std::size_t n = 0;
      for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator("/proc/self/fd")) ++n;
      return n;
    };
    const std::size_t before = open_files();
    std::vector<lock_attempt> users;
    for (int i = 0; i < 10; ++i) {
      users.push_back(lock_maildrop(root, "sample", "user" + std::to_string(i)));
      REQUIRE(users.back().result == outcome::acquired);
    }
    CHECK(open_files() - before == 1);  // one shared by all, none each
    CHECK(lock_maildrop(root, "sample", "").result == outcome::in_use);
    // The shared flock lasts until the last user lets go.
    while (users.size() > 1) users.pop_back();
    CHECK(lock_maildrop(root, "sample", "").result == outcome::in_use);
    users.clear();
    CHECK(open_files() == before);
    auto host = lock_maildrop(root, "sample", "");
    REQUIRE(host.result == outcome::acquired);
    CHECK(open_files() - before == 1);
    // HOST/ itself is free once the locks are held ...
    const int folder = ::open((root / "sample").c_str(), O_RDONLY | O_DIRECTORY);
    REQUIRE(folder >= 0);
    CHECK(::flock(folder, LOCK_EX | LOCK_NB) == 0);
    // ... and a login meeting it held (a login holding the whole host in
    // the no-space fallback) is refused, a user login as a host login.
    host.lock.reset();
    CHECK(lock_maildrop(root, "sample", "").result == outcome::in_use);
    CHECK(lock_maildrop(root, "sample", "fred").result == outcome::in_use);
    ::close(folder);
    CHECK(lock_maildrop(root, "sample", "fred").result == outcome::acquired);
  }
  SECTION("lock files live under locks/ and are no messages") {
    auto held = lock_maildrop(root, "sample", "fred");
    REQUIRE(held.result == outcome::acquired);
    capture_log log;
    CHECK(scan(root, "sample", "", &log).empty());
    CHECK(log.size() == 0);
  }
}

namespace {

/// Another process taking maildrop locks: a forked child that runs
/// lock_maildrop on command, so that the kernel decides, not this
/// process's record of its own locks. Fork it before this process holds
/// a lock in the same spool: the child starts with a copy of this
/// process's open files, and a lock file it inherited would be shared
/// with this process rather than a file of its own.
class other_process {
 public:
  explicit other_process(const std::filesystem::path& root) {
    int down[2], up[2];
    REQUIRE(::pipe(down) == 0);
    REQUIRE(::pipe(up) == 0);
    pid_ = ::fork();
    REQUIRE(pid_ >= 0);
    if (pid_ == 0) {
      ::close(down[1]);
      ::close(up[0]);
      serve(root, down[0], up[1]);
      ::_exit(0);  // no destructors: they belong to the parent's objects
    }
    ::close(down[0]);
    ::close(up[1]);
    to_ = down[1];
    from_ = up[0];
  }
  ~other_process() {
    ::close(to_);  // the child ends at the end of its input, letting go of all
    int status = 0;
    ::waitpid(pid_, &status, 0);
    ::close(from_);
  }
  other_process(const other_process&) = delete;
  other_process& operator=(const other_process&) = delete;

  /// lock_maildrop(root, host, user) there, kept until unlock():
  /// 'a' acquired, 'u' in use, 'f' failed.
  char lock(const std::string& host, const std::string& user) { return ask("L " + host + " " + user + "\n"); }
  void unlock(const std::string& host, const std::string& user) { ask("U " + host + " " + user + "\n"); }

 private:
  char ask(const std::string& command) {
    REQUIRE(::write(to_, command.data(), command.size()) == static_cast<ssize_t>(command.size()));
    char answer = 0;
    REQUIRE(::read(from_, &answer, 1) == 1);
    return answer;
  }

  static void serve(const std::filesystem::path& root, int in, int out) {
    std::map<std::string, std::unique_ptr<maildrop_lock>> held;
    std::string line;
    char c;
    while (::read(in, &c, 1) == 1) {
      if (c != '\n') {
        line += c;
        continue;
      }
      const auto space = line.find(' ', 2);
      const std::string host = line.substr(2, space - 2), user = line.substr(space + 1);
      char answer = 'f';
      if (line[0] == 'L') {
        auto attempt = lock_maildrop(root, host, user);
        answer = attempt.result == lock_attempt::outcome::acquired ? 'a'
                 : attempt.result == lock_attempt::outcome::in_use ? 'u'
                                                                   : 'f';
        if (attempt.lock) held[host + " " + user] = std::move(attempt.lock);
      } else {
        held.erase(host + " " + user);
        answer = 'a';
      }
      line.clear();
      if (::write(out, &answer, 1) != 1) return;
    }
  }

  pid_t pid_ = -1;
  int to_ = -1;
  int from_ = -1;
};

}  // namespace

TEST_CASE("locks hold between processes: a user's byte, the host's flock") {
  temp_dir dir;
  const auto root = dir.path();
  using outcome = lock_attempt::outcome;
  std::filesystem::create_directories(root / "sample");
  other_process other(root);

  REQUIRE(other.lock("sample", "fred") == 'a');
  CHECK(lock_maildrop(root, "sample", "fred").result == outcome::in_use);  // nothing recorded here
  CHECK(lock_maildrop(root, "sample", "FRED").result == outcome::in_use);
  auto jim = lock_maildrop(root, "sample", "jim");
  REQUIRE(jim.result == outcome::acquired);
  CHECK(lock_maildrop(root, "sample", "").result == outcome::in_use);
  // That refused host login opened and closed a file of its own on
  // locks/host: jim's byte is held all the same (it belongs to the open
  // file description, not to the process as a classic record lock would).
  CHECK(other.lock("sample", "jim") == 'u');
  CHECK(other.lock("sample", "") == 'u');
  other.unlock("sample", "fred");
  auto fred = lock_maildrop(root, "sample", "fred");
  CHECK(fred.result == outcome::acquired);
  CHECK(other.lock("sample", "fred") == 'u');
  CHECK(other.lock("sample", "sheila") == 'a');
  fred.lock.reset();
  jim.lock.reset();
  CHECK(other.lock("sample", "fred") == 'a');
  CHECK(lock_maildrop(root, "sample", "").result == outcome::in_use);  // its users hold the host shared
  other.unlock("sample", "fred");
  other.unlock("sample", "sheila");
  // A host login there excludes every login here, and the other way round.
  REQUIRE(other.lock("sample", "") == 'a');
  CHECK(lock_maildrop(root, "sample", "fred").result == outcome::in_use);
  other.unlock("sample", "");
  auto host = lock_maildrop(root, "sample", "");
  REQUIRE(host.result == outcome::acquired);
  CHECK(other.lock("sample", "fred") == 'u');
  CHECK(other.lock("sample", "") == 'u');
}

TEST_CASE("a user logging in on several threads at once gets one lock, other users theirs") {
  temp_dir dir;
  const auto root = dir.path();
  std::filesystem::create_directories(root / "sample");
  for (int round = 0; round < 20; ++round) {
    // Threads 0-3 log in as fred, 4-7 as users of their own; all hold
    // their locks until every attempt is made, then let go at once.
    constexpr int threads = 8, freds = 4;
    std::vector<lock_attempt::outcome> results(threads);
    std::barrier all_tried(threads);
    std::vector<std::thread> running;
    for (int i = 0; i < threads; ++i)
      running.emplace_back([&, i] {
        auto attempt = lock_maildrop(root, "sample", i < freds ? "fred" : "user" + std::to_string(i));
        results[static_cast<std::size_t>(i)] = attempt.result;
        all_tried.arrive_and_wait();
      });
    for (auto& t : running) t.join();
    const auto won = std::count(results.begin(), results.begin() + freds, lock_attempt::outcome::acquired);
    const auto refused = std::count(results.begin(), results.begin() + freds, lock_attempt::outcome::in_use);
    REQUIRE(won == 1);
    REQUIRE(refused == freds - 1);
    REQUIRE(std::count(results.begin() + freds, results.end(), lock_attempt::outcome::acquired) == threads - freds);
  }
  // Every lock went with its thread.
  CHECK(lock_maildrop(root, "sample", "").result == lock_attempt::outcome::acquired);
}

TEST_CASE("the user lock byte is fixed by the spool format") {
  // BLAKE2b-128 of the encoded name, first 8 octets little-endian, top two
  // bits cleared: Python's
  // int.from_bytes(hashlib.blake2b(b"fred", digest_size=16).digest()[:8], "little") & (2**62 - 1)
  CHECK(user_lock_byte("fred") == 3376544970729442226u);
  CHECK(user_lock_byte("jim") == 1754622957020777912u);
  CHECK(user_lock_byte("a%2F..%2Fb") == 769807474120123673u);
  CHECK(user_lock_byte("") == 53462486982715082u);
}

TEST_CASE("stale temporary files are swept, fresh ones kept") {
  temp_dir dir;
  const auto folder = dir.path() / "sample";
  std::filesystem::create_directories(folder / "tmp");
  write_text(folder / "tmp" / "old", "left by a crash");
  write_text(folder / "tmp" / "new", "being written");
  struct utimbuf old_times {
    0, std::time(nullptr) - 40 * 3600
  };
  ::utime((folder / "tmp" / "old").c_str(), &old_times);
  CHECK(sweep_tmp(folder, 36 * 3600) == 1);
  CHECK(files_in(folder / "tmp") == std::vector<std::string>{"new"});
  CHECK(sweep_tmp(dir.path() / "none", 1) == 0);
}

TEST_CASE("a symlinked host folder is refused, named, by scan, lock and folder creation (issue 19.3)") {
  temp_dir dir;
  const auto root = copy_fixture(dir);
  // evil -> sample: writing or reading through it would reach sample's mail.
  std::filesystem::create_directory_symlink(root / "sample", root / "evil");
  try {
    scan(root, "evil", "", nullptr);
    FAIL("a scan followed the link");
  } catch (const io_error& e) {
    CHECK(e.code() == ELOOP);
    CHECK(std::string(e.what()).find((root / "evil").string() + " is a symbolic link to " +
                                     (root / "sample").string()) == 0);
  }
  const auto attempt = lock_maildrop(root, "evil", "");
  CHECK(attempt.result == lock_attempt::outcome::failed);
  CHECK(attempt.error.find("evil is a symbolic link") != std::string::npos);
  CHECK(attempt.error.find("Not a directory") == std::string::npos);
  CHECK_THROWS_AS(ensure_host_dir(root, "evil", tmp_folder, false), io_error);

  // A real host folder whose tmp/ or locks/ is a link.
  std::filesystem::create_directories(root / "other");
  std::filesystem::create_directory_symlink(root / "sample", root / "other" / "tmp");
  try {
    ensure_host_dir(root, "other", tmp_folder, false);
    FAIL("tmp/ was followed");
  } catch (const io_error& e) {
    CHECK(std::string(e.what()).find("other/tmp is a symbolic link") != std::string::npos);
  }
  std::filesystem::create_directory_symlink(root / "sample", root / "other" / "locks");
  const auto through_locks = lock_maildrop(root, "other", "");
  CHECK(through_locks.result == lock_attempt::outcome::failed);
  CHECK(through_locks.error.find("other/locks is a symbolic link") != std::string::npos);
}

TEST_CASE("a departure is recorded before the message goes, read back by UIDL, swept when old") {
  temp_dir dir;
  const auto root = copy_fixture(dir);
  const auto folder = root / "sample";
  const auto file = folder / "01732650000123456.00000000000000aa,s=219,u=fred";
  const std::string uidl = "01732650000123456.00000000000000aa";
  CHECK_FALSE(recorded_departure(folder, uidl));
  std::string error, note;
  CHECK(depart(file, departure::returned, error, note));
  CHECK(error.empty());
  CHECK(note.empty());
  CHECK_FALSE(std::filesystem::exists(file));
  CHECK(recorded_departure(folder, uidl) == departure::returned);
  CHECK(read_text(folder / gone_folder / uidl).rfind("returned ", 0) == 0);
  CHECK(files_in(folder / gone_folder) == std::vector<std::string>{uidl});  // no temporary left

  const auto second = folder / "01732650000123457.00000000000000bb,s=10,u=fred";
  REQUIRE(std::filesystem::exists(second));
  CHECK(record_departure(second, departure::delivered, error));
  CHECK(recorded_departure(folder, "01732650000123457.00000000000000bb") == departure::delivered);
  CHECK_FALSE(recorded_departure(folder, "../../etc/passwd"));
  CHECK_FALSE(recorded_departure(folder, ".hidden"));

  // gone/ is not a message, and is not logged as junk.
  capture_log log;
  scan(root, "sample", "", &log);
  CHECK_FALSE(log.contains("gone"));

  struct utimbuf old_times {
    0, std::time(nullptr) - departure_record_seconds - 60
  };
  ::utime((folder / gone_folder / uidl).c_str(), &old_times);
  CHECK(sweep_departures(folder) == 1);
  CHECK_FALSE(recorded_departure(folder, uidl));
  CHECK(recorded_departure(folder, "01732650000123457.00000000000000bb") == departure::delivered);

  // A record that cannot be written does not keep the message.
  std::filesystem::remove_all(folder / gone_folder);
  write_text(folder / gone_folder, "a file where gone/ should be");
  const auto third = folder / "01732650000123458.00000000000000cc,s=62,u=jim";
  CHECK(depart(third, departure::expired, error, note));
  CHECK_FALSE(std::filesystem::exists(third));
  CHECK(note.find("only say it was removed") != std::string::npos);
}
