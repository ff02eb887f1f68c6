#include "line_reader.hpp"

#include <sdps/module.hpp>

#include <catch2/catch.hpp>

#include <string>
#include <vector>

using sdps::core::line_reader;

namespace {

// Feeds `input` in pieces of `step` octets and records what comes out.
std::vector<std::string> run(line_reader& reader, const std::string& input, std::size_t step = 1000000) {
  std::vector<std::string> events;
  std::string_view data = input;
  while (!data.empty()) {
    std::string_view piece = data.substr(0, std::min(step, data.size()));
    data.remove_prefix(piece.size());
    while (!piece.empty()) {
      piece.remove_prefix(reader.feed(piece));
      switch (reader.next()) {
        case line_reader::status::line: events.push_back("line:" + reader.line()); break;
        case line_reader::status::overlong: events.push_back("overlong"); break;
        case line_reader::status::need_more: break;
      }
    }
  }
  return events;
}

}  // namespace

TEST_CASE("CRLF and bare LF both end a line") {
  line_reader reader;
  CHECK(run(reader, "USER sample\r\nPASS a b c\nNOOP\r\n") ==
        std::vector<std::string>{"line:USER sample", "line:PASS a b c", "line:NOOP"});
}

TEST_CASE("lines split across reads are joined, byte by byte") {
  line_reader reader;
  CHECK(run(reader, "STAT\r\nLIST 1\r\n", 1) == std::vector<std::string>{"line:STAT", "line:LIST 1"});
}

TEST_CASE("a half line waits for the rest") {
  line_reader reader;
  CHECK(run(reader, "RET").empty());
  CHECK_FALSE(reader.pending());
  CHECK(run(reader, "R 1\r\n") == std::vector<std::string>{"line:RETR 1"});
}

TEST_CASE("512 octets with CRLF is the longest line accepted") {
  line_reader reader;
  const std::string longest(510, 'a');
  CHECK(run(reader, longest + "\r\n") == std::vector<std::string>{"line:" + longest});
  CHECK(run(reader, std::string(511, 'b') + "\r\nNOOP\r\n") == std::vector<std::string>{"overlong", "line:NOOP"});
}

TEST_CASE("an overlong line is reported once and its rest discarded, in any piece size") {
  for (std::size_t step : {1u, 7u, 512u, 4096u}) {
    line_reader reader;
    const std::string input = "NOOP\r\n" + std::string(5000, 'x') + "\r\nSTAT\r\n";
    CHECK(run(reader, input, step) == std::vector<std::string>{"line:NOOP", "overlong", "line:STAT"});
  }
}

TEST_CASE("an endless line without LF costs bounded memory and is reported once") {
  line_reader reader;
  auto events = run(reader, std::string(1 << 20, 'z'), 4096);
  CHECK(events == std::vector<std::string>{"overlong"});
  CHECK(run(reader, "tail\r\nNOOP\r\n") == std::vector<std::string>{"line:NOOP"});
}

TEST_CASE("NUL and 8-bit bytes pass through as line content") {
  line_reader reader;
  const std::string junk = std::string("A\0B\xff\x80", 5);
  CHECK(run(reader, junk + "\r\n") == std::vector<std::string>{"line:" + junk});
}

TEST_CASE("empty lines are lines") {
  line_reader reader;
  CHECK(run(reader, "\r\n\n") == std::vector<std::string>{"line:", "line:"});
}

TEST_CASE("a custom limit") {
  line_reader reader(8);
  CHECK(run(reader, "123456\r\n1234567\r\n") == std::vector<std::string>{"line:123456", "overlong"});
}

TEST_CASE("a command's words: split on runs of spaces, counted all, the first eight kept") {
  const sdps::command few{"TOP", "  1   20 "};
  const auto a = few.args();
  REQUIRE(a.size() == 2);
  CHECK(a[0] == "1");
  CHECK(a[1] == "20");
  CHECK(std::vector<std::string_view>(a.begin(), a.end()) == std::vector<std::string_view>{"1", "20"});
  CHECK(sdps::command{"NOOP", ""}.args().empty());
  CHECK(sdps::command{"NOOP", "   "}.args().empty());
  const sdps::command ten{"X", "1 2 3 4 5 6 7 8 9 10"};  // the words are views into it
  const auto many = ten.args();
  CHECK(many.size() == 10);  // a syntax check sees every word
  CHECK(many.end() - many.begin() == 8);
  CHECK(many[7] == "8");
}
