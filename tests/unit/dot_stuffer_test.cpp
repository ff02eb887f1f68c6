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
