// Delivery into the spool: round trip, normalisation, copies, fallback,
// crash safety, UIDL uniqueness.

#include "support/fakes.hpp"
#include "support/spool.hpp"
#include "support/temp_dir.hpp"
#include "spoolstore/store.hpp"

#include <catch2/catch.hpp>

#include <sys/stat.h>

#include <set>

using namespace sdps::spoolstore;
using namespace sdps::testing;
using namespace std::string_literals;

namespace {

std::string retr(const std::filesystem::path& file, std::optional<std::uint64_t> lines = std::nullopt) {
  auto m = message_file::open(file);
  REQUIRE(m);
  m->rewind(lines);
  std::string out;
  std::array<char, 4096> buffer;
  while (const std::size_t n = m->read(std::span<char>(buffer))) out.append(buffer.data(), n);
  return out;
}

const std::string sample_message = "From: Alice <alice@example.com>\nSubject: hello\n\nline one\nline two\n";

}  // namespace

TEST_CASE("a delivered message comes back from a scan and RETR exactly") {
  temp_dir dir;
  const std::vector<punt_target> punts{{"finchley", dir.path() / "finchley"}};
  const auto stored = deliver_text(punts, "alice@example.com", {rcpt("fred")}, sample_message);
  REQUIRE(stored.size() == 1);
  CHECK(stored[0].punt == "finchley");
  CHECK(stored[0].host == "sample");
  CHECK(valid_uidl(stored[0].uidl));
  CHECK(stored[0].file.parent_path() == dir.path() / "finchley" / "sample");
  CHECK(stored[0].file.filename().string().rfind(stored[0].uidl + ",", 0) == 0);

  const auto found = scan(dir.path() / "finchley", "sample", "", nullptr);
  REQUIRE(found.size() == 1);
  CHECK(found[0].name.uidl == stored[0].uidl);
  CHECK(found[0].name.user == "fred");

  const std::string expected = "Return-Path: <alice@example.com>\r\n"
                               "From: Alice <alice@example.com>\r\nSubject: hello\r\n\r\nline one\r\nline two\r\n";
  const std::string sent = retr(stored[0].file);
  CHECK(sent == expected);
  CHECK(found[0].name.size == sent.size());
  CHECK(stored[0].size == sent.size());
  CHECK(retr(stored[0].file, 1) == "Return-Path: <alice@example.com>\r\n"
                                   "From: Alice <alice@example.com>\r\nSubject: hello\r\n\r\nline one\r\n");

  const auto m = message_file::open(stored[0].file);
  CHECK(m->envelope().to == "fred@sample.demon.co.uk");
  CHECK(m->envelope().from == "alice@example.com");
  CHECK(std::llabs(m->envelope().arrival - uidl_arrival(stored[0].uidl)) == 0);
  CHECK(std::llabs(m->envelope().arrival - now_us()) < 60'000'000);
  CHECK_FALSE(m->read_flag());

  // Nothing is left in tmp/.
  CHECK(files_in(dir.path() / "finchley" / "sample" / "tmp").empty());
}

TEST_CASE("stored messages keep 8-bit octets and NULs and end in CRLF") {
  temp_dir dir;
  const std::vector<punt_target> punts{{"finchley", dir.path()}};
  const std::string binary = "Subject: bin\n\n\xff\xfe\0\x01 text\r\nlone\rCR\nno final newline"s;
  const auto stored = deliver_text(punts, "", {rcpt("fred")}, binary, nullptr, 3);
  const std::string expected =
      "Return-Path: <>\r\nSubject: bin\r\n\r\n\xff\xfe\0\x01 text\r\nlone\rCR\r\nno final newline\r\n"s;
  CHECK(retr(stored[0].file) == expected);
  CHECK(stored[0].size == expected.size());
}

TEST_CASE("an empty message is stored as an empty message") {
  temp_dir dir;
  const auto stored = deliver_text({{"p", dir.path()}}, "a@b", {rcpt("fred")}, "");
  CHECK(retr(stored[0].file) == "Return-Path: <a@b>\r\n");
  CHECK(stored[0].size == 20);
}

TEST_CASE("a big message streams through in pieces") {
  temp_dir dir;
  std::string big = "Subject: big\n\n";
  for (int i = 0; i < 40000; ++i) big += "line " + std::to_string(i) + " of a long message, bare LF\n";
  const auto stored = deliver_text({{"p", dir.path()}}, "a@b", {rcpt("fred")}, big, nullptr, 65536);
  const std::string sent = retr(stored[0].file);
  CHECK(sent.size() == stored[0].size);
  CHECK(sent.size() == 20 + big.size() + 40002);  // Return-Path + one CR per line
  CHECK(retr(stored[0].file, 2) == "Return-Path: <a@b>\r\nSubject: big\r\n\r\nline 0 of a long message, bare LF\r\n"
                                   "line 1 of a long message, bare LF\r\n");
}

TEST_CASE("several recipients get one copy each, with their own UIDL and envelope") {
  temp_dir dir;
  const std::vector<punt_target> punts{{"finchley", dir.path()}};
  const auto stored =
      deliver_text(punts, "alice@example.com", {rcpt("fred"), rcpt("Jim"), rcpt("fred", "other")}, sample_message);
  REQUIRE(stored.size() == 3);
  std::set<std::string> uidls;
  for (const auto& s : stored) uidls.insert(s.uidl);
  CHECK(uidls.size() == 3);
  CHECK(stored[2].host == "other");
  CHECK(retr(stored[0].file) == retr(stored[1].file));
  CHECK(retr(stored[1].file) == retr(stored[2].file));
  CHECK(message_file::open(stored[1].file)->envelope().to == "Jim@sample.demon.co.uk");
  CHECK(scan(dir.path(), "sample", "", nullptr).size() == 2);
  CHECK(scan(dir.path(), "sample", "jim", nullptr).size() == 1);
  CHECK(scan(dir.path(), "other", "fred", nullptr).size() == 1);
}

TEST_CASE("10,000 deliveries of the same message get 10,000 UIDLs in arrival order") {
  temp_dir dir(fast_base());
  const std::vector<punt_target> punts{{"finchley", dir.path()}};
  std::vector<std::string> order;
  for (int i = 0; i < 10000; ++i)
    order.push_back(deliver_text(punts, "a@b", {rcpt("fred")}, "Subject: same\n\nsame\n", nullptr, 4096)[0].uidl);
  const auto found = scan(dir.path(), "sample", "", nullptr);
  REQUIRE(found.size() == 10000);
  std::set<std::string> unique;
  for (const auto& e : found) unique.insert(e.name.uidl);
  CHECK(unique.size() == 10000);
  // Lexical order is arrival order: the scan (sorted by UIDL) lists them
  // as they were delivered, except within one microsecond.
  for (std::size_t i = 1; i < found.size(); ++i) CHECK(found[i - 1].name.arrival <= found[i].name.arrival);
  CHECK(std::is_sorted(order.begin(), order.end(), [](const std::string& a, const std::string& b) {
    return uidl_arrival(a) < uidl_arrival(b);
  }));
}

TEST_CASE("a punt that cannot be written is skipped for the next one") {
  temp_dir dir;
  write_text(dir.path() / "broken", "a file where the punt folder should be");
  const std::vector<punt_target> punts{{"broken", dir.path() / "broken"}, {"good", dir.path() / "good"}};
  capture_log log;
  const auto stored = deliver_text(punts, "a@b", {rcpt("fred"), rcpt("jim")}, sample_message, &log);
  REQUIRE(stored.size() == 2);
  CHECK(stored[0].punt == "good");
  CHECK(stored[1].punt == "good");
  CHECK(log.contains("punt broken"));

  // Nothing works: a temporary failure, and nothing visible anywhere.
  try {
    deliver_text({{"broken", dir.path() / "broken"}}, "a@b", {rcpt("fred")}, sample_message);
    FAIL("delivered into a file");
  } catch (const delivery_error& e) {
    CHECK_FALSE(e.partial());
    CHECK(std::string(e.what()).find("broken") != std::string::npos);
  }
}

namespace {

/// Makes writes to temporary files under `folder` fail with ENOSPC once
/// `after` writes there have succeeded; undone on destruction.
struct disk_full {
  disk_full(std::filesystem::path folder, int after) {
    write_fault_for_tests = [folder = folder.string(), after, seen = 0](const std::filesystem::path& p) mutable {
      if (p.string().rfind(folder, 0) != 0) return 0;
      return ++seen > after ? ENOSPC : 0;
    };
  }
  ~disk_full() { write_fault_for_tests = nullptr; }
};

}  // namespace

TEST_CASE("a punt that fills up half way through is replaced, the part written carried over") {
  temp_dir dir;
  const std::vector<punt_target> punts{{"first", dir.path() / "first"}, {"second", dir.path() / "second"}};
  std::string message = "Subject: carried\n\n";
  for (int i = 0; i < 20000; ++i) message += "line " + std::to_string(i) + "\n";
  capture_log log;
  std::vector<stored_copy> stored;
  {
    disk_full full(dir.path() / "first", 5);  // header + 4 chunks, then ENOSPC
    stored = deliver_text(punts, "a@b", {rcpt("fred")}, message, &log, 20000);
  }
  REQUIRE(stored.size() == 1);
  CHECK(stored[0].punt == "second");
  CHECK(log.contains("No space left on device"));
  std::string expected = "Return-Path: <a@b>\r\n";
  crlf_normaliser n;
  n.feed(message, expected);
  n.finish(expected);
  CHECK(retr(stored[0].file) == expected);
  CHECK(stored[0].size == expected.size());
  CHECK(scan(dir.path() / "first", "sample", "", nullptr).empty());
  CHECK(files_in(dir.path() / "first" / "sample" / "tmp").empty());
  CHECK(files_in(dir.path() / "second" / "sample" / "tmp").empty());
}

TEST_CASE("a punt that fills up while the other recipients' copies are made is replaced") {
  temp_dir dir;
  const std::vector<punt_target> punts{{"first", dir.path() / "first"}, {"second", dir.path() / "second"}};
  std::vector<stored_copy> stored;
  {
    // The streamed copy needs 3 writes (header, body, final CRLF); the
    // second recipient's copy then fails.
    disk_full full(dir.path() / "first", 4);
    stored = deliver_text(punts, "a@b", {rcpt("fred"), rcpt("jim")}, "Subject: x\n\nbody", nullptr, 100);
  }
  REQUIRE(stored.size() == 2);
  CHECK(stored[0].punt == "second");
  CHECK(stored[1].punt == "second");
  CHECK(retr(stored[1].file) == "Return-Path: <a@b>\r\nSubject: x\r\n\r\nbody\r\n");
  CHECK(scan(dir.path() / "first", "sample", "", nullptr).empty());
  CHECK(files_in(dir.path() / "first" / "sample" / "tmp").empty());
}

TEST_CASE("when every punt is full nothing is stored and the failure is temporary") {
  temp_dir dir;
  const std::vector<punt_target> punts{{"first", dir.path() / "first"}, {"second", dir.path() / "second"}};
  disk_full full(dir.path(), 3);
  try {
    deliver_text(punts, "a@b", {rcpt("fred")}, std::string(100000, 'x'), nullptr, 1000);
    FAIL("delivered onto full disks");
  } catch (const delivery_error& e) {
    CHECK_FALSE(e.partial());
  }
  CHECK(scan(dir.path() / "first", "sample", "", nullptr).empty());
  CHECK(scan(dir.path() / "second", "sample", "", nullptr).empty());
  CHECK(files_in(dir.path() / "first" / "sample" / "tmp").empty());
  CHECK(files_in(dir.path() / "second" / "sample" / "tmp").empty());
}

TEST_CASE("a read error on the input stores nothing") {
  temp_dir dir;
  int calls = 0;
  input_reader input = [&](std::span<char> buffer) -> std::size_t {
    if (++calls == 3) throw std::runtime_error("connection to the MTA lost");
    std::fill(buffer.begin(), buffer.begin() + 10, 'x');
    return 10;
  };
  CHECK_THROWS_AS(deliver({{"p", dir.path()}}, "a@b", {rcpt("fred")}, input, nullptr), delivery_error);
  CHECK(scan(dir.path(), "sample", "", nullptr).empty());
  CHECK(files_in(dir.path() / "sample" / "tmp").empty());
}

TEST_CASE("a delivery killed before it finished leaves nothing visible") {
  // What a crash leaves: a temporary file. It is never a message.
  temp_dir dir;
  std::filesystem::create_directories(dir.path() / "sample" / "tmp");
  write_text(dir.path() / "sample" / "tmp" / ("123.1." + new_uidl(now_us())),
       format_envelope({"a@b", "fred@sample.demon.co.uk", now_us()}) + "Subject: half");
  capture_log log;
  CHECK(scan(dir.path(), "sample", "", &log).empty());
  CHECK(log.size() == 0);
}

TEST_CASE("bad senders and recipients are refused before anything is written") {
  temp_dir dir;
  const std::vector<punt_target> punts{{"p", dir.path()}};
  CHECK_THROWS_AS(deliver_text(punts, "a\r\nb", {rcpt("fred")}, "x"), std::invalid_argument);
  CHECK_THROWS_AS(deliver_text(punts, "<a@b>", {rcpt("fred")}, "x"), std::invalid_argument);
  CHECK_THROWS_AS(deliver_text(punts, "a@b", {}, "x"), std::invalid_argument);
  CHECK_THROWS_AS(deliver_text(punts, "a@b", {{"@sample.demon.co.uk", "", "sample"}}, "x"), std::invalid_argument);
  CHECK_THROWS_AS(deliver_text(punts, "a@b", {rcpt(std::string(65, 'a'))}, "x"), std::invalid_argument);
  CHECK_THROWS_AS(deliver_text(punts, "a@b", {{"fred@x", "fred", "../x"}}, "x"), std::invalid_argument);
  CHECK_THROWS_AS(deliver_text({}, "a@b", {rcpt("fred")}, "x"), delivery_error);
  CHECK(std::filesystem::is_empty(dir.path()));
}

TEST_CASE("odd local parts are stored with a safe file name and still match") {
  temp_dir dir;
  const auto stored =
      deliver_text({{"p", dir.path()}}, "a@b", {{"\"x/y,z\"@sample.demon.co.uk", "\"x/y,z\"", "sample"}}, "x\n");
  CHECK(stored[0].file.filename().string().find('/') == std::string::npos);
  CHECK(stored[0].file.parent_path() == dir.path() / "sample");
  CHECK(scan(dir.path(), "sample", "\"X/y,z\"", nullptr).size() == 1);
}
