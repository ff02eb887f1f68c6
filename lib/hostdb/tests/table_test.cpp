// The compact table of a hosts file: the same hosts and problems as
// parse(), lookups, differences between versions, the memory it takes.

#include "hostdb/synthetic.hpp"
#include "hostdb/table.hpp"
#include "support/temp_dir.hpp"

#include <catch2/catch.hpp>
#include <sodium.h>

#include <fstream>
#include <sstream>

using namespace sdps::hostdb;

namespace {

bool same(const host_record& a, const host_record& b) {
  if (a.name != b.name || a.dialup_hash != b.dialup_hash || a.pop3_hash != b.pop3_hash ||
      a.dialup.size() != b.dialup.size())
    return false;
  return a.dialup == b.dialup;
}

std::string hash(const char* password) {
  REQUIRE(sodium_init() >= 0);
  return hash_password(password, cost::min);
}

std::string synthetic_file(std::size_t hosts, std::uint64_t seed = 1) {
  std::ostringstream out;
  synthetic_options o;
  o.hosts = hosts;
  o.seed = seed;
  write_synthetic_hosts(out, o);
  return out.str();
}

// Both readers of the same text agree on every host and every problem.
void check_like_parse(const std::string& text) {
  const load_result reference = parse(text);
  const host_table table = host_table::parse(text);
  REQUIRE(table.size() == reference.hosts.size());
  REQUIRE(table.problems().size() == reference.problems.size());
  for (std::size_t i = 0; i < table.problems().size(); ++i) {
    CHECK(table.problems()[i].line == reference.problems[i].line);
    CHECK(table.problems()[i].message == reference.problems[i].message);
  }
  std::size_t seen = 0;
  auto expected = reference.hosts.hosts().begin();
  table.for_each([&](const host_record& r) {
    REQUIRE(expected != reference.hosts.hosts().end());
    CHECK(same(r, expected->second));
    ++expected;
    ++seen;
  });
  CHECK(seen == reference.hosts.size());
  for (const auto& entry : reference.hosts.hosts()) {
    const auto found = table.find(entry.first);
    REQUIRE(found);
    CHECK(same(*found, entry.second));
  }
  CHECK(format(table) == format(reference.hosts));
}

}  // namespace

TEST_CASE("table: reads what parse() reads, malformed lines and duplicates included", "[hostdb][table]") {
  const std::string pop3 = hash("pop3"), dial = hash("dial");
  std::string text = "# comment\n\n";
  text += "zulu 192.0.2.0/24,2001:db8::/64 " + dial + " " + pop3 + "\n";
  text += "alpha - - " + pop3 + "\r\n";
  text += "broken-line only-two\n";
  text += "MiXed 198.51.100.7 " + dial + " -\n";
  text += "alpha - - -\n";  // a duplicate: the first line counts
  text += "bad_name - - -\n";
  text += "beta 10.0.0.0/8 not-a-hash -\n";
  text += "gamma 10.0.0.1/99 - -\n";
  text += "delta ::ffff:192.0.2.9 " + dial + " " + dial + "\n";
  text += "epsilon - $argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2g -\n";  // a head of its own
  text += "   \t\n# the end, no LF after the last line\nomega - - " + pop3;
  check_like_parse(text);
  const host_table t = host_table::parse(text);
  CHECK(t.size() == 6);
  CHECK(t.contains("alpha"));
  CHECK_FALSE(t.contains("alph"));
  CHECK_FALSE(t.contains("alphaa"));
  CHECK_FALSE(t.find("nosuch"));
  CHECK(t.find("alpha")->dialup_hash.empty());
  CHECK(t.find("mixed")->dialup[0].to_string() == "198.51.100.7");
  CHECK(t.find("delta")->dialup[0].to_string() == "192.0.2.9");
}

TEST_CASE("table: an empty text, and a text of comments", "[hostdb][table]") {
  check_like_parse("");
  check_like_parse("# nothing\n\n   \n");
  CHECK(host_table::parse("").size() == 0);
  CHECK_FALSE(host_table::parse("").find("a"));
}

TEST_CASE("table: a big file read in pieces gives what load() gives", "[hostdb][table]") {
  sdps::testing::temp_dir dir(sdps::testing::fast_base());
  const auto file = dir / "hosts";
  // About 3 MiB: lines cross the reader's 1 MiB pieces.
  sdps::testing::write_text(file, synthetic_file(15000));
  const host_table t = host_table::read(file);
  const load_result reference = load(file);
  CHECK(t.size() == 15000);
  CHECK(t.problems().empty());
  CHECK(t.stamp() == reference.stamp);
  CHECK(format(t) == format(reference.hosts));
  CHECK(format(t) == sdps::testing::read_text(file));
  // Smaller than the file: the shared Argon2id parameters are kept once.
  CHECK(t.memory() < std::filesystem::file_size(file));
  CHECK(host_table::read(dir / "missing").size() == 0);
  CHECK_FALSE(host_table::read(dir / "missing").stamp().exists);
}

TEST_CASE("table: a hosts file readable by others is refused like load() refuses it", "[hostdb][table]") {
  sdps::testing::temp_dir dir;
  const auto file = dir / "hosts";
  sdps::testing::write_text(file, "sample - - -\n");
  std::filesystem::permissions(file, std::filesystem::perms::others_read, std::filesystem::perm_options::add);
  CHECK_THROWS_AS(host_table::read(file), insecure_file);
}

TEST_CASE("table: differences name every host added, changed or removed", "[hostdb][table]") {
  const std::string a = hash("a"), b = hash("b");
  const host_table before = host_table::parse("same - - " + a + "\nchanged - - " + a + "\nmoved 192.0.2.1 " + a +
                                              " -\nremoved - - -\nlast - - -\n");
  const host_table after = host_table::parse("added - - -\nsame - - " + a + "\nchanged - - " + b +
                                             "\nmoved 192.0.2.2 " + a + " -\nlast - - -\nzz-new - - -\n");
  std::vector<std::string> seen;
  host_table::differences(before, after, [&](std::string_view name, host_table::difference d) {
    const char* kind = d == host_table::difference::added ? "+" : d == host_table::difference::removed ? "-" : "~";
    seen.push_back(std::string(kind).append(name));
  });
  CHECK(seen == std::vector<std::string>{"+added", "~changed", "~moved", "-removed", "+zz-new"});
  // Tables that share no head (another cost) still compare by content.
  const host_table again = host_table::parse("same - - " + a + "\n");
  const host_table literal = host_table::parse("first - - $argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2g\nsame - - " + a + "\n");
  seen.clear();
  host_table::differences(again, literal, [&](std::string_view name, host_table::difference) { seen.emplace_back(name); });
  CHECK(seen == std::vector<std::string>{"first"});
}

TEST_CASE("table: the costs of the stored hashes", "[hostdb][table]") {
  const std::string text = synthetic_file(10) + "real - " + hash("x") + " -\n";
  const auto costs = host_table::parse(text).costs();
  REQUIRE(costs.size() == 2);
  CHECK(costs.at(parameters(cost::interactive)) == 20);
  CHECK(costs.at(parameters(cost::min)) == 1);
}

TEST_CASE("synthetic hosts: well-formed lines, real hashes where asked", "[hostdb][table]") {
  REQUIRE(sodium_init() >= 0);
  std::ostringstream out;
  synthetic_options o;
  o.hosts = 50;
  o.real = 2;
  write_synthetic_hosts(out, o);
  const load_result r = parse(out.str());
  CHECK(r.problems.empty());
  CHECK(r.hosts.size() == 50);
  const auto* first = r.hosts.find(synthetic_name(0));
  REQUIRE(first);
  CHECK(verify_password(first->pop3_hash, synthetic_password(first->name)));
  const auto* later = r.hosts.find(synthetic_name(49));
  REQUIRE(later);
  CHECK(is_hash(later->pop3_hash));
  // What crypto_pwhash_str writes at the interactive cost: 31 + 22 + 1 + 43.
  CHECK(later->pop3_hash.size() == 97);
}
