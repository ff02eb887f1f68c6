// RFC 1939 dot-stuffing: the core's dot_stuffer (what sdpsd sends) and
// backend_proto's body_scanner (how a front end finds the end of a back
// end's body it passes on as it is).
//
// Properties, for any body cut into any pieces:
// - stuffing never produces the terminator line before its end;
// - scanning the stuffed body, in reads of any size and deciding at most
//   any number of octets a call, passes on exactly the stuffed body without
//   its terminator, stops exactly after the terminator and leaves the next
//   reply's octets unread;
// - the scanner, on arbitrary octets, never decides more than it was
//   shown or allowed, and always makes progress or asks for more.

#include "fuzz.hpp"

#include "backend_proto/protocol.hpp"
#include "dot_stuffer.hpp"

#include <string>

namespace {

using sdps::backend_proto::body_scanner;

std::string stuff(std::string_view body) {
  sdps::core::dot_stuffer stuffer;
  std::string out;
  sdps::fuzz::chunker pieces(body);
  while (!pieces.done()) stuffer.append(pieces.next(), out);
  stuffer.finish(out);
  return out;
}

/// Scans `wire` as a front end reads it: in pieces, each call deciding at
/// most a varying number of octets, the undecided ones shown again with
/// the next piece. Returns the body as passed on and how many octets were
/// used, terminator included (or all of them, without a terminator).
std::string relay(std::string_view wire, std::size_t& consumed, bool& done) {
  body_scanner scanner;
  std::string body;
  std::string pending;
  sdps::fuzz::chunker pieces(wire, 300);
  sdps::fuzz::chunker limits(wire.substr(wire.size() / 2), 300);
  consumed = 0;
  done = false;
  for (;;) {
    const bool more = !pieces.done();
    if (more) pending.append(pieces.next());
    const std::size_t limit = limits.size();
    const auto r = scanner.scan(pending, limit);
    SDPS_FUZZ_CHECK(r.body <= limit);
    SDPS_FUZZ_CHECK(r.body <= pending.size());
    body.append(pending, 0, r.body);
    consumed += r.body;
    if (r.end) {
      SDPS_FUZZ_CHECK(pending.substr(r.body, 3) == ".\r\n");
      consumed += body_scanner::terminator_size;
      done = true;
      return body;
    }
    pending.erase(0, r.body);
    // Never stuck: something decided, or the octets left may start the
    // terminator and need more input.
    SDPS_FUZZ_CHECK(r.body > 0 || pending.size() < 3);
    if (!more && r.body == 0) {
      consumed += pending.size();
      return body;
    }
  }
}

bool terminator_at(std::string_view text, std::size_t at) {
  return text.substr(at, 3) == ".\r\n" || text.substr(at, 2) == ".\n";
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view body = sdps::fuzz::text(data, size);

  const std::string stuffed = stuff(body);
  SDPS_FUZZ_CHECK(stuffed.ends_with(".\r\n"));
  SDPS_FUZZ_CHECK(stuffed.size() <= 2 * body.size() + 5);
  // Every line start but the terminator's: never a lone ".".
  const std::size_t end = stuffed.size() - 3;
  SDPS_FUZZ_CHECK(end == 0 || stuffed[end - 1] == '\n');
  for (std::size_t at = 0; at < end; at = stuffed.find('\n', at) + 1) SDPS_FUZZ_CHECK(!terminator_at(stuffed, at));

  const std::string next_reply = "+OK next\r\n";
  std::size_t consumed = 0;
  bool done = false;
  const std::string passed = relay(stuffed + next_reply, consumed, done);
  SDPS_FUZZ_CHECK(done);
  SDPS_FUZZ_CHECK(consumed == stuffed.size());
  SDPS_FUZZ_CHECK(passed == stuffed.substr(0, end));

  // Arbitrary octets as a back end's reply: only the safety properties.
  relay(body, consumed, done);
  SDPS_FUZZ_CHECK(consumed <= body.size());
  return 0;
}
