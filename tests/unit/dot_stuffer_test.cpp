#include "dot_stuffer.hpp"

#include <catch2/catch.hpp>

using sdps::core::dot_stuffer;

namespace {
std::string stuff(std::initializer_list<std::string_view> pieces) {
  dot_stuffer stuffer;
  std::string out;
  for (auto p : pieces) stuffer.append(p, out);
  stuffer.finish(out);
  return out;
}
}  // namespace

TEST_CASE("a leading dot is doubled on every line") {
  CHECK(stuff({".hidden\r\nplain\r\n.\r\n..x\r\n"}) == "..hidden\r\nplain\r\n..\r\n...x\r\n.\r\n");
}

TEST_CASE("dots inside a line are left alone") {
  CHECK(stuff({"a.b\r\nend.\r\n"}) == "a.b\r\nend.\r\n.\r\n");
}

TEST_CASE("a line start split across pieces is still found") {
  CHECK(stuff({"first\r", "\n", ".second\r\n"}) == "first\r\n..second\r\n.\r\n");
  CHECK(stuff({"first\r\n", ".", "x\r\n"}) == "first\r\n..x\r\n.\r\n");
}

TEST_CASE("a body without a final line end gets CRLF before the terminator") {
  CHECK(stuff({"no newline"}) == "no newline\r\n.\r\n");
}

TEST_CASE("an empty body is just the terminator") { CHECK(stuff({}) == ".\r\n"); }

TEST_CASE("a body starting with a dot") { CHECK(stuff({".\r\n"}) == "..\r\n.\r\n"); }

TEST_CASE("bare LF lines are stuffed too, so no lenient client sees a terminator") {
  CHECK(stuff({"a\n.\nb\n"}) == "a\n..\nb\n.\r\n");
}

TEST_CASE("stuffing does not depend on where the body is cut into pieces") {
  // Dots, CRs and LFs dense enough that piece edges fall between CR and
  // LF, just before a line-leading dot, and inside runs of dots.
  std::string body;
  std::uint32_t seed = 12345;
  auto next = [&seed] { return seed = seed * 1103515245u + 12345u; };
  const char alphabet[] = {'.', '.', '\r', '\n', 'a', 'b', ' '};
  for (int i = 0; i < 20000; ++i) body += alphabet[(next() >> 16) % sizeof alphabet];
  std::string expected;
  bool line_start = true;
  for (char c : body) {
    if (line_start && c == '.') expected += '.';
    expected += c;
    line_start = c == '\n';
  }
  if (!line_start) expected += "\r\n";
  expected += ".\r\n";
  for (std::size_t piece : {1u, 2u, 3u, 5u, 64u, 4096u, 20000u}) {
    CAPTURE(piece);
    dot_stuffer stuffer;
    std::string out;
    for (std::size_t at = 0; at < body.size(); at += piece)
      stuffer.append(std::string_view(body).substr(at, piece), out);
    stuffer.finish(out);
    CHECK(out == expected);
  }
}

TEST_CASE("verbatim() is true exactly when append() would copy a piece unchanged") {
  // Mixed pieces, some clean and some not, sent either way (the direct
  // path the connection takes for big clean pieces): same stream as
  // stuffing everything.
  std::uint32_t seed = 777;
  auto next = [&seed] { return seed = seed * 1103515245u + 12345u; };
  const char alphabet[] = {'.', '\r', '\n', 'a', 'b', 'c', 'd', 'e', 'f', ' '};
  for (int round = 0; round < 200; ++round) {
    std::string body;
    const int length = 1 + static_cast<int>((next() >> 16) % 400);
    for (int i = 0; i < length; ++i) body += alphabet[(next() >> 16) % sizeof alphabet];
    const std::size_t piece = 1 + (next() >> 16) % 40;
    dot_stuffer all, mixed;
    std::string expected, out;
    for (std::size_t at = 0; at < body.size(); at += piece) {
      const std::string_view p = std::string_view(body).substr(at, piece);
      all.append(p, expected);
      std::string alone;
      dot_stuffer probe = mixed;
      probe.append(p, alone);
      CHECK(mixed.verbatim(p) == (alone == p));
      if (mixed.verbatim(p)) {
        out.append(p);
        mixed.passed(p);
      } else {
        mixed.append(p, out);
      }
    }
    all.finish(expected);
    mixed.finish(out);
    CHECK(out == expected);
  }
}
