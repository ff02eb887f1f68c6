// USER's argument (lib/pop3 parse_user): every login form a client may type.
//
// Properties: an accepted name has a host that is a valid, normalised host
// name and a user part that is a lower-cased dot-atom of at most 64 octets
// with no '/', space or control octet (it names lock files); the
// identity's display form ("fred+sample") and the fully qualified form
// ("FRED@SAMPLE.DEMON.CO.UK") parse back to the same identity; the user
// part survives the spool's encode_user/decode_user.

#include "fuzz.hpp"

#include "hostdb/hostdb.hpp"
#include "pop3/user.hpp"
#include "spoolstore/format.hpp"

#include <string>

namespace {

constexpr std::string_view domain = "demon.co.uk";

bool same(const sdps::identity& a, const sdps::identity& b) { return a.host == b.host && a.user == b.user; }

std::string upper(std::string text) {
  for (char& c : text)
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
  return text;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view argument = sdps::fuzz::text(data, size);
  const auto who = sdps::pop3::parse_user(argument, domain);
  if (!who) return 0;

  SDPS_FUZZ_CHECK(!who->host.empty() && who->host.size() <= 63);
  SDPS_FUZZ_CHECK(sdps::hostdb::normalise_host(who->host, "") == who->host);
  SDPS_FUZZ_CHECK(sdps::spoolstore::valid_host(who->host));

  SDPS_FUZZ_CHECK(who->user.size() <= 64);
  for (char c : who->user) {
    const auto u = static_cast<unsigned char>(c);
    SDPS_FUZZ_CHECK(u > 0x20 && u != 0x7f && c != '/' && !(c >= 'A' && c <= 'Z'));
  }
  SDPS_FUZZ_CHECK(who->user.empty() || (who->user.front() != '.' && who->user.back() != '.'));

  const auto again = sdps::pop3::parse_user(who->display(), domain);
  SDPS_FUZZ_CHECK(again && same(*again, *who));
  const std::string qualified =
      upper(who->host_login() ? who->host + "." + std::string(domain)
                              : who->user + "@" + who->host + "." + std::string(domain));
  const auto from_qualified = sdps::pop3::parse_user(" " + qualified + "\t", domain);
  SDPS_FUZZ_CHECK(from_qualified && same(*from_qualified, *who));

  const auto decoded = sdps::spoolstore::decode_user(sdps::spoolstore::encode_user(who->user));
  SDPS_FUZZ_CHECK(decoded && *decoded == who->user);
  return 0;
}
