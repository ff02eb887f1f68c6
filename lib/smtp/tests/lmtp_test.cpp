// The LMTP conversation (lib/smtp/lmtp.hpp) as transcripts: send this,
// expect that; the site is a stub that knows *@sample.test.

#include "smtp/lmtp.hpp"

#include <catch2/catch.hpp>

using namespace sdps::smtp;

namespace {

struct transcript {
  explicit transcript(std::uint64_t max_size = 100000) : p(limits(max_size)) {}

  static lmtp_protocol::limits limits(std::uint64_t max_size) {
    lmtp_protocol::limits l;
    l.server_name = "spool.test";
    l.max_message_size = max_size;
    l.max_recipients = 3;
    l.usable_sender = [](std::string_view sender) { return sender.find('!') == std::string_view::npos; };
    return l;
  }

  /// Feeds `input` as a driver reads it (lines, cut at the read limits),
  /// answers every request with the stub site; returns the replies.
  std::string send(std::string_view input) {
    std::string replies;
    while (!input.empty() && !closed) {
      const std::size_t max = p.in_data() ? max_data_piece : max_command_line;
      const auto lf = input.substr(0, max).find('\n');
      const std::size_t take = lf != std::string_view::npos ? lf + 1 : std::min(max, input.size());
      const auto request = p.feed(input.substr(0, take), message);
      input.remove_prefix(take);
      switch (request) {
        case lmtp_protocol::request::none:
          break;
        case lmtp_protocol::request::check_recipient: {
          const std::string& a = p.recipient_asked();
          recipient_verdict v;
          if (a.ends_with("@down.test")) {
            v.result = recipient_verdict::kind::unavailable;
            v.reason = "cannot read the host database";
          } else if (!a.ends_with("@sample.test")) {
            v.result = recipient_verdict::kind::unknown;
            v.reason = "no such customer host";
          }
          p.recipient_checked(v);
          break;
        }
        case lmtp_protocol::request::store:
          stored_for = p.recipients();
          stored_message = message;
          for (std::size_t i = 0; i < p.recipients().size(); ++i) {
            store_outcome o;
            o.result = p.recipients()[i].starts_with("full@") ? store_outcome::kind::failed
                                                              : store_outcome::kind::stored;
            o.uidl = std::string("U") + std::to_string(i);  // (not "U" + ...: a false -Wrestrict of GCC 12 at -O3)
            o.detail = o.result == store_outcome::kind::stored ? "on finchley" : "no punt can take it";
            p.stored(o);
          }
          message.clear();
          break;
        case lmtp_protocol::request::close:
          closed = true;
          break;
      }
      replies += p.take_replies();
      for (auto& t : p.take_transactions()) log.push_back(std::move(t));
    }
    return replies;
  }

  lmtp_protocol p;
  std::string message;
  std::string stored_message;
  std::vector<std::string> stored_for;
  std::vector<lmtp_transaction> log;
  bool closed = false;
};

}  // namespace

TEST_CASE("LMTP: greeting, LHLO and its extensions; HELO and MAIL before LHLO refused") {
  transcript t;
  CHECK(t.p.greeting() == "220 spool.test LMTP sdps ready\r\n");
  CHECK(t.send("HELO mta\r\n") == "500 5.5.1 This is LMTP: say LHLO\r\n");
  CHECK(t.send("MAIL FROM:<a@b>\r\n") == "503 5.5.1 Say LHLO first\r\n");
  CHECK(t.send("LHLO\r\n") == "501 5.5.4 LHLO needs a name\r\n");
  CHECK(t.send("lhlo mta.test\r\n") ==
        "250-spool.test\r\n250-PIPELINING\r\n250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n"
        "250 SIZE 100000\r\n");
  CHECK(t.send("NOOP\r\nFROB\r\n") == "250 2.0.0 Ok\r\n500 5.5.2 Command not recognised\r\n");
  CHECK(t.log.empty());
}

TEST_CASE("LMTP: one reply per accepted recipient after the dot, the message un-stuffed, one log entry") {
  transcript t;
  t.send("LHLO mta\r\n");
  const std::string replies = t.send(
      "MAIL FROM:<alice@example.com> SIZE=20 BODY=8BITMIME\r\n"
      "RCPT TO:<fred@sample.test>\r\n"
      "RCPT TO:<x@nosuch.test>\r\n"
      "RCPT TO:<full@sample.test>\r\n"
      "DATA\r\n"
      "Subject: hi\r\n\r\n..dot\r\nend\r\n.\r\n"
      "QUIT\r\n");
  CHECK(replies ==
        "250 2.1.0 Ok\r\n"
        "250 2.1.5 Ok\r\n"
        "550 5.1.1 <x@nosuch.test>: no such customer host\r\n"
        "250 2.1.5 Ok\r\n"
        "354 End data with <CR><LF>.<CR><LF>\r\n"
        "250 2.0.0 <fred@sample.test> U0 stored\r\n"
        "451 4.3.0 <full@sample.test>: temporary failure, try again later\r\n"
        "221 2.0.0 Bye\r\n");
  CHECK(t.stored_message == "Subject: hi\r\n\r\n.dot\r\nend\r\n");
  CHECK(t.stored_for == std::vector<std::string>{"fred@sample.test", "full@sample.test"});
  CHECK(t.closed);
  REQUIRE(t.log.size() == 1);
  const lmtp_transaction& l = t.log.front();
  CHECK(l.from == "alice@example.com");
  CHECK(l.data);
  CHECK(l.size == t.stored_message.size());
  CHECK(l.recipients ==
        std::vector<std::pair<std::string, std::string>>{
            {"<fred@sample.test>", "stored U0 on finchley"},
            {"<x@nosuch.test>", "refused: 550 5.1.1 <x@nosuch.test>: no such customer host"},
            {"<full@sample.test>", "deferred: 451 no punt can take it"}});
}

TEST_CASE("LMTP: MAIL and RCPT syntax, parameters and order (issue 19.8)") {
  transcript t;
  t.send("LHLO mta\r\n");
  CHECK(t.send("RCPT TO:<fred@sample.test>\r\n") == "503 5.5.1 Need MAIL first\r\n");
  CHECK(t.send("DATA\r\n") == "503 5.5.1 Need MAIL first\r\n");
  CHECK(t.send("MAIL FROM:a@b\r\n") == "501 5.5.4 Syntax: MAIL FROM:<address>\r\n");
  CHECK(t.send("MAIL FROM:<a@b> BODY=BINARYMIME\r\n") ==
        "555 5.5.4 BODY=BINARYMIME is not offered (7BIT or 8BITMIME)\r\n");
  CHECK(t.send("MAIL FROM:<a@b> SIZE=100001\r\n") == "552 5.3.4 Message too big for the spool\r\n");
  CHECK(t.send("MAIL FROM:<a@b> SIZE=12x\r\n") == "501 5.5.4 Bad SIZE\r\n");
  CHECK(t.send("MAIL FROM:<a@b> SMTPUTF8=yes\r\n") == "501 5.5.4 SMTPUTF8 takes no value\r\n");
  CHECK(t.send("MAIL FROM:<a@b> AUTH=<>\r\n") == "555 5.5.4 Unsupported parameter AUTH\r\n");
  CHECK(t.send("MAIL FROM:<bang!path@b>\r\n") == "553 5.1.7 The sender address is not usable\r\n");
  CHECK(t.send("MAIL FROM:<> BODY=7bit SMTPUTF8\r\n") == "250 2.1.0 Ok\r\n");
  CHECK(t.send("MAIL FROM:<a@b>\r\n") == "503 5.5.1 Nested MAIL command\r\n");
  CHECK(t.send("DATA\r\n") == "503 5.5.1 Need RCPT first\r\n");
  // A space after '<' is no address, not the user " x".
  CHECK(t.send("RCPT TO:< x@sample.test>\r\n") == "501 5.5.4 Syntax: RCPT TO:<address>\r\n");
  CHECK(t.send("RCPT TO:<>\r\n") == "501 5.5.4 Syntax: RCPT TO:<address>\r\n");
  CHECK(t.send("RCPT TO:<x@sample.test> NOTIFY=NEVER\r\n") == "555 5.5.4 Unsupported parameter NOTIFY\r\n");
  CHECK(t.send("RCPT TO:<x@down.test>\r\n") == "451 4.3.0 Temporary failure, try again later\r\n");
  CHECK(t.send("RCPT TO:<a@sample.test>\r\nRCPT TO:<b@sample.test>\r\nRCPT TO:<c@sample.test>\r\n"
               "RCPT TO:<d@sample.test>\r\n") ==
        "250 2.1.5 Ok\r\n250 2.1.5 Ok\r\n250 2.1.5 Ok\r\n452 4.5.3 Too many recipients\r\n");
  CHECK(t.send("DATA now\r\n") == "501 5.5.4 DATA takes no argument\r\n");
  CHECK(t.send("RSET\r\n") == "250 2.0.0 Ok\r\n");
  REQUIRE(t.log.size() == 1);
  CHECK_FALSE(t.log.front().data);
  CHECK(t.log.front().recipients.size() == 8);
  CHECK(t.log.front().recipients[4].second == "not delivered");
}

TEST_CASE("LMTP: an over-long command line is refused whole; an over-long DATA line is message") {
  transcript t;
  t.send("LHLO mta\r\n");
  CHECK(t.send(std::string(5000, 'x') + "\r\nNOOP\r\n") == "500 5.5.2 Line too long\r\n250 2.0.0 Ok\r\n");
  const std::string line(20000, 'y');
  t.send("MAIL FROM:<a@b>\r\nRCPT TO:<f@sample.test>\r\nDATA\r\n");
  CHECK(t.send(line + "\r\n.\r\n") == "250 2.0.0 <f@sample.test> U0 stored\r\n");
  CHECK(t.stored_message == line + "\r\n");
}

TEST_CASE("LMTP: a message over max_message_size gets 552 per recipient, and is not handed out") {
  transcript t(2048);
  t.send("LHLO mta\r\nMAIL FROM:<a@b>\r\nRCPT TO:<f@sample.test>\r\nRCPT TO:<g@sample.test>\r\nDATA\r\n");
  std::string body;
  for (int i = 0; i < 100; ++i) body += std::string(70, 'z') + "\r\n";
  CHECK(t.send(body + ".\r\n") ==
        "552 5.3.4 <f@sample.test>: message too big for the spool\r\n"
        "552 5.3.4 <g@sample.test>: message too big for the spool\r\n");
  CHECK(t.message.size() <= 2048);
  CHECK(t.stored_for.empty());
  REQUIRE(t.log.size() == 1);
  CHECK(t.log.front().size == body.size());
  CHECK(t.send("MAIL FROM:<a@b>\r\n") == "250 2.1.0 Ok\r\n");
}

TEST_CASE("LMTP: a spool failure in DATA gives 451 per recipient") {
  transcript t;
  t.send("LHLO mta\r\nMAIL FROM:<a@b>\r\nRCPT TO:<f@sample.test>\r\nDATA\r\nline\r\n");
  t.p.spool_failed();
  CHECK(t.send(".\r\n") == "451 4.3.0 <f@sample.test>: temporary failure, try again later\r\n");
  CHECK(t.stored_for.empty());
}

TEST_CASE("LMTP: a client idle too long gets 421 (in DATA too) and its transaction is logged") {
  transcript t;
  t.send("LHLO mta\r\nMAIL FROM:<a@b>\r\nRCPT TO:<f@sample.test>\r\nDATA\r\nhalf a message\r\n");
  CHECK(t.p.in_data());
  t.p.timed_out();
  CHECK(t.p.take_replies() == "421 4.4.2 spool.test Timeout waiting for the client, closing the connection\r\n");
  const auto log = t.p.take_transactions();
  REQUIRE(log.size() == 1);
  CHECK_FALSE(log.front().data);
  CHECK(log.front().recipients.front().second == "not delivered");
  std::string ignored;
  CHECK(t.p.feed("NOOP\r\n", ignored) == lmtp_protocol::request::close);
}
