// RFC 1939 dot-stuffing both ways: the core's dot_stuffer (what sdpsd
// sends) and backend_proto's unstuffer (what a front end reads from a
// back end).
//
// Properties, for any body cut into any pieces:
// - stuffing never produces the terminator line before its end;
// - un-stuffing the stuffed body, read into output buffers of any size,
//   gives back the body (plus the CRLF the stuffer adds after a last line
//   without one), stops exactly after the terminator and leaves the next
//   reply's octets unread;
// - the unstuffer, on arbitrary octets, never writes more than its buffer,
//   never consumes more than it is given, and always makes progress.

#include "fuzz.hpp"

#include "backend_proto/protocol.hpp"
#include "dot_stuffer.hpp"

#include <string>
#include <vector>

namespace {

using sdps::backend_proto::unstuffer;

std::string stuff(std::string_view body) {
  sdps::core::dot_stuffer stuffer;
  std::string out;
  sdps::fuzz::chunker pieces(body);
  while (!pieces.done()) stuffer.append(pieces.next(), out);
  stuffer.finish(out);
  return out;
}

/// Un-stuffs `wire` in pieces into buffers of varying size; returns the
/// body and how many octets were consumed before done() (or all of them).
std::string unstuff(std::string_view wire, std::size_t& consumed, bool& done) {
  unstuffer reader;
  std::string body;
  sdps::fuzz::chunker pieces(wire, 300);
  sdps::fuzz::chunker sizes(wire.substr(wire.size() / 2), 300);
  consumed = 0;
  while (!pieces.done() && !reader.done()) {
    std::string_view piece = pieces.next();
    while (!piece.empty() && !reader.done()) {
      std::vector<char> buffer(sizes.size());  // exact size: ASan sees any overrun
      const auto step = reader.feed(piece, buffer);
      SDPS_FUZZ_CHECK(step.consumed <= piece.size());
      SDPS_FUZZ_CHECK(step.produced <= buffer.size());
      SDPS_FUZZ_CHECK(step.consumed > 0 || step.produced > 0 || reader.done());  // never stuck
      body.append(buffer.data(), step.produced);
      piece.remove_prefix(step.consumed);
      consumed += step.consumed;
    }
  }
  done = reader.done();
  return body;
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

  std::string expected(body);
  if (!expected.empty() && expected.back() != '\n') expected += "\r\n";
  const std::string next_reply = "+OK next\r\n";
  std::size_t consumed = 0;
  bool done = false;
  const std::string back = unstuff(stuffed + next_reply, consumed, done);
  SDPS_FUZZ_CHECK(done);
  SDPS_FUZZ_CHECK(consumed == stuffed.size());
  SDPS_FUZZ_CHECK(back == expected);

  // Arbitrary octets as a back end's reply: only the safety properties.
  unstuff(body, consumed, done);
  SDPS_FUZZ_CHECK(consumed <= body.size());
  return 0;
}
