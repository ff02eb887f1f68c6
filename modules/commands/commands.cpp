#include "commands.hpp"

#include "pop3/arguments.hpp"
#include "pop3/update.hpp"

#include <charconv>
#include <cstdint>
#include <string_view>

namespace sdps::commands {

using pop3::choose_message;
using pop3::count_messages;
using pop3::message_choice;
using pop3::parse_decimal;
using pop3::source_setting;

namespace {

constexpr state_mask transaction = pop3_state::transaction;
constexpr state_mask authorization = pop3_state::authorization;

verdict reply(response r) { return verdict::answer(std::move(r)); }

response syntax(std::string_view usage) { return response::err("syntax: " + std::string(usage)); }

/// A number's decimal digits, without an allocation.
struct decimal {
  explicit decimal(std::uint64_t n) : end(std::to_chars(digits, digits + sizeof(digits), n).ptr) {}
  decimal(const decimal&) = delete;
  decimal& operator=(const decimal&) = delete;
  std::string_view view() const { return {digits, static_cast<std::size_t>(end - digits)}; }
  char digits[20];
  char* end;
};

/// Appends "N TEXT\r\n" (a LIST or UIDL line) to `body`.
void append_line(std::string& body, std::size_t number, std::string_view text) {
  body += decimal(number).view();
  body += ' ';
  body += text;
  body += "\r\n";
}

response unavailable(std::size_t index) {
  return response::err("[SYS/TEMP] message " + std::to_string(index + 1) +
                       " cannot be read just now, try again later");
}

}  // namespace

commands_module::commands_module(module_config& config)
    : log_(config.log()),
      instance_(config.instance()),
      server_name_(config.server().server_name()),
      source_name_(source_setting(config)) {
  config.require<maildrop_source>();
}

std::vector<command_spec> commands_module::commands() const {
  return {
      {"QUIT", authorization | transaction}, {"CAPA", authorization | transaction},
      {"STAT", transaction},                 {"LIST", transaction},
      {"RETR", transaction},                 {"TOP", transaction},
      {"UIDL", transaction},                 {"DELE", transaction},
      {"RSET", transaction},                 {"NOOP", transaction},
      {"STLS", authorization},
  };
}

void commands_module::start(const registry& services) { pop3::check_source(services, source_name_, instance_); }

void commands_module::capabilities(session& s, std::vector<std::string>& lines) const {
  // RFC 2595: only where STLS will succeed, and never once TLS is on.
  if (s.can_start_tls()) lines.push_back("STLS");
  // What is always true of this module, in either state: TOP and UIDL are
  // real in TRANSACTION, the core answers pipelined commands in order, and
  // every -ERR that a client should act on carries an RFC 2449 code.
  lines.insert(lines.end(), {"TOP", "UIDL", "PIPELINING", "RESP-CODES", "IMPLEMENTATION sdps"});
}

awaitable<verdict> commands_module::on_command(session& s, const command& cmd) {
  if (cmd.name == "CAPA") co_return capa(s, cmd);
  if (s.state() == pop3_state::authorization) {
    if (cmd.name == "STLS") {
      if (!cmd.args().empty()) co_return reply(syntax("STLS"));
      if (s.secure()) co_return reply(response::err("TLS is already in force"));
      if (!s.can_start_tls()) co_return reply(response::err("TLS is not available here"));
      s.start_tls();
      co_return reply(response::ok("begin TLS negotiation"));
    }
    if (cmd.name == "QUIT") {
      if (!cmd.args().empty()) co_return reply(syntax("QUIT"));
      co_return reply(response::ok(server_name_ + " POP3 server signing off").and_close());
    }
    co_return verdict::next();
  }
  if (s.state() != pop3_state::transaction) co_return verdict::next();
  if (cmd.name == "QUIT") {
    if (!cmd.args().empty()) co_return reply(syntax("QUIT"));
    co_return co_await quit(s);
  }
  // Hold the maildrop for the whole command, suspensions included.
  const std::shared_ptr<maildrop> drop = s.maildrop();
  if (!drop) {
    log_.error("session ", s.id(), ": ", cmd.name, " in TRANSACTION but no maildrop is open");
    co_return reply(response::err("[SYS/TEMP] maildrop not open, try again later"));
  }
  if (cmd.name == "STAT") co_return stat(s, *drop, cmd);
  if (cmd.name == "LIST") co_return list(s, *drop, cmd);
  if (cmd.name == "UIDL") co_return uidl(s, *drop, cmd);
  if (cmd.name == "RETR") co_return co_await retr(s, *drop, cmd);
  if (cmd.name == "TOP") co_return co_await top(s, *drop, cmd);
  if (cmd.name == "DELE") co_return dele(s, *drop, cmd);
  if (cmd.name == "RSET") co_return rset(s, *drop, cmd);
  if (cmd.name == "NOOP") {
    if (!cmd.args().empty()) co_return reply(syntax("NOOP"));
    co_return reply(response::ok());
  }
  co_return verdict::next();
}

awaitable<verdict> commands_module::quit(session& s) {
  // The connection closes either way; what was not removed stays for the
  // next session.
  const pop3::update_outcome done = co_await pop3::run_update(s, log_);
  const std::size_t marked = done.marked;
  const removal_result& result = done.result;
  if (result.failed > 0)
    co_return reply(response::err("[SYS/TEMP] " + std::to_string(result.failed) + " of " + count_messages(marked) +
                                  " marked deleted could not be removed, try again later")
                        .and_close());
  co_return reply(response::ok(server_name_ + " POP3 server signing off (" + count_messages(result.removed) +
                               " removed)")
                      .and_close());
}

verdict commands_module::capa(session& s, const command& cmd) const {
  if (!cmd.args().empty()) return reply(syntax("CAPA"));
  std::string body;
  for (const std::string& line : s.capabilities()) body += line + "\r\n";
  return reply(response::ok("capability list follows").with_body(std::move(body)));
}

verdict commands_module::stat(session& s, maildrop& drop, const command& cmd) const {
  if (!cmd.args().empty()) return reply(syntax("STAT"));
  const auto [live, octets] = live_totals(drop, s.marks());
  return reply(response::ok(std::to_string(live) + " " + std::to_string(octets)));
}

verdict commands_module::list(session& s, maildrop& drop, const command& cmd) const {
  const auto args = cmd.args();
  const marks& marked = s.marks();
  if (args.size() > 1) return reply(syntax("LIST [msg]"));
  if (args.size() == 1) {
    message_choice chosen = choose_message(drop, marked, args[0], "LIST [msg]");
    if (chosen.error) return reply(std::move(*chosen.error));
    return reply(
        response::ok(std::to_string(chosen.index + 1) + " " + std::to_string(drop.info(chosen.index).size)));
  }
  std::string body;
  body.reserve(drop.count() * 16);
  for (std::size_t i = 0; i < drop.count(); ++i)
    if (!marked.deleted(i)) append_line(body, i + 1, decimal(drop.info(i).size).view());
  const auto [live, octets] = live_totals(drop, marked);
  return reply(response::ok(count_messages(live) + " (" + std::to_string(octets) + " octets)").with_body(std::move(body)));
}

verdict commands_module::uidl(session& s, maildrop& drop, const command& cmd) const {
  const auto args = cmd.args();
  const marks& marked = s.marks();
  if (args.size() > 1) return reply(syntax("UIDL [msg]"));
  if (args.size() == 1) {
    message_choice chosen = choose_message(drop, marked, args[0], "UIDL [msg]");
    if (chosen.error) return reply(std::move(*chosen.error));
    return reply(response::ok(std::to_string(chosen.index + 1) + " " + drop.info(chosen.index).uidl));
  }
  // One buffer for the whole listing: 100,000 lines make no allocation each.
  std::string body;
  body.reserve(drop.count() * (8 + (drop.count() > 0 ? drop.info(0).uidl.size() : 0)));
  for (std::size_t i = 0; i < drop.count(); ++i)
    if (!marked.deleted(i)) append_line(body, i + 1, drop.info(i).uidl);
  return reply(response::ok("unique-id listing follows").with_body(std::move(body)));
}

awaitable<verdict> commands_module::retr(session& s, maildrop& drop, const command& cmd) {
  const auto args = cmd.args();
  if (args.size() != 1) co_return reply(syntax("RETR msg"));
  message_choice chosen = choose_message(drop, s.marks(), args[0], "RETR msg");
  if (chosen.error) co_return reply(std::move(*chosen.error));
  const std::size_t index = chosen.index;
  std::unique_ptr<body_source> body;
  try {
    // Marked read as it is opened: a client that drops the connection
    // half way has still been sent (part of) it.
    body = co_await drop.retrieve(index, retrieval::whole_message());
  } catch (const spool_error& e) {
    s.log().warning("RETR ", index + 1, " (", drop.info(index).punt, "): ", e.what());
    co_return reply(unavailable(index));
  }
  if (!body) {
    log_.error("session ", s.id(), ": RETR ", index + 1, ": the maildrop returned no message");
    co_return reply(unavailable(index));
  }
  s.marks().touch(index);
  // What follows, which is not the LIST size when SMTP took the message
  // and a dummy notice is sent instead.
  const std::uint64_t octets = body->size().value_or(drop.info(index).size);
  co_return reply(response::ok(std::to_string(octets) + " octets").with_body(std::move(body)));
}

awaitable<verdict> commands_module::top(session& s, maildrop& drop, const command& cmd) {
  const auto args = cmd.args();
  if (args.size() != 2) co_return reply(syntax("TOP msg n"));
  message_choice chosen = choose_message(drop, s.marks(), args[0], "TOP msg n");
  if (chosen.error) co_return reply(std::move(*chosen.error));
  const auto lines = parse_decimal(args[1]);
  if (!lines) co_return reply(response::err("invalid number of lines (syntax: TOP msg n)"));
  const std::size_t index = chosen.index;
  std::unique_ptr<body_source> body;
  try {
    body = co_await drop.retrieve(index, retrieval::top(*lines));
  } catch (const spool_error& e) {
    s.log().warning("TOP ", index + 1, " (", drop.info(index).punt, "): ", e.what());
    co_return reply(unavailable(index));
  }
  if (!body) {
    log_.error("session ", s.id(), ": TOP ", index + 1, ": the maildrop returned no message");
    co_return reply(unavailable(index));
  }
  // TOP neither marks the message read nor counts for LAST.
  co_return reply(response::ok("top of message follows").with_body(std::move(body)));
}

verdict commands_module::dele(session& s, maildrop& drop, const command& cmd) const {
  const auto args = cmd.args();
  if (args.size() != 1) return reply(syntax("DELE msg"));
  message_choice chosen = choose_message(drop, s.marks(), args[0], "DELE msg");
  if (chosen.error) return reply(std::move(*chosen.error));
  s.marks().mark_deleted(chosen.index);
  s.marks().touch(chosen.index);
  return reply(response::ok("message " + std::to_string(chosen.index + 1) + " deleted"));
}

verdict commands_module::rset(session& s, maildrop& drop, const command& cmd) const {
  if (!cmd.args().empty()) return reply(syntax("RSET"));
  s.marks().reset();
  const auto [live, octets] = live_totals(drop, s.marks());
  return reply(response::ok("maildrop has " + count_messages(live) + " (" + std::to_string(octets) + " octets)"));
}

}  // namespace sdps::commands
