// The front end <-> back end protocol's lines (lib/backend_proto): XLIST
// lines, XUPDATE replies, XAUTH challenges, nonces and PASS outcomes. The
// un-stuffer is in dot_stuffing.cpp; `backend:` addresses in base.cpp.
//
// Properties: what parses formats back to the same value (XLIST,
// XUPDATE); parsed fields respect the documented limits (UIDL 1-70
// printable octets, message number >= 1, arrival within int64, nonces
// 64 lower-case hex digits, punts without spaces); a
// positive PASS reply always means "acquired".

#include "fuzz.hpp"

#include "backend_proto/protocol.hpp"

#include <string>

namespace bp = sdps::backend_proto;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text = sdps::fuzz::text(data, size);

  if (const auto entry = bp::parse_listing(text)) {
    SDPS_FUZZ_CHECK(entry->number >= 1 && entry->arrival >= 0);
    SDPS_FUZZ_CHECK(!entry->uidl.empty() && entry->uidl.size() <= 70);
    for (char c : entry->uidl) SDPS_FUZZ_CHECK(c > 0x20 && c < 0x7f);
    const auto again = bp::parse_listing(bp::format_listing(*entry));
    SDPS_FUZZ_CHECK(again && again->number == entry->number && again->uidl == entry->uidl &&
                    again->size == entry->size && again->arrival == entry->arrival);
  }

  if (const auto update = bp::parse_update(text)) {
    const auto again = bp::parse_update(bp::format_update(*update));
    SDPS_FUZZ_CHECK(again && again->removed == update->removed && again->failed == update->failed);
  }

  if (const auto challenge = bp::parse_challenge(text)) {
    SDPS_FUZZ_CHECK(bp::valid_nonce(challenge->nonce));
    SDPS_FUZZ_CHECK(!challenge->punt.empty() && challenge->punt.find(' ') == std::string::npos);
    SDPS_FUZZ_CHECK(text.starts_with(challenge->nonce + " " + challenge->punt));
  }

  if (bp::valid_nonce(text)) SDPS_FUZZ_CHECK(text.size() == bp::nonce_hex_size);

  SDPS_FUZZ_CHECK(bp::pass_outcome(true, text) == sdps::lock_status::acquired);
  const auto refused = bp::pass_outcome(false, text);
  SDPS_FUZZ_CHECK(refused == sdps::lock_status::in_use || refused == sdps::lock_status::unavailable);
  return 0;
}
