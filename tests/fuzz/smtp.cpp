// The SMTP/LMTP wire format (lib/smtp/protocol): replies, command lines,
// MAIL/RCPT paths and DATA framing both ways.
//
// Properties:
// - a reply read line by line has a code from 200 to 599, the same on
//   every line, and texts without CR or LF; its summary is one printable
//   line; EHLO keywords are upper case without spaces;
// - a command's verb is upper case without spaces, and verb, space and
//   argument give back the line;
// - a parsed path has no control octets outside quotes, and the path
//   printed back as "FROM:<address> KEY=VALUE..." parses to the same;
// - DATA round trip: dot-stuffing a message and un-stuffing it as the LMTP
//   server reads it (lines of at most N octets, any N >= 3) gives the
//   message back (plus the line end the stuffer adds) and stops at the
//   terminator.

#include "fuzz.hpp"

#include "smtp/protocol.hpp"

#include <string>

namespace smtp = sdps::smtp;

namespace {

/// The input's lines as connection::read_line(max) returns them.
template <typename F>
void each_line(std::string_view text, std::size_t max, F&& f) {
  while (!text.empty()) {
    const auto lf = text.substr(0, max).find('\n');
    const std::size_t take = lf != std::string_view::npos ? lf + 1 : std::min(max, text.size());
    if (!f(text.substr(0, take))) return;
    text.remove_prefix(take);
  }
}

void check_reply(std::string_view text) {
  smtp::reply_reader reader;
  each_line(text, 512, [&](std::string_view line) {
    const auto status = reader.feed(line);
    if (status == smtp::reply_reader::status::bad) return false;
    if (status == smtp::reply_reader::status::more) return true;
    const smtp::reply r = reader.take();
    SDPS_FUZZ_CHECK(r.code >= 200 && r.code <= 599 && !r.lines.empty());
    for (const auto& l : r.lines) SDPS_FUZZ_CHECK(l.find('\n') == std::string::npos);
    for (const char c : r.summary()) SDPS_FUZZ_CHECK(static_cast<unsigned char>(c) >= 0x20 && c != 0x7f);
    for (const auto& ext : smtp::extensions(r)) {
      SDPS_FUZZ_CHECK(ext.first.find(' ') == std::string::npos);
      for (char c : ext.first) SDPS_FUZZ_CHECK(!(c >= 'a' && c <= 'z'));
    }
    return true;
  });
}

void check_command(std::string_view line) {
  const smtp::command c = smtp::parse_command(line);
  SDPS_FUZZ_CHECK(c.verb.find(' ') == std::string::npos);
  for (char ch : c.verb) SDPS_FUZZ_CHECK(!(ch >= 'a' && ch <= 'z'));
  for (std::string_view keyword : {"FROM", "TO"}) {
    const auto path = smtp::parse_path(c.argument, keyword);
    if (!path) continue;
    std::string again = std::string(keyword) + ":<" + path->address + ">";
    for (const auto& [key, value] : path->params) {
      SDPS_FUZZ_CHECK(key.find(' ') == std::string::npos && key.find('=') == std::string::npos);
      again += " " + key + (value.empty() ? "" : "=" + value);
    }
    const auto reparsed = smtp::parse_path(again, keyword);
    SDPS_FUZZ_CHECK(reparsed && reparsed->address == path->address && reparsed->params == path->params);
    if (const auto parts = smtp::split_address(path->address))
      SDPS_FUZZ_CHECK(parts->first.size() + 1 + parts->second.size() == path->address.size());
  }
}

void check_data(std::string_view message) {
  smtp::dot_stuffer stuffer;
  std::string wire;
  sdps::fuzz::chunker pieces(message);
  while (!pieces.done()) stuffer.feed(pieces.next(), wire);
  stuffer.finish(wire);
  SDPS_FUZZ_CHECK(wire.ends_with(".\r\n"));

  std::string expected(message);
  if (!expected.empty() && expected.back() != '\n') expected += expected.back() == '\r' ? "\n" : "\r\n";
  const std::string after = "QUIT\r\n";
  const std::string input = wire + after;
  for (const std::size_t max : {std::size_t{3}, std::size_t{7}, std::size_t{1000}}) {
    smtp::dot_unstuffer unstuffer;
    std::string out;
    std::size_t used = 0;
    bool ended = false;
    each_line(input, max, [&](std::string_view piece) {
      used += piece.size();
      ended = unstuffer.feed(piece, out);
      return !ended;
    });
    SDPS_FUZZ_CHECK(ended && used == wire.size());
    SDPS_FUZZ_CHECK(out == expected);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text = sdps::fuzz::text(data, size);
  check_reply(text);
  each_line(text, 512, [](std::string_view line) {
    check_command(line);
    return true;
  });
  check_data(text);
  return 0;
}
