// lib/base's parsers: endpoints (every caller's rules), address prefixes
// and durations.
//
// Properties: an endpoint prints back (to_string) to text that parses to
// the same endpoint; its port is within the rules' range; where names are
// not allowed its host is a literal address; what a listener's rules
// accept, a name-allowing rule set accepts too, as the same endpoint
// (literal addresses are not read differently when names are allowed). A
// prefix is canonical: its text parses back to it, its length is within
// its family's width, it contains its own network, and no IPv4-mapped
// prefix of 96 bits or more stays IPv6. A duration is digits and one
// unit, the same when printed back in milliseconds; 0 only when allowed.

#include "fuzz.hpp"

#include "base/address_prefix.hpp"
#include "base/duration.hpp"
#include "base/endpoint.hpp"

#include <stdexcept>
#include <string>

namespace base = sdps::base;

namespace {

std::optional<base::endpoint> endpoint_of(std::string_view text, const base::endpoint_rules& rules) {
  try {
    return base::parse_endpoint(text, rules);
  } catch (const std::invalid_argument& e) {
    SDPS_FUZZ_CHECK(std::string(e.what()).rfind("'", 0) == 0);
    return std::nullopt;
  }
}

void check_endpoint(std::string_view text, const base::endpoint_rules& rules) {
  const auto e = endpoint_of(text, rules);
  if (!e) return;
  SDPS_FUZZ_CHECK(!e->host.empty());
  SDPS_FUZZ_CHECK(e->port != 0 || rules.any_port);
  if (rules.host == base::endpoint_host::address) SDPS_FUZZ_CHECK(e->address().has_value());
  const auto again = endpoint_of(e->to_string(), rules);
  SDPS_FUZZ_CHECK(again && *again == *e);
}

void check_prefix(std::string_view text) {
  const auto p = base::address_prefix::parse(text);
  if (!p) return;
  SDPS_FUZZ_CHECK(p->length() <= (p->is_v4() ? 32u : 128u));
  SDPS_FUZZ_CHECK(p->contains(p->network()));
  SDPS_FUZZ_CHECK(p->is_v4() || p->length() < 96 || !p->network().to_v6().is_v4_mapped());
  const auto again = base::address_prefix::parse(p->to_string());
  SDPS_FUZZ_CHECK(again && *again == *p);
}

void check_duration(std::string_view text) {
  const auto allowed = base::parse_duration(text, base::zero_duration::allowed);
  const auto refused = base::parse_duration(text, base::zero_duration::refused);
  SDPS_FUZZ_CHECK(refused == allowed || (allowed && allowed->count() == 0 && !refused));
  if (!allowed) return;
  SDPS_FUZZ_CHECK(allowed->count() >= 0);
  SDPS_FUZZ_CHECK(!text.empty() && text.front() >= '0' && text.front() <= '9');
  SDPS_FUZZ_CHECK(base::parse_duration(std::to_string(allowed->count()) + "ms", base::zero_duration::allowed) ==
                  allowed);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text = sdps::fuzz::text(data, size);
  const base::endpoint_rules listener{base::endpoint_host::address, true, true, 0};
  const base::endpoint_rules smtp_target{base::endpoint_host::address, false, false, 25};
  const base::endpoint_rules backend{base::endpoint_host::name, false, false, 0};
  check_endpoint(text, listener);
  check_endpoint(text, smtp_target);
  check_endpoint(text, backend);
  // A literal address reads the same whether names are allowed or not.
  if (const auto literal = endpoint_of(text, {base::endpoint_host::address, false, false, 0})) {
    const auto named = endpoint_of(text, backend);
    SDPS_FUZZ_CHECK(literal->host == "127.0.0.1" || (named && *named == *literal));
  }
  check_prefix(text);
  check_duration(text);
  return 0;
}
