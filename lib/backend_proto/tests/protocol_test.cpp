// The back-end protocol's pure parts: the secret file, XAUTH proofs (with
// a vector computed independently by Python's hashlib.blake2b, as
// docs/backend-protocol.md tells operators to), XLIST lines, challenges
// and the scanner that finds a relayed body's end. (`backend:` addresses: lib/base, endpoints.)

#include "backend_proto/protocol.hpp"

#include <sdps/settings.hpp>

#include <catch2/catch.hpp>

#include <sys/stat.h>

#include <fstream>
#include <mutex>
#include <random>

using namespace sdps::backend_proto;

namespace {

class capture final : public sdps::logger {
 public:
  void write(sdps::log_level, std::string_view line) override {
    std::lock_guard guard(mutex_);
    lines.emplace_back(line);
  }
  bool enabled(sdps::log_level) const override { return true; }
  std::vector<std::string> lines;

 private:
  std::mutex mutex_;
};

struct temp_file {
  std::filesystem::path path;
  explicit temp_file(const std::string& contents, mode_t mode) {
    char name[] = "/tmp/sdps-secret-XXXXXX";
    const int fd = ::mkstemp(name);
    REQUIRE(fd >= 0);
    ::close(fd);
    path = name;
    std::ofstream(path, std::ios::binary) << contents;
    REQUIRE(::chmod(path.c_str(), mode) == 0);
  }
  ~temp_file() {
    std::error_code ignored;
    std::filesystem::remove(path, ignored);
  }
};

const std::string contents = "0123456789abcdef0123456789abcdef";
const std::string server_nonce(64, 'a');
const std::string frontend_nonce(64, 'b');

std::string hex(const std::array<unsigned char, 32>& key) {
  static const char* digits = "0123456789abcdef";
  std::string out;
  for (unsigned char c : key) {
    out += digits[c >> 4];
    out += digits[c & 15];
  }
  return out;
}

/// Stuffs a body as a POP3 server sends it, terminator included.
std::string stuffed(const std::string& body) {
  std::string out;
  bool line_start = true;
  for (char c : body) {
    if (line_start && c == '.') out += '.';
    out += c;
    line_start = c == '\n';
  }
  return out + ".\r\n";
}

/// Scans `wire` as a front end reads it: in reads of `piece` octets,
/// deciding at most `room` octets a call, showing the undecided octets
/// again with the next read. Returns the body (still stuffed) and the
/// octets used, terminator included.
std::pair<std::string, std::size_t> relay(const std::string& wire, std::size_t piece, std::size_t room) {
  body_scanner scanner;
  std::string out;
  std::string pending;  // read, not yet decided
  std::size_t read = 0;
  for (;;) {
    if (pending.empty() || read < wire.size()) {
      const std::size_t n = std::min(piece, wire.size() - read);
      pending.append(wire, read, n);
      read += n;
    }
    const auto r = scanner.scan(pending, room);
    REQUIRE(r.body <= room);
    REQUIRE(r.body <= pending.size());
    out.append(pending, 0, r.body);
    if (r.end) {
      REQUIRE(pending.substr(r.body, 3) == ".\r\n");
      return {out, read - (pending.size() - r.body - 3)};
    }
    pending.erase(0, r.body);
    // Never stuck: something was decided, or more input is needed.
    REQUIRE((r.body > 0 || pending.size() < 3 || read < wire.size()));
    if (read == wire.size() && r.body == 0) return {out, SIZE_MAX};  // no terminator in it
  }
}

}  // namespace

TEST_CASE("the key is BLAKE2b-256 of the file's contents without trailing white space") {
  const auto plain = backend_secret::from_contents(contents);
  CHECK(hex(plain->key()) == "2788636be25cace0bd9e45bdde650b4fc0e979575d7f3d58c6248b18ab237609");
  CHECK(backend_secret::from_contents(contents + "\n")->key() == plain->key());
  CHECK(backend_secret::from_contents(contents + " \r\n\t\n")->key() == plain->key());
  CHECK(backend_secret::from_contents("x" + contents)->key() != plain->key());
}

TEST_CASE("a secret shorter than 16 octets or longer than 4096 is refused") {
  CHECK_THROWS_AS(backend_secret::from_contents("short\n"), sdps::config_error);
  CHECK_THROWS_AS(backend_secret::from_contents(std::string(15, 'x') + "\n\n"), sdps::config_error);
  CHECK_NOTHROW(backend_secret::from_contents(std::string(16, 'x')));
  CHECK_NOTHROW(backend_secret::from_contents(std::string(4096, 'x')));
  CHECK_THROWS_AS(backend_secret::from_contents(std::string(4097, 'x')), sdps::config_error);
}

TEST_CASE("the secret file must be private") {
  capture log;
  SECTION("mode 0600 is read") {
    temp_file file(contents + "\n", 0600);
    const auto secret = backend_secret::load(file.path, "test.yaml:3", log);
    CHECK(secret->key() == backend_secret::from_contents(contents)->key());
    CHECK(log.lines.empty());
  }
  SECTION("readable by every user: refused, naming the file and the fix") {
    temp_file file(contents, 0644);
    try {
      backend_secret::load(file.path, "test.yaml:3", log);
      FAIL("a world-readable secret was accepted");
    } catch (const sdps::config_error& e) {
      const std::string what = e.what();
      CHECK(what.find("test.yaml:3") != std::string::npos);
      CHECK(what.find(file.path.string()) != std::string::npos);
      CHECK(what.find("chmod 600") != std::string::npos);
    }
  }
  SECTION("writable by every user: refused") {
    temp_file file(contents, 0602);
    CHECK_THROWS_AS(backend_secret::load(file.path, "test.yaml:3", log), sdps::config_error);
  }
  SECTION("readable by the group: read, with a warning") {
    temp_file file(contents, 0640);
    CHECK_NOTHROW(backend_secret::load(file.path, "test.yaml:3", log));
    REQUIRE(log.lines.size() == 1);
    CHECK(log.lines[0].find("group") != std::string::npos);
  }
  SECTION("missing: refused, saying how to make one") {
    try {
      backend_secret::load("/nonexistent/sdps.secret", "test.yaml:3", log);
      FAIL("a missing secret was accepted");
    } catch (const sdps::config_error& e) {
      CHECK(std::string(e.what()).find("head -c 32 /dev/urandom") != std::string::npos);
    }
  }
  SECTION("a folder: refused") {
    CHECK_THROWS_AS(backend_secret::load("/tmp", "test.yaml:3", log), sdps::config_error);
  }
}

TEST_CASE("proofs match the documented formula and differ by role, nonce and punt") {
  const auto secret = backend_secret::from_contents(contents);
  const std::string mine = proof(*secret, role::frontend, server_nonce, frontend_nonce, "finchley");
  CHECK(mine == "3df09aefbd056d19da868ec5bfde43238647b7f4a6843954b326789bbc06d9c4");
  CHECK(proof(*secret, role::backend, server_nonce, frontend_nonce, "finchley") ==
        "1426c5447f7ada73bace6fe70536c8a0b918d7a1f95249e1445c99045956417b");

  CHECK(verify_proof(*secret, role::frontend, server_nonce, frontend_nonce, "finchley", mine));
  std::string upper = mine;
  for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  CHECK_FALSE(verify_proof(*secret, role::frontend, server_nonce, frontend_nonce, "finchley", upper));

  CHECK_FALSE(verify_proof(*secret, role::backend, server_nonce, frontend_nonce, "finchley", mine));
  CHECK_FALSE(verify_proof(*secret, role::frontend, server_nonce, frontend_nonce, "docklands", mine));
  CHECK_FALSE(verify_proof(*secret, role::frontend, frontend_nonce, server_nonce, "finchley", mine));
  const auto other = backend_secret::from_contents(contents + "x");
  CHECK_FALSE(verify_proof(*other, role::frontend, server_nonce, frontend_nonce, "finchley", mine));
  std::string flipped = mine;
  flipped[10] = flipped[10] == '0' ? '1' : '0';
  CHECK_FALSE(verify_proof(*secret, role::frontend, server_nonce, frontend_nonce, "finchley", flipped));
  CHECK_FALSE(verify_proof(*secret, role::frontend, server_nonce, frontend_nonce, "finchley", mine.substr(2)));
  CHECK_FALSE(verify_proof(*secret, role::frontend, server_nonce, frontend_nonce, "finchley", mine + "00"));
  std::string junk = mine;
  junk[0] = 'g';
  CHECK_FALSE(verify_proof(*secret, role::frontend, server_nonce, frontend_nonce, "finchley", junk));
  CHECK_FALSE(verify_proof(*secret, role::frontend, server_nonce, frontend_nonce, "finchley", ""));
}

TEST_CASE("nonces are 64 fresh lower-case hex digits") {
  const std::string a = new_nonce();
  const std::string b = new_nonce();
  CHECK(valid_nonce(a));
  CHECK(valid_nonce(b));
  CHECK(a != b);
  CHECK_FALSE(valid_nonce(a.substr(1)));
  CHECK_FALSE(valid_nonce(std::string(64, 'A')));
  CHECK_FALSE(valid_nonce(std::string(63, 'a') + "g"));
}

TEST_CASE("challenges are NONCE PUNT") {
  const auto c = parse_challenge(server_nonce + " finchley");
  REQUIRE(c);
  CHECK(c->nonce == server_nonce);
  CHECK(c->punt == "finchley");
  CHECK(parse_challenge(server_nonce + " docklands extra words")->punt == "docklands");
  CHECK_FALSE(parse_challenge(server_nonce));
  CHECK_FALSE(parse_challenge(server_nonce + " "));
  CHECK_FALSE(parse_challenge("xyz finchley"));
  CHECK_FALSE(parse_challenge("welcome to the server"));
}

TEST_CASE("XLIST lines round-trip and malformed ones are refused") {
  const listing_entry e{12, "00001764183846123456.0123456789abcdef", 4711, 1764183846123456};
  const std::string line = format_listing(e);
  CHECK(line == "12 00001764183846123456.0123456789abcdef 4711 1764183846123456");
  const auto back = parse_listing(line);
  REQUIRE(back);
  CHECK(back->number == 12);
  CHECK(back->uidl == e.uidl);
  CHECK(back->size == 4711);
  CHECK(back->arrival == 1764183846123456);

  for (const char* bad : {"", "1 u 2", "1 u 2 3 4", "0 u 2 3", "1 u -2 3", "1 u 2 -3", "x u 2 3", "1  u 2 3",
                          "1 u 2 3 ", " 1 u 2 3", "1 u 2 99999999999999999999", "1 u\x01v 2 3"})
    CHECK_FALSE(parse_listing(bad));
  CHECK_FALSE(parse_listing("1 " + std::string(71, 'u') + " 2 3"));
  CHECK(parse_listing("1 " + std::string(70, 'u') + " 2 3"));
}

TEST_CASE("the body scanner passes a stuffed body on as it is and stops at the terminator, however it is cut") {
  const std::string body =
      "Return-Path: <a@example.com>\r\n"
      "Subject: dots\r\n"
      "\r\n"
      ".\r\n"
      "..\r\n"
      ".leading dot\r\n"
      "middle . dot\r\n"
      "...three\r\n"
      ".\r\n"
      "last line\r\n";
  const std::string next = "+OK the next reply\r\n";
  const std::string wire = stuffed(body) + next;
  const std::string sent = stuffed(body).substr(0, stuffed(body).size() - 3);
  for (std::size_t piece : {1u, 2u, 3u, 4u, 5u, 7u, 64u, 4096u})
    for (std::size_t room : {1u, 2u, 3u, 5u, 4096u}) {
      INFO("piece " << piece << ", room " << room);
      const auto [out, used] = relay(wire, piece, room);
      CHECK(out == sent);
      CHECK(wire.substr(used) == next);
    }
}

TEST_CASE("the body scanner: an empty body, near misses, and random bodies") {
  {
    const auto [out, used] = relay(".\r\n+OK", 1, 8);
    CHECK(out.empty());
    CHECK(used == 3);
  }
  // A dot line that is not the terminator is body, wherever it is cut.
  for (const std::string near : {".\rx\r\n", "..\r\n", ".x\r\n", "a\n.\n", "a\r\n.\rb\r\n", "a\r\n..\r\n"})
    for (std::size_t piece : {1u, 2u, 3u, 100u}) {
      INFO(near << " in pieces of " << piece);
      const auto [out, used] = relay(near + ".\r\n+OK", piece, 4096);
      CHECK(out == near);
      CHECK(used == near.size() + 3);
    }
  {
    // No terminator yet: all but a possible start of one is decided.
    body_scanner scanner;
    const auto r = scanner.scan("line\r\n.");
    CHECK(r.body == 6);
    CHECK_FALSE(r.end);
    const auto more = scanner.scan(".\r\n");
    CHECK(more.body == 0);
    CHECK(more.end);
  }
  std::mt19937 random(42);
  const std::string alphabet = ".\r\nab.";
  for (int round = 0; round < 500; ++round) {
    std::string body;
    const int lines = static_cast<int>(random() % 8);
    for (int l = 0; l < lines; ++l) {
      const int length = static_cast<int>(random() % 6);
      for (int i = 0; i < length; ++i) {
        char c = alphabet[random() % alphabet.size()];
        if (c == '\r' || c == '\n') c = '.';
        body += c;
      }
      body += "\r\n";
    }
    const std::size_t piece = 1 + random() % 5;
    const std::size_t room = 1 + random() % 5;
    const std::string wire = stuffed(body);
    const auto [out, used] = relay(wire + "tail", piece, room);
    INFO("body " << body);
    CHECK(out == wire.substr(0, wire.size() - 3));
    CHECK(used == wire.size());
  }
}

TEST_CASE("PASS outcomes come from the status and the response code only", "[backend_proto]") {
  CHECK(pass_outcome(true, "fred+sample has 2 messages (10 octets)") == sdps::lock_status::acquired);
  CHECK(pass_outcome(false, "[IN-USE] maildrop already locked") == sdps::lock_status::in_use);
  CHECK(pass_outcome(false, "[in-use] reworded entirely") == sdps::lock_status::in_use);
  CHECK(pass_outcome(false, "[SYS/TEMP] your mail cannot be read just now") == sdps::lock_status::unavailable);
  CHECK(pass_outcome(false, "maildrop [IN-USE] in the words is not a code") == sdps::lock_status::unavailable);
  CHECK(pass_outcome(false, "") == sdps::lock_status::unavailable);
}

TEST_CASE("XUPDATE's counts round-trip, and nothing else parses", "[backend_proto]") {
  CHECK(format_update({3, 0}) == "3 0");
  CHECK(format_update({1, 2}) == "1 2");
  const auto both = parse_update("1 2");
  REQUIRE(both);
  CHECK(both->removed == 1);
  CHECK(both->failed == 2);
  const auto with_words = parse_update("7 0 removed");
  REQUIRE(with_words);
  CHECK(with_words->removed == 7);
  for (const char* bad : {"", "1", "1 ", " 1 2", "1  2", "x 2", "1 x", "1 2x", "-1 2", "12345678901234567890 0",
                          "pop3.test POP3 server signing off (2 messages removed)"}) {
    INFO("'" << bad << "'");
    CHECK_FALSE(parse_update(bad));
  }
}

TEST_CASE("capabilities and arguments are words compared without regard to case", "[backend_proto]") {
  CHECK(same_word("XRESET", reset_capability));
  CHECK(same_word("xReset", reset_capability));
  CHECK_FALSE(same_word("XRESETS", reset_capability));
  CHECK_FALSE(same_word("XRESE", reset_capability));
  CHECK(same_word("keep", keep_argument));
  CHECK_FALSE(same_word("", keep_argument));
}

TEST_CASE("for_each_line reads a multi-line body's lines in place, un-stuffed", "[backend_proto]") {
  std::vector<std::string> lines;
  const auto keep = [&lines](std::string_view line) { lines.emplace_back(line); };
  for_each_line("1 a 2 3\r\n..dots\r\n.\r\n\r\nbare LF\nlast", keep);
  CHECK(lines == std::vector<std::string>{"1 a 2 3", ".dots", "", "", "bare LF", "last"});
  lines.clear();
  for_each_line("", keep);
  CHECK(lines.empty());
}
