// The LMTP server's conversation (lib/smtp/lmtp): what `sdps lmtp` does
// with every command line and DATA line a client sends, driven as the
// tool drives it (lines cut at its read limits), with a stub site that
// knows *@ok (accepted), *@later (unavailable) and nothing else, and a
// store that fails for local parts beginning with 'f'.
//
// Properties:
// - every reply line is "ddd text" or "ddd-text" with a code from 200 to
//   599, printable, CRLF-ended;
// - one reply per command line (an over-long line: one, at its end), and
//   at the end of DATA one per recipient accepted, each naming it; none
//   after QUIT or the close;
// - the site is only asked about addresses without an unquoted space or a
//   control octet, and only accepted ones are stored for;
// - the message handed over for storage is the DATA lines with one
//   leading dot removed (a model of RFC 5321 4.5.2) and within
//   max_message_size; a larger one is refused with 552 for each recipient
//   and never stored;
// - every transaction that had a MAIL is logged once, with one entry per
//   RCPT command (refused ones too).

#include "fuzz.hpp"

#include "smtp/lmtp.hpp"

#include <sdps/log.hpp>

#include <string>

namespace smtp = sdps::smtp;

namespace {

constexpr std::uint64_t max_size = 300;

bool reply_line_ok(std::string_view line) {
  if (line.size() < 5 || !line.ends_with("\r\n")) return false;
  if (line[0] < '2' || line[0] > '5' || line[1] < '0' || line[1] > '9' || line[2] < '0' || line[2] > '9')
    return false;
  if (line[3] != ' ' && line[3] != '-') return false;
  for (std::size_t i = 0; i + 2 < line.size(); ++i) {
    const auto c = static_cast<unsigned char>(line[i]);
    if (c < 0x20 || c >= 0x7f) return false;
  }
  return true;
}

/// Final reply lines ("ddd ") in `replies`, each checked.
std::size_t final_replies(std::string_view replies, std::vector<std::string>& lines) {
  std::size_t count = 0;
  while (!replies.empty()) {
    const auto lf = replies.find('\n');
    SDPS_FUZZ_CHECK(lf != std::string_view::npos);
    const std::string_view line = replies.substr(0, lf + 1);
    SDPS_FUZZ_CHECK(reply_line_ok(line));
    if (line[3] == ' ') ++count;
    lines.emplace_back(line);
    replies.remove_prefix(lf + 1);
  }
  return count;
}

/// Whether `line` is the command `verb` (as parse_command reads it).
bool is_verb(std::string_view line, std::string_view verb) {
  while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.remove_suffix(1);
  line = line.substr(0, line.find(' '));
  if (line.size() != verb.size()) return false;
  for (std::size_t i = 0; i < verb.size(); ++i)
    if ((line[i] & ~0x20) != verb[i]) return false;
  return true;
}

bool clean_address(std::string_view address) {
  bool quoted = false;
  for (std::size_t i = 0; i < address.size(); ++i) {
    const auto c = static_cast<unsigned char>(address[i]);
    if (c < 0x20 || c == 0x7f) return false;
    if (quoted && c == '\\') {
      ++i;
    } else if (c == '"') {
      quoted = !quoted;
    } else if (!quoted && c == ' ') {
      return false;
    }
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view input = sdps::fuzz::text(data, size);
  smtp::lmtp_protocol::limits limits;
  limits.server_name = "spool.test";
  limits.max_message_size = max_size;
  limits.max_recipients = 5;
  smtp::lmtp_protocol p(limits);

  std::string message, model;
  bool model_line_start = true;
  bool closed = false;
  std::size_t mails = 0, logged = 0, rcpts_in_transaction = 0;
  std::vector<std::string> lines;
  while (!input.empty()) {
    const bool data = p.in_data();
    const std::size_t limit = data ? smtp::max_data_piece : smtp::max_command_line;
    const auto lf = input.substr(0, limit).find('\n');
    const std::size_t take = lf != std::string_view::npos ? lf + 1 : std::min(limit, input.size());
    const std::string_view piece = input.substr(0, take);
    input.remove_prefix(take);
    const bool complete = piece.back() == '\n';
    const std::vector<std::string> accepted = p.recipients();

    std::size_t expected = 0;
    bool data_ends = false;
    if (data) {
      const std::string_view bare = piece.ends_with("\r\n") ? piece.substr(0, piece.size() - 2)
                                    : complete              ? piece.substr(0, piece.size() - 1)
                                                            : piece;
      if (model_line_start && complete && bare == ".") {
        data_ends = true;
        expected = accepted.size();
      } else {
        model.append(model_line_start && piece.front() == '.' ? piece.substr(1) : piece);
      }
      model_line_start = complete;
    } else if (complete) {
      expected = 1;
      if (is_verb(piece, "MAIL")) ++mails;
      if (is_verb(piece, "RCPT")) ++rcpts_in_transaction;
    }

    auto request = p.feed(piece, message);
    if (closed) SDPS_FUZZ_CHECK(request == smtp::lmtp_protocol::request::close);
    if (request == smtp::lmtp_protocol::request::check_recipient) {
      const std::string& asked = p.recipient_asked();
      SDPS_FUZZ_CHECK(!asked.empty() && clean_address(asked));
      smtp::recipient_verdict v;
      if (asked.ends_with("@later")) {
        v.result = smtp::recipient_verdict::kind::unavailable;
        v.reason = "the host database is unreadable";
      } else if (!asked.ends_with("@ok")) {
        v.result = smtp::recipient_verdict::kind::unknown;
        v.reason = "no such customer host";
      }
      p.recipient_checked(v);
    } else if (request == smtp::lmtp_protocol::request::store) {
      SDPS_FUZZ_CHECK(data_ends && !accepted.empty() && p.recipients() == accepted);
      SDPS_FUZZ_CHECK(model.size() <= max_size && message == model);
      for (const std::string& to : p.recipients()) {
        SDPS_FUZZ_CHECK(to.ends_with("@ok"));
        smtp::store_outcome o;
        o.result = to.front() == 'f' ? smtp::store_outcome::kind::failed : smtp::store_outcome::kind::stored;
        o.uidl = "U";
        p.stored(o);
      }
    } else if (request == smtp::lmtp_protocol::request::close) {
      closed = true;
    }
    if (data_ends) {
      if (model.size() > max_size) SDPS_FUZZ_CHECK(request == smtp::lmtp_protocol::request::none);
      model.clear();
      message.clear();
      model_line_start = true;
    }

    const std::string replies = p.take_replies();
    lines.clear();
    const std::size_t finals = final_replies(replies, lines);
    if (closed && request != smtp::lmtp_protocol::request::close) SDPS_FUZZ_CHECK(replies.empty());
    if (data && !data_ends) {
      SDPS_FUZZ_CHECK(finals == 0);
    } else if (data_ends) {
      SDPS_FUZZ_CHECK(finals == expected);
      for (std::size_t i = 0; i < lines.size(); ++i)
        SDPS_FUZZ_CHECK(lines[i].find(sdps::printable(accepted[i], 200)) != std::string::npos);
    } else if (!closed || request == smtp::lmtp_protocol::request::close) {
      // A complete command line after an over-long one ends the skip
      // with the one 500 reply; a piece of a long line gets none.
      SDPS_FUZZ_CHECK(finals == expected);
    }
    for (const auto& t : p.take_transactions()) {
      ++logged;
      SDPS_FUZZ_CHECK(t.recipients.size() <= rcpts_in_transaction);
      rcpts_in_transaction = 0;
    }
    if (closed) break;
  }
  p.ended();
  logged += p.take_transactions().size();
  SDPS_FUZZ_CHECK(logged <= mails);
  return 0;
}
