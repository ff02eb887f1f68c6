// The spool's on-disk format (lib/spoolstore/format): message file names,
// the envelope header block, user-name encoding and CRLF normalisation.
// The same input is tried as each of them.
//
// Properties:
// - a parsed file name has a valid UIDL, a canonical user encoding, and
//   format_name/parse_name give it back unchanged;
// - encode_user always decodes back to the lower-cased local part, and
//   only canonical encodings decode;
// - a parsed envelope's addresses are storable, its body starts right
//   after a CRLF CRLF within the 4 KiB block, and format_envelope/
//   parse_envelope give back the same sender, recipient and arrival;
// - CRLF normalisation in pieces equals normalisation in one go, leaves no
//   bare LF, and only ever adds a CR before a bare LF (and a final CRLF).

#include "fuzz.hpp"

#include "spoolstore/format.hpp"

#include <string>

namespace sp = sdps::spoolstore;

namespace {

void check_name(std::string_view text) {
  const auto name = sp::parse_name(text);
  if (!name) return;
  SDPS_FUZZ_CHECK(sp::valid_uidl(name->uidl));
  SDPS_FUZZ_CHECK(name->arrival == sp::uidl_arrival(name->uidl));
  const auto user = sp::decode_user(name->user);
  SDPS_FUZZ_CHECK(user && sp::encode_user(*user) == name->user);
  const auto again = sp::parse_name(sp::format_name(*name));
  SDPS_FUZZ_CHECK(again && again->uidl == name->uidl && again->size == name->size && again->user == name->user &&
                  again->arrival == name->arrival);
}

void check_user(std::string_view text) {
  const std::string encoded = sp::encode_user(text);
  std::string lowered(text);
  for (char& c : lowered)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  const auto decoded = sp::decode_user(encoded);
  SDPS_FUZZ_CHECK(decoded && *decoded == lowered);
  // A decodable text is canonical: it is what encoding its decoding gives.
  if (const auto back = sp::decode_user(text)) SDPS_FUZZ_CHECK(sp::encode_user(*back) == text);
}

void check_envelope(std::string_view text) {
  const auto parsed = sp::parse_envelope(text);
  if (!parsed) return;
  const auto& e = parsed->envelope;
  SDPS_FUZZ_CHECK(parsed->body_offset >= 4 && parsed->body_offset <= sp::max_envelope_block &&
                  parsed->body_offset <= text.size());
  SDPS_FUZZ_CHECK(text.substr(parsed->body_offset - 4, 4) == "\r\n\r\n");
  SDPS_FUZZ_CHECK(sp::valid_address(e.from) && sp::valid_address(e.to) && !e.to.empty());
  // Dates between 1970 and 9999 print as they parse (format_envelope
  // writes four-digit years and clamps earlier times to the epoch).
  if (e.arrival < 0 || e.arrival >= 253402300800000000) return;
  const std::string block = sp::format_envelope(e);
  const auto again = sp::parse_envelope(block);
  SDPS_FUZZ_CHECK(again && again->body_offset == block.size());
  SDPS_FUZZ_CHECK(again->envelope.from == e.from && again->envelope.to == e.to &&
                  again->envelope.arrival == e.arrival);
}

std::string normalise(std::string_view text, bool in_pieces) {
  sp::crlf_normaliser normaliser;
  std::string out;
  if (in_pieces) {
    sdps::fuzz::chunker pieces(text);
    while (!pieces.done()) normaliser.feed(pieces.next(), out);
  } else {
    normaliser.feed(text, out);
  }
  normaliser.finish(out);
  return out;
}

void check_crlf(std::string_view text) {
  const std::string out = normalise(text, true);
  SDPS_FUZZ_CHECK(out == normalise(text, false));
  SDPS_FUZZ_CHECK(text.empty() == out.empty());
  SDPS_FUZZ_CHECK(out.empty() || out.ends_with("\r\n"));
  // Walk both: every input octet is kept in order; the only additions are
  // a CR before a bare LF and the final line end.
  std::size_t i = 0, o = 0;
  while (i < text.size()) {
    SDPS_FUZZ_CHECK(o < out.size());
    if (text[i] == out[o]) {
      if (text[i] == '\n') SDPS_FUZZ_CHECK(o > 0 && out[o - 1] == '\r');
      ++i, ++o;
      continue;
    }
    SDPS_FUZZ_CHECK(text[i] == '\n' && out[o] == '\r');
    ++o;
  }
  const std::string_view tail = std::string_view(out).substr(o);
  SDPS_FUZZ_CHECK(tail.empty() || tail == "\n" || tail == "\r\n");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text = sdps::fuzz::text(data, size);
  check_name(text);
  check_user(text);
  check_envelope(text);
  check_crlf(text);
  return 0;
}
