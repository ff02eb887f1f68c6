// The host database file (lib/hostdb parse, format, normalise_host, and
// the dialup prefixes in it, lib/base address_prefix).
//
// Properties: every line is either a host or a reported problem (or blank
// or a comment), problems come in line order; format() of what was read
// parses back with no problem to the same hosts; a parsed dialup prefix is
// canonical (its text parses back to it) and contains its own network;
// normalise_host is idempotent.

#include "fuzz.hpp"

#include "hostdb/hostdb.hpp"

#include <algorithm>
#include <string>

namespace hdb = sdps::hostdb;

namespace {

using sdps::base::address_prefix;

bool same_host(const hdb::host_record& a, const hdb::host_record& b) {
  return a.name == b.name && a.dialup_hash == b.dialup_hash && a.pop3_hash == b.pop3_hash &&
         a.dialup == b.dialup;
}

void check_prefix(std::string_view text) {
  const auto p = address_prefix::parse(text);
  if (!p) return;
  SDPS_FUZZ_CHECK(p->length() <= (p->is_v4() ? 32u : 128u));
  SDPS_FUZZ_CHECK(p->contains(p->network()));
  const auto again = address_prefix::parse(p->to_string());
  SDPS_FUZZ_CHECK(again && *again == *p);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text = sdps::fuzz::text(data, size);

  const hdb::load_result read = hdb::parse(text);
  const std::size_t lines = static_cast<std::size_t>(std::count(text.begin(), text.end(), '\n')) + 1;
  SDPS_FUZZ_CHECK(read.hosts.size() + read.problems.size() <= lines);
  for (std::size_t i = 0; i < read.problems.size(); ++i) {
    SDPS_FUZZ_CHECK(read.problems[i].line >= 1 && read.problems[i].line <= lines);
    SDPS_FUZZ_CHECK(i == 0 || read.problems[i - 1].line < read.problems[i].line);
    SDPS_FUZZ_CHECK(!read.problems[i].message.empty());
  }
  for (const auto& [name, host] : read.hosts.hosts()) {
    SDPS_FUZZ_CHECK(name == host.name && hdb::normalise_host(name, "") == name);
    for (const auto& p : host.dialup) check_prefix(p.to_string());
  }

  const hdb::load_result again = hdb::parse(hdb::format(read.hosts));
  SDPS_FUZZ_CHECK(again.problems.empty());
  SDPS_FUZZ_CHECK(std::equal(read.hosts.hosts().begin(), read.hosts.hosts().end(), again.hosts.hosts().begin(),
                             again.hosts.hosts().end(),
                             [](const auto& a, const auto& b) { return same_host(a.second, b.second); }));

  // Each line's first word as a host name, each comma-separated item of
  // the input as a prefix.
  for (std::string_view rest = text; !rest.empty();) {
    const auto end = rest.find_first_of(",\n ");
    const std::string_view item = rest.substr(0, end);
    check_prefix(item);
    const std::string name = hdb::normalise_host(item, "demon.co.uk");
    if (!name.empty()) SDPS_FUZZ_CHECK(hdb::normalise_host(name, "demon.co.uk") == name);
    if (end == std::string_view::npos) break;
    rest.remove_prefix(end + 1);
  }
  return 0;
}
