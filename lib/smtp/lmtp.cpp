#include "smtp/lmtp.hpp"

#include <sdps/log.hpp>

#include <charconv>
#include <initializer_list>

namespace sdps::smtp {

namespace {

std::string upper(std::string_view text) {
  std::string out(text);
  for (char& c : out)
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
  return out;
}

/// The pieces, joined. (Not `"literal" + std::string(...)`: GCC 12 warns
/// falsely on that at -O3, docs/toolchain.md.)
std::string join(std::initializer_list<std::string_view> pieces) {
  std::string out;
  for (std::string_view p : pieces) out += p;
  return out;
}

/// "<address>" for replies and the log: printable, cut where it is absurd.
std::string bracketed(std::string_view address) {
  std::string out = "<";
  out += printable(address, 200);
  out += '>';
  return out;
}

}  // namespace

lmtp_protocol::lmtp_protocol(limits l) : limits_(std::move(l)) {}

std::string lmtp_protocol::greeting() const {
  std::string out = "220 ";
  out += limits_.server_name;
  out += " LMTP sdps ready\r\n";
  return out;
}

void lmtp_protocol::reply(std::string_view line) {
  replies_ += line;
  replies_ += "\r\n";
}

lmtp_protocol::request lmtp_protocol::feed(std::string_view piece, std::string& message) {
  switch (phase_) {
    case phase::closed:
      return request::close;
    case phase::data:
      piece_.clear();
      if (unstuffer_.feed(piece, piece_)) return end_of_data();
      size_ += piece_.size();
      // Past the limit the rest is read and dropped, to stay in step.
      if (size_ <= limits_.max_message_size && !spool_failed_) message += piece_;
      return request::none;
    case phase::skipping_long_line:
      if (!piece.empty() && piece.back() == '\n') {
        phase_ = phase::command;
        reply("500 5.5.2 Line too long");
      }
      return request::none;
    case phase::command:
      break;
  }
  if (piece.empty() || piece.back() != '\n') {  // longer than a command line may be
    phase_ = phase::skipping_long_line;
    return request::none;
  }
  return command(piece);
}

lmtp_protocol::request lmtp_protocol::command(std::string_view line) {
  const smtp::command cmd = parse_command(line);
  if (cmd.verb == "LHLO") {
    lhlo(cmd.argument);
  } else if (cmd.verb == "HELO" || cmd.verb == "EHLO") {
    reply("500 5.5.1 This is LMTP: say LHLO");
  } else if (cmd.verb == "MAIL") {
    mail(cmd.argument);
  } else if (cmd.verb == "RCPT") {
    return rcpt(cmd.argument);
  } else if (cmd.verb == "DATA") {
    if (!cmd.argument.empty())
      reply("501 5.5.4 DATA takes no argument");
    else
      data_command();
  } else if (cmd.verb == "RSET") {
    finish_transaction();
    reply("250 2.0.0 Ok");
  } else if (cmd.verb == "NOOP") {
    reply("250 2.0.0 Ok");
  } else if (cmd.verb == "VRFY") {
    reply("252 2.5.0 Send some mail, I'll try my best");
  } else if (cmd.verb == "QUIT") {
    finish_transaction();
    reply("221 2.0.0 Bye");
    phase_ = phase::closed;
    return request::close;
  } else {
    reply("500 5.5.2 Command not recognised");
  }
  return request::none;
}

void lmtp_protocol::lhlo(const std::string& argument) {
  if (argument.empty()) return reply("501 5.5.4 LHLO needs a name");
  greeted_ = true;
  finish_transaction();
  reply(join({"250-", limits_.server_name}));
  reply("250-PIPELINING");
  reply("250-ENHANCEDSTATUSCODES");
  reply("250-8BITMIME");
  reply("250-SMTPUTF8");
  reply(join({"250 SIZE ", std::to_string(limits_.max_message_size)}));
}

void lmtp_protocol::mail(const std::string& argument) {
  if (!greeted_) return reply("503 5.5.1 Say LHLO first");
  if (in_transaction_) return reply("503 5.5.1 Nested MAIL command");
  const auto path = parse_path(argument, "FROM");
  if (!path) return reply("501 5.5.4 Syntax: MAIL FROM:<address>");
  for (const auto& param : path->params) {
    const std::string& value = param.second;
    if (param.first == "SIZE") {
      std::uint64_t size = 0;
      const auto parsed = std::from_chars(value.data(), value.data() + value.size(), size);
      if (value.empty() || parsed.ec != std::errc() || parsed.ptr != value.data() + value.size())
        return reply("501 5.5.4 Bad SIZE");
      if (size > limits_.max_message_size) return reply("552 5.3.4 Message too big for the spool");
    } else if (param.first == "BODY") {
      const std::string body = upper(value);
      // RFC 3030: BINARYMIME needs CHUNKING (BDAT), which is not offered.
      if (body != "7BIT" && body != "8BITMIME")
        return reply(join({"555 5.5.4 BODY=", printable(value, 40), " is not offered (7BIT or 8BITMIME)"}));
    } else if (param.first == "SMTPUTF8") {
      if (!value.empty()) return reply("501 5.5.4 SMTPUTF8 takes no value");
    } else {
      return reply(join({"555 5.5.4 Unsupported parameter ", printable(param.first, 40)}));
    }
  }
  if (limits_.usable_sender && !limits_.usable_sender(path->address))
    return reply("553 5.1.7 The sender address is not usable");
  in_transaction_ = true;
  from_ = path->address;
  log_ = lmtp_transaction{};
  log_.from = from_;
  reply("250 2.1.0 Ok");
}

lmtp_protocol::request lmtp_protocol::rcpt(const std::string& argument) {
  if (!in_transaction_) {
    reply("503 5.5.1 Need MAIL first");
    return request::none;
  }
  const auto path = parse_path(argument, "TO");
  if (!path || path->address.empty()) {
    log_.recipients.emplace_back(printable(argument, 200), "refused: 501 syntax");
    reply("501 5.5.4 Syntax: RCPT TO:<address>");
    return request::none;
  }
  if (to_.size() >= limits_.max_recipients) {
    log_.recipients.emplace_back(bracketed(path->address), "deferred: 452 too many recipients");
    reply("452 4.5.3 Too many recipients");
    return request::none;
  }
  if (!path->params.empty()) {
    const std::string text = join({"555 5.5.4 Unsupported parameter ", printable(path->params.front().first, 40)});
    log_.recipients.emplace_back(bracketed(path->address), join({"refused: ", text}));
    reply(text);
    return request::none;
  }
  asked_ = path->address;
  return request::check_recipient;
}

void lmtp_protocol::recipient_checked(const recipient_verdict& verdict) {
  switch (verdict.result) {
    case recipient_verdict::kind::accepted:
      to_.push_back(asked_);
      logged_at_.push_back(log_.recipients.size());
      log_.recipients.emplace_back(bracketed(asked_), "not delivered");
      reply("250 2.1.5 Ok");
      break;
    case recipient_verdict::kind::unknown: {
      const std::string text = join({"550 5.1.1 ", bracketed(asked_), ": ", printable(verdict.reason, 200)});
      log_.recipients.emplace_back(bracketed(asked_), join({"refused: ", text}));
      reply(text);
      break;
    }
    case recipient_verdict::kind::unavailable:
      log_.recipients.emplace_back(bracketed(asked_), join({"deferred: 451 ", printable(verdict.reason, 200)}));
      reply("451 4.3.0 Temporary failure, try again later");
      break;
  }
  asked_.clear();
}

void lmtp_protocol::data_command() {
  if (!in_transaction_) return reply("503 5.5.1 Need MAIL first");
  if (to_.empty()) return reply("503 5.5.1 Need RCPT first");
  phase_ = phase::data;
  size_ = 0;
  unstuffer_ = dot_unstuffer{};
  spool_failed_ = false;
  reply("354 End data with <CR><LF>.<CR><LF>");
}

void lmtp_protocol::spool_failed() { spool_failed_ = true; }

lmtp_protocol::request lmtp_protocol::end_of_data() {
  phase_ = phase::command;
  log_.data = true;
  log_.size = size_;
  if (size_ > limits_.max_message_size || spool_failed_) {
    for (std::size_t i = 0; i < to_.size(); ++i) {
      const bool too_big = size_ > limits_.max_message_size;
      const std::string text = too_big ? join({"552 5.3.4 ", bracketed(to_[i]), ": message too big for the spool"})
                                       : join({"451 4.3.0 ", bracketed(to_[i]), ": temporary failure, try again later"});
      log_.recipients[logged_at_[i]].second = join({too_big ? "refused: " : "deferred: ", text});
      reply(text);
    }
    finish_transaction();
    return request::none;
  }
  answered_ = 0;
  return request::store;
}

void lmtp_protocol::stored(const store_outcome& outcome) {
  if (answered_ >= to_.size()) return;
  const std::string address = bracketed(to_[answered_]);
  std::string& logged = log_.recipients[logged_at_[answered_]].second;
  switch (outcome.result) {
    case store_outcome::kind::stored:
      reply(join({"250 2.0.0 ", address, " ", outcome.uidl, " stored"}));
      logged = join({"stored ", outcome.uidl});
      if (!outcome.detail.empty()) logged.append(" ").append(outcome.detail);
      break;
    case store_outcome::kind::refused: {
      const std::string text = join({"554 5.6.0 ", address, ": ", printable(outcome.detail, 100)});
      logged = join({"refused: ", text});
      reply(text);
      break;
    }
    case store_outcome::kind::failed:
      logged = join({"deferred: 451 ", printable(outcome.detail, 200)});
      reply(join({"451 4.3.0 ", address, ": temporary failure, try again later"}));
      break;
  }
  if (++answered_ == to_.size()) finish_transaction();
}

void lmtp_protocol::timed_out() {
  if (phase_ == phase::closed) return;
  finish_transaction();
  reply(join({"421 4.4.2 ", limits_.server_name, " Timeout waiting for the client, closing the connection"}));
  phase_ = phase::closed;
}

void lmtp_protocol::ended() {
  finish_transaction();
  phase_ = phase::closed;
}

void lmtp_protocol::finish_transaction() {
  if (in_transaction_) finished_.push_back(std::move(log_));
  reset();
}

void lmtp_protocol::reset() {
  in_transaction_ = false;
  from_.clear();
  to_.clear();
  logged_at_.clear();
  log_ = lmtp_transaction{};
  asked_.clear();
  answered_ = 0;
  size_ = 0;
}

}  // namespace sdps::smtp
