#include "smtp/dsn.hpp"
#include "smtp/protocol.hpp"

#include <catch2/catch.hpp>

using namespace sdps::smtp;

namespace {

std::string stuff(std::string_view in) {
  dot_stuffer s;
  std::string out;
  s.feed(in, out);
  s.finish(out);
  return out;
}

std::string unstuff(const std::vector<std::string>& lines, bool* ended = nullptr) {
  dot_unstuffer u;
  std::string out;
  bool done = false;
  for (const auto& l : lines)
    if (u.feed(l, out)) {
      done = true;
      break;
    }
  if (ended) *ended = done;
  return out;
}

}  // namespace

TEST_CASE("a one-line reply") {
  reply_reader r;
  REQUIRE(r.feed("250 2.0.0 Ok: queued as 1234\r\n") == reply_reader::status::complete);
  const auto got = r.take();
  CHECK(got.code == 250);
  CHECK(got.positive());
  CHECK(got.summary() == "250 2.0.0 Ok: queued as 1234");
}

TEST_CASE("a multi-line reply keeps every line; the last has a space") {
  reply_reader r;
  CHECK(r.feed("250-mx.example.com\r\n") == reply_reader::status::more);
  CHECK(r.feed("250-PIPELINING\r\n") == reply_reader::status::more);
  CHECK(r.feed("250-size 1000\r\n") == reply_reader::status::more);
  CHECK(r.feed("250 8BITMIME\r\n") == reply_reader::status::complete);
  const auto got = r.take();
  REQUIRE(got.lines.size() == 4);
  const auto ext = extensions(got);
  REQUIRE(ext.size() == 3);
  CHECK(ext[0].first == "PIPELINING");
  CHECK(ext[1] == std::make_pair(std::string("SIZE"), std::string("1000")));
  CHECK(ext[2].first == "8BITMIME");
}

TEST_CASE("a bare code is a reply; junk and mixed codes are not") {
  reply_reader r;
  CHECK(r.feed("354\r\n") == reply_reader::status::complete);
  CHECK(r.take().code == 354);
  CHECK(r.feed("hello\r\n") == reply_reader::status::bad);
  reply_reader m;
  CHECK(m.feed("250-a\r\n") == reply_reader::status::more);
  CHECK(m.feed("251 b\r\n") == reply_reader::status::bad);
  reply_reader x;
  CHECK(x.feed("250x\r\n") == reply_reader::status::bad);
  CHECK(x.feed("099 no\r\n") == reply_reader::status::bad);
}

TEST_CASE("reply classes") {
  reply r;
  r.code = 451;
  CHECK(r.transient());
  r.code = 550;
  CHECK(r.permanent());
  r.code = 354;
  CHECK(r.positive());
}

TEST_CASE("commands and paths") {
  const auto c = parse_command("mail FROM:<alice@example.com> size=12 BODY=8BITMIME\r\n");
  CHECK(c.verb == "MAIL");
  const auto p = parse_path(c.argument, "FROM");
  REQUIRE(p);
  CHECK(p->address == "alice@example.com");
  REQUIRE(p->params.size() == 2);
  CHECK(p->params[0] == std::make_pair(std::string("SIZE"), std::string("12")));
  CHECK(p->params[1].first == "BODY");

  CHECK(parse_path("FROM:<>", "FROM")->address.empty());
  CHECK(parse_path("from: <a@b>", "FROM")->address == "a@b");
  CHECK(parse_path("TO:<@relay.example:fred@sample.demon.co.uk>", "TO")->address == "fred@sample.demon.co.uk");
  CHECK(parse_path("TO:<\"odd > name\"@sample>", "TO")->address == "\"odd > name\"@sample");
  CHECK_FALSE(parse_path("TO:fred@sample", "TO"));
  CHECK_FALSE(parse_path("TO:<fred@sample", "TO"));
  CHECK_FALSE(parse_path("FROM:<a@b>", "TO"));
  CHECK_FALSE(parse_path("TO:<a@b>x", "TO"));
  CHECK_FALSE(parse_path("TO:<a\r@b>", "TO"));
  CHECK_FALSE(parse_path("TO:<@relay:>", "TO"));
  CHECK_FALSE(parse_path("TO:<@relay:@>", "TO"));
  CHECK_FALSE(parse_path("TO:<@relay\":\"x@y>", "TO"));
  // No space inside the brackets outside quotes (issue 19.8: "< x@host>"
  // was the user " x").
  CHECK_FALSE(parse_path("TO:< x@sample.demon.co.uk>", "TO"));
  CHECK_FALSE(parse_path("TO:<x @sample.demon.co.uk>", "TO"));
  CHECK_FALSE(parse_path("TO:<x@sample.demon.co.uk >", "TO"));
  CHECK(parse_path("TO:<\"x y\"@sample>", "TO")->address == "\"x y\"@sample");
  // A quoted pair is a backslash and a printable octet (quoted-pairSMTP).
  CHECK_FALSE(parse_path("TO:<\"a\\\tb\"@sample>", "TO"));
  CHECK(parse_path("TO:<\"a\\\"b\"@sample>", "TO")->address == "\"a\\\"b\"@sample");
  // A parameter needs a keyword (RFC 5321 esmtp-keyword).
  CHECK_FALSE(parse_path("FROM:<a@b> =x", "FROM"));
  CHECK_FALSE(parse_path("FROM:<a@b> -SIZE=1", "FROM"));
  CHECK_FALSE(parse_path("FROM:<a@b> SI\x01ZE=1", "FROM"));
  CHECK(parse_path("FROM:<a@b> X-VENDOR", "FROM")->params.at(0).first == "X-VENDOR");
  const auto split = split_address("\"a@b\"@sample.demon.co.uk");
  REQUIRE(split);
  CHECK(split->first == "\"a@b\"");
  CHECK(split->second == "sample.demon.co.uk");
  CHECK_FALSE(split_address("nobody"));
}

TEST_CASE("dot-stuffing on the way out") {
  CHECK(stuff("a\r\n.b\r\n..\r\n") == "a\r\n..b\r\n...\r\n.\r\n");
  CHECK(stuff(".\r\n") == "..\r\n.\r\n");
  CHECK(stuff("") == ".\r\n");
  CHECK(stuff("no end") == "no end\r\n.\r\n");
  CHECK(stuff("cr end\r") == "cr end\r\n.\r\n");
  // split across pieces
  dot_stuffer s;
  std::string out;
  s.feed("x\r", out);
  s.feed("\n", out);
  s.feed(".y\r\n", out);
  s.finish(out);
  CHECK(out == "x\r\n..y\r\n.\r\n");
}

TEST_CASE("dot-unstuffing on the way in") {
  bool ended = false;
  CHECK(unstuff({"a\r\n", "..b\r\n", ".\r\n", "after\r\n"}, &ended) == "a\r\n.b\r\n");
  CHECK(ended);
  CHECK(unstuff({".\n"}, &ended).empty());
  CHECK(ended);
  // a long line handed over in pieces: only its first piece is a line start
  CHECK(unstuff({"xxxx", ".yyy\r\n", ".\r\n"}, &ended) == "xxxx.yyy\r\n");
  CHECK(unstuff({"no end"}, &ended) == "no end");
  CHECK_FALSE(ended);
}

TEST_CASE("a DSN is a multipart/report with the three parts") {
  dsn_details d;
  d.reporting_mta = "punt.example";
  d.sender = "alice@example.com";
  d.recipient = "fred@sample.demon.co.uk";
  d.arrival = 1700000000;
  d.now = 1700600000;
  d.original_header = "From: alice@example.com\r\nSubject: hi\r\n\r\n";
  d.unique = "abc123";
  const auto m = dsn_message(d);
  CHECK(m.find("Content-Type: multipart/report; report-type=delivery-status;") != std::string::npos);
  CHECK(m.find("boundary=\"=_sdps_abc123\"") != std::string::npos);
  CHECK(m.find("Content-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; punt.example\r\n") !=
        std::string::npos);
  CHECK(m.find("Final-Recipient: rfc822; fred@sample.demon.co.uk\r\nAction: failed\r\nStatus: 4.4.7\r\n") !=
        std::string::npos);
  CHECK(m.find("Content-Type: text/rfc822-headers\r\n\r\nFrom: alice@example.com\r\nSubject: hi\r\n") !=
        std::string::npos);
  CHECK(m.find("To: <alice@example.com>\r\n") != std::string::npos);
  CHECK(m.find("Auto-Submitted: auto-replied\r\n") != std::string::npos);
  CHECK(m.substr(m.size() - 19) == "--=_sdps_abc123--\r\n");
  // every line ends CRLF
  for (std::size_t i = 0; i < m.size(); ++i)
    if (m[i] == '\n') REQUIRE((i > 0 && m[i - 1] == '\r'));
}

