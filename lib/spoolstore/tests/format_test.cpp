// The spool format's pure parts: names, UIDLs, envelope header, filters.

#include "spoolstore/format.hpp"

#include <catch2/catch.hpp>

#include <set>
#include <utility>
#include <vector>

using namespace sdps::spoolstore;
using namespace std::string_literals;

namespace {

std::string normalise(std::initializer_list<std::string_view> pieces) {
  crlf_normaliser n;
  std::string out;
  for (auto p : pieces) n.feed(p, out);
  n.finish(out);
  return out;
}

std::string top(std::string_view message, std::optional<std::uint64_t> lines, std::size_t piece = 3) {
  top_filter f(lines);
  std::string out;
  for (std::size_t at = 0; at < message.size(); at += piece) {
    const auto chunk = message.substr(at, piece);
    const std::size_t keep = f.accept(chunk);
    out.append(chunk.substr(0, keep));
    if (keep < chunk.size()) {
      CHECK(f.done());
      break;
    }
  }
  return out;
}

}  // namespace

TEST_CASE("host names that may become folder names") {
  CHECK(valid_host("sample"));
  CHECK(valid_host("a-1"));
  CHECK(valid_host(std::string(63, 'a')));
  CHECK_FALSE(valid_host(""));
  CHECK_FALSE(valid_host(std::string(64, 'a')));
  CHECK_FALSE(valid_host("Sample"));
  CHECK_FALSE(valid_host("-sample"));
  CHECK_FALSE(valid_host("sample-"));
  CHECK_FALSE(valid_host(".."));
  CHECK_FALSE(valid_host("a/b"));
  CHECK_FALSE(valid_host("sample.demon"));
}

TEST_CASE("user names encode canonically and case-insensitively") {
  CHECK(encode_user("fred") == "fred");
  CHECK(encode_user("Fred.Bloggs") == "fred.bloggs");
  CHECK(encode_user("a+b_c-d") == "a+b_c-d");
  CHECK(encode_user("a,b/c%d") == "a%2Cb%2Fc%25d");
  CHECK(encode_user("..") == "..");
  CHECK(encode_user("x\0y"s) == "x%00y");
  CHECK(encode_user("\xc3\xa9") == "%C3%A9");
  CHECK(encode_user("\"john doe\"") == "%22john%20doe%22");
  for (std::string_view s : {"fred", "a,b/c%d", "\"john doe\"", "\xc3\xa9t\xc3\xa9"})
    CHECK(decode_user(encode_user(s)) == std::optional<std::string>(std::string(s)));
  CHECK(decode_user("a%2Cb") == std::optional<std::string>("a,b"));
  CHECK_FALSE(decode_user("a%2cb"));  // lower-case hex is not canonical
  CHECK_FALSE(decode_user("%61"));    // 'a' is never encoded
  CHECK_FALSE(decode_user("%41"));    // 'A' encodes lowered
  CHECK_FALSE(decode_user("a%2"));
  CHECK_FALSE(decode_user("a/b"));
  CHECK_FALSE(decode_user("Fred"));
}

TEST_CASE("UIDLs are time-ordered, unique and printable") {
  const auto a = new_uidl(1732650000123456);
  const auto b = new_uidl(1732650000123456);
  const auto c = new_uidl(1732650000123457);
  CHECK(a.size() == 34);
  CHECK(a.substr(0, 18) == "01732650000123456.");
  CHECK(a != b);
  CHECK(a < c);
  CHECK(b < c);
  CHECK(valid_uidl(a));
  CHECK(uidl_arrival(a) == 1732650000123456);
  for (char ch : a) CHECK((ch > 0x20 && ch < 0x7f));
  CHECK(new_uidl(now_us()) > a);
  CHECK_FALSE(valid_uidl("01732650000123456.0123456789ABCDEF"));
  CHECK_FALSE(valid_uidl("1732650000123456.0123456789abcdef"));
  CHECK_FALSE(valid_uidl(""));
}

TEST_CASE("parse_name_view accepts what parse_name accepts, and orders UIDLs as integers") {
  const std::string u = "01732650000123456.00000000000000af";
  for (const std::string& text :
       std::vector<std::string>{u + ",s=219,u=fred", u + ",u=jim,s=7,x=later", u + ",s=0,u=a%2Cb", std::string("README"), u, u + ",s=7",
        u + ",s=07,u=fred", u + ",s=7,u=Fred", u + ",s=7,u=%41", u + ",s=7,u=%2", u + ",s=7,u=fred,",
        "x" + u + ",s=7,u=fred", u + ".tmp,s=7,u=fred", "01732650000123456.00000000000000aF,s=7,u=fred",
        "0173265000012345x.00000000000000af,s=7,u=fred", "01732650000123456-00000000000000af,s=7,u=fred"}) {
    const auto owned = parse_name(text);
    const auto view = parse_name_view(text);
    REQUIRE(owned.has_value() == view.has_value());
    if (!view) continue;
    CHECK(view->uidl == owned->uidl);
    CHECK(view->size == owned->size);
    CHECK(view->user == owned->user);
    CHECK(view->arrival == owned->arrival);
    CHECK(view->uidl.data() == text.data());  // a view into the name, not a copy
  }
  CHECK(parse_name_view(u + ",s=1,u=x")->random == 0xaf);
  CHECK(parse_name_view("01732650000123456.ffffffffffffffff,s=1,u=x")->random == 0xffffffffffffffffULL);
  CHECK(valid_user_encoding("a%2Cb"));
  CHECK_FALSE(valid_user_encoding("a%2cb%"));

  // (arrival, random) sorts exactly as the UIDL text does.
  std::vector<std::string> uidls;
  for (int i = 0; i < 200; ++i) uidls.push_back(new_uidl(i % 7 == 0 ? 42 : 1000000 + i * 13));
  auto key = [](const std::string& uidl) {
    const auto v = parse_name_view(uidl + ",s=1,u=x");
    return std::pair(v->arrival, v->random);
  };
  for (std::size_t i = 0; i < uidls.size(); ++i)
    for (std::size_t j = 0; j < uidls.size(); ++j) CHECK((uidls[i] < uidls[j]) == (key(uidls[i]) < key(uidls[j])));
}

TEST_CASE("message file names round-trip and junk is refused") {
  const file_name n{new_uidl(5), 1234, "fred", 5};
  const auto text = format_name(n);
  CHECK(text.rfind(n.uidl + ",", 0) == 0);  // begins with the UIDL
  const auto back = parse_name(text);
  REQUIRE(back);
  CHECK(back->uidl == n.uidl);
  CHECK(back->size == 1234);
  CHECK(back->user == "fred");
  CHECK(back->arrival == 5);

  const std::string u = n.uidl;
  CHECK(parse_name(u + ",u=jim,s=7,x=later")->size == 7);  // field order free, unknown keys ignored
  CHECK(parse_name(u + ",s=0,u=a%2Cb")->user == "a%2Cb");
  for (const std::string& junk : {std::string("README"), u, u + ",s=7", u + ",u=fred", u + ",s=,u=fred",
                                  u + ",s=07,u=fred", u + ",s=-1,u=fred", u + ",s=7,u=", u + ",s=7,u=Fred",
                                  u + ",s=7,u=fred,s=8", u + ",s=7,u=fred,", u + ",s=7,=x,u=fred",
                                  u + ",s=99999999999999999999,u=fred", "x" + u + ",s=7,u=fred",
                                  u + ".tmp,s=7,u=fred"})
    CHECK_FALSE(parse_name(junk));
}

TEST_CASE("the envelope header round-trips") {
  const envelope_header e{"alice@example.com", "fred@sample.demon.co.uk", 1732650000123456};
  const std::string block = format_envelope(e);
  CHECK(block ==
        "SDPS-Spool: 1\r\nEnvelope-From: <alice@example.com>\r\nEnvelope-To: <fred@sample.demon.co.uk>\r\n"
        "Arrival: 2024-11-26T19:40:00.123456Z\r\n\r\n");
  const auto parsed = parse_envelope(block + "Subject: x\r\n\r\nbody\r\n");
  REQUIRE(parsed);
  CHECK(parsed->envelope.from == e.from);
  CHECK(parsed->envelope.to == e.to);
  CHECK(parsed->envelope.arrival == e.arrival);
  CHECK(parsed->body_offset == block.size());

  const auto null_sender = parse_envelope(format_envelope({"", "fred@sample.demon.co.uk", 0}));
  REQUIRE(null_sender);
  CHECK(null_sender->envelope.from.empty());

  // Unknown fields and other spellings of the keys are accepted.
  CHECK(parse_envelope("sdps-spool: 1\r\nX-Later: 2\r\nenvelope-to: <a@b>\r\nENVELOPE-FROM:<>\r\n\r\n"));
  for (const std::string& bad :
       {std::string(""), std::string("Subject: hi\r\n\r\n"), std::string("SDPS-Spool: 2\r\nEnvelope-From: <>\r\nEnvelope-To: <a@b>\r\n\r\n"),
        std::string("SDPS-Spool: 1\r\nEnvelope-From: <>\r\n\r\n"), std::string("SDPS-Spool: 1\r\nEnvelope-To: <a@b>\r\n\r\n"),
        std::string("SDPS-Spool: 1\r\nEnvelope-From: <>\r\nEnvelope-To: a@b\r\n\r\n"),
        std::string("SDPS-Spool: 1\r\nEnvelope-From: <>\r\nEnvelope-To: <>\r\n\r\n"),
        std::string("SDPS-Spool: 1\r\nEnvelope-From: <>\r\nEnvelope-To: <a@b>\r\n"),  // no blank line
        std::string("SDPS-Spool: 1\r\nEnvelope-From: <>\r\nEnvelope-To: <a@b>\r\nArrival: yesterday\r\n\r\n"),
        std::string("SDPS-Spool: 1\r\nEnvelope-From: <>\r\nEnvelope-To: <a@b>\r\nno colon\r\n\r\n"),
        "SDPS-Spool: 1\r\nEnvelope-From: <>\r\nEnvelope-To: <a@b>\r\nX: " + std::string(5000, 'x') + "\r\n\r\n"})
    CHECK_FALSE(parse_envelope(bad));
}

TEST_CASE("envelope addresses are checked") {
  CHECK(valid_address(""));
  CHECK(valid_address("alice@example.com"));
  CHECK(valid_address("\"john doe\"@example.com"));
  CHECK(valid_address("j\xc3\xb6rg@example.com"));
  CHECK_FALSE(valid_address("a\r\nb"));
  CHECK_FALSE(valid_address("a\0b"s));
  CHECK_FALSE(valid_address("<a@b>"));
  CHECK_FALSE(valid_address(std::string(max_address + 1, 'a')));
  CHECK(return_path_line("") == "Return-Path: <>\r\n");
  CHECK(return_path_line("a@b") == "Return-Path: <a@b>\r\n");
}

TEST_CASE("delivery normalises line ends to CRLF and keeps every other octet") {
  CHECK(normalise({"a\nb\n"}) == "a\r\nb\r\n");
  CHECK(normalise({"a\r\nb\r\n"}) == "a\r\nb\r\n");
  CHECK(normalise({"a\r", "\nb"}) == "a\r\nb\r\n");  // CRLF split across pieces
  CHECK(normalise({"a", "\n", "\n"}) == "a\r\n\r\n");
  CHECK(normalise({"no final line end"}) == "no final line end\r\n");
  CHECK(normalise({"ends in CR\r"}) == "ends in CR\r\n");
  CHECK(normalise({""}) == "");
  CHECK(normalise({"\n"}) == "\r\n");
  CHECK(normalise({"lone\rCR\n"}) == "lone\rCR\r\n");
  const std::string binary = "8bit \xff\xfe and NUL \0 kept\n"s;
  CHECK(normalise({binary}) == "8bit \xff\xfe and NUL \0 kept\r\n"s);
}

TEST_CASE("TOP sends the header, the blank line and k body lines") {
  const std::string m = "From: a\r\nSubject: s\r\n\r\nline 1\r\nline 2\r\nline 3\r\n";
  for (std::size_t piece : {1, 2, 3, 5, 100}) {
    CHECK(top(m, 0, piece) == "From: a\r\nSubject: s\r\n\r\n");
    CHECK(top(m, 1, piece) == "From: a\r\nSubject: s\r\n\r\nline 1\r\n");
    CHECK(top(m, 2, piece) == "From: a\r\nSubject: s\r\n\r\nline 1\r\nline 2\r\n");
    CHECK(top(m, 3, piece) == m);
    CHECK(top(m, 99999999, piece) == m);
    CHECK(top(m, std::nullopt, piece) == m);
  }
  CHECK(top("Subject: only a header\r\n", 0) == "Subject: only a header\r\n");
  CHECK(top("\r\nbody at once\r\nmore\r\n", 1) == "\r\nbody at once\r\n");
  CHECK(top("H: x\r\n\r\n\r\n\r\nafter blank body lines\r\n", 2) == "H: x\r\n\r\n\r\n\r\n");
}

TEST_CASE("the dummy message is a small valid RFC 5322 message") {
  dummy_details d{"01732650000123456.0123456789abcdef", 4321, "fred@sample.demon.co.uk", "pop3.test", 1732650000000000, std::nullopt};
  const std::string m = dummy_message(d);
  const auto split = m.find("\r\n\r\n");
  REQUIRE(split != std::string::npos);
  const std::string header = m.substr(0, split + 2);
  CHECK(m.rfind("Return-Path: <>\r\n", 0) == 0);
  CHECK(header.find("\r\nFrom: Mail Delivery System <MAILER-DAEMON@pop3.test>\r\n") != std::string::npos);
  CHECK(header.find("\r\nTo: <fred@sample.demon.co.uk>\r\n") != std::string::npos);
  CHECK(header.find("\r\nSubject: ") != std::string::npos);
  CHECK(header.find("\r\nDate: Tue, 26 Nov 2024 19:40:00 +0000\r\n") != std::string::npos);
  CHECK(header.find("\r\nMessage-ID: <sdps-dummy.01732650000123456.0123456789abcdef.") != std::string::npos);
  CHECK(header.find("@pop3.test>\r\n") != std::string::npos);
  CHECK(m.find("4321 octets") != std::string::npos);
  CHECK(m.substr(m.size() - 2) == "\r\n");
  for (std::size_t i = 0; i < m.size(); ++i) {
    if (m[i] == '\n') CHECK((i > 0 && m[i - 1] == '\r'));
    CHECK(static_cast<unsigned char>(m[i]) < 0x80);
  }
  // Two notices never share a Message-ID.
  CHECK(dummy_message(d) != dummy_message(d));
  // A recipient that cannot stand in To: as it is becomes a group.
  d.to = "\"john doe\"@sample.demon.co.uk";
  CHECK(dummy_message(d).find("\r\nTo: undisclosed-recipients:;\r\n") != std::string::npos);
  d.server_name = "bad name>\r\n";
  CHECK(dummy_message(d).find("@badname>") != std::string::npos);
}

TEST_CASE("the dummy message says what became of the message") {
  dummy_details d{"01732650000123456.0123456789abcdef", 4321, "fred@sample.demon.co.uk", "pop3.test", 1732650000000000, std::nullopt};
  const auto subject = [&d](std::optional<departure> why) {
    d.why = why;
    const std::string m = dummy_message(d);
    const auto at = m.find("\r\nSubject: ") + 11;
    return m.substr(at, m.find("\r\n", at) - at);
  };
  CHECK(subject(departure::delivered) == "Message already delivered by SMTP");
  CHECK(subject(departure::returned) == "Message expired and returned to its sender");
  CHECK(subject(departure::expired) == "Message expired");
  CHECK(subject(std::nullopt) == "Message removed from the spool");
  d.why = departure::returned;
  const std::string returned = dummy_message(d);
  CHECK(returned.find("returned to its sender") != std::string::npos);
  CHECK(returned.find("You should already have it") == std::string::npos);
  d.why = std::nullopt;
  CHECK(dummy_message(d).find("delivered") == std::string::npos);
}
