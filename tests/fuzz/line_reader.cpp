// The client's byte stream into command lines (core/line_reader), and each
// line into verb and argument (core/command_line), as the connection does.
//
// Properties: fed in pieces of any size, the reader gives exactly the
// events of a one-line-at-a-time model (lines without their terminator,
// one `overlong` per line over the limit); it always makes progress; no
// line exceeds the limit; splitting a line keeps every octet (verb, one
// space, argument) and upper-cases only the verb.

#include "fuzz.hpp"

#include "command_line.hpp"
#include "line_reader.hpp"

#include <cctype>
#include <string>
#include <vector>

namespace {

using sdps::core::line_reader;

struct event {
  line_reader::status kind;
  std::string line;
  bool operator==(const event&) const = default;
};

/// What the reader must report for `input` with `limit`, line by line.
std::vector<event> model(std::string_view input, std::size_t limit) {
  std::vector<event> out;
  const std::size_t cap = limit - 1;  // octets before the LF
  while (!input.empty()) {
    const auto lf = input.find('\n');
    std::string_view line = input.substr(0, lf);
    if (line.size() > cap) {
      out.push_back({line_reader::status::overlong, {}});
    } else if (lf != std::string_view::npos) {
      if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
      out.push_back({line_reader::status::line, std::string(line)});
    }
    if (lf == std::string_view::npos) break;
    input.remove_prefix(lf + 1);
  }
  return out;
}

std::vector<event> run(std::string_view input, std::size_t limit) {
  line_reader reader(limit);
  std::vector<event> out;
  sdps::fuzz::chunker pieces(input, 700);
  while (!pieces.done()) {
    std::string_view piece = pieces.next();
    while (!piece.empty()) {
      const std::size_t used = reader.feed(piece);
      SDPS_FUZZ_CHECK(used <= piece.size());
      piece.remove_prefix(used);
      bool any = false;
      for (;;) {
        const auto status = reader.next();
        if (status == line_reader::status::need_more) break;
        any = true;
        SDPS_FUZZ_CHECK(!reader.pending());
        out.push_back({status, status == line_reader::status::line ? reader.line() : std::string()});
      }
      SDPS_FUZZ_CHECK(used > 0 || any);  // never stuck
    }
  }
  return out;
}

void check_command(const std::string& line) {
  const sdps::command cmd = sdps::core::parse_command(line);
  const auto space = line.find(' ');
  SDPS_FUZZ_CHECK(cmd.name.find(' ') == std::string::npos);
  SDPS_FUZZ_CHECK(cmd.name.size() == std::min(space, line.size()));
  for (std::size_t i = 0; i < cmd.name.size(); ++i)
    SDPS_FUZZ_CHECK(cmd.name[i] == static_cast<char>(std::toupper(static_cast<unsigned char>(line[i]))));
  if (space == std::string::npos) {
    SDPS_FUZZ_CHECK(cmd.argument.empty());
  } else {
    SDPS_FUZZ_CHECK(cmd.argument == line.substr(space + 1));
  }
  // args(): the argument's words, none empty, none holding a space, in
  // order; size() counts them all (a word starts after a space or at the
  // start), also beyond the ones it keeps.
  std::size_t from = 0;
  const auto words = cmd.args();
  for (std::string_view word : words) {
    SDPS_FUZZ_CHECK(!word.empty() && word.find(' ') == std::string_view::npos);
    const auto at = cmd.argument.find(word, from);
    SDPS_FUZZ_CHECK(at != std::string::npos);
    from = at + word.size();
  }
  std::size_t starts = 0;
  for (std::size_t i = 0; i < cmd.argument.size(); ++i)
    if (cmd.argument[i] != ' ' && (i == 0 || cmd.argument[i - 1] == ' ')) ++starts;
  SDPS_FUZZ_CHECK(words.size() == starts);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input = sdps::fuzz::text(data, size);
  // The server's limit, and a small one so that overlong lines are common.
  for (const std::size_t limit : {std::size_t{512}, std::size_t{16}}) {
    const auto got = run(input, limit);
    SDPS_FUZZ_CHECK(got == model(input, limit));
    for (const event& e : got) {
      if (e.kind != line_reader::status::line) continue;
      SDPS_FUZZ_CHECK(e.line.size() < limit && e.line.find('\n') == std::string::npos);
      if (limit == 512) check_command(e.line);
    }
  }
  return 0;
}
