#include "commands.hpp"

#include "pop3/arguments.hpp"
#include "pop3/update.hpp"

#include <charconv>
#include <cstdint>
#include <string_view>

namespace sdps::commands {

using pop3::choose_message;
using pop3::count_messages;
using pop3::find_maildrop_source;
using pop3::message_choice;
using pop3::parse_decimal;
using pop3::source_setting;

namespace {

constexpr state_mask transaction = static_cast<state_mask>(pop3_state::transaction);
constexpr state_mask authorization = static_cast<state_mask>(pop3_state::authorization);

verdict reply(response r) { return verdict::answer(std::move(r)); }

response syntax(std::string_view usage) { return response::err("syntax: " + std::string(usage)); }

/// "finchley", "finchley and docklands", "a, b and c".
std::string join_names(const std::vector<std::string>& names) {
  std::string out;
  for (std::size_t i = 0; i < names.size(); ++i) {
    if (i > 0) out += i + 1 == names.size() ? " and " : ", ";
    out += names[i];
  }
  return out;
}

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
      source_name_(source_setting(config)),
      position_(config.position()) {}

std::vector<command_spec> commands_module::commands() const {
  return {
      {"PASS", authorization},          {"QUIT", authorization | transaction}, {"CAPA", authorization | transaction},
      {"STAT", transaction},            {"LIST", transaction},                 {"RETR", transaction},
      {"TOP", transaction},             {"UIDL", transaction},                 {"DELE", transaction},
      {"RSET", transaction},            {"NOOP", transaction},                 {"STLS", authorization},
  };
}

void commands_module::start(const registry& services) {
  source_ = find_maildrop_source(services, source_name_, position_, instance_);
}

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
    if (cmd.name == "PASS") co_return co_await pass(s);
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
  const std::shared_ptr<maildrop> drop = source_->current(s);
  if (!drop) {
    log_.error("session ", s.id(), ": ", cmd.name, " in TRANSACTION but no maildrop is open");
    co_return reply(response::err("[SYS/TEMP] maildrop not open, try again later"));
  }
  if (cmd.name == "STAT") co_return stat(*drop, cmd);
  if (cmd.name == "LIST") co_return list(*drop, cmd);
  if (cmd.name == "UIDL") co_return uidl(*drop, cmd);
  if (cmd.name == "RETR") co_return co_await retr(s, *drop, cmd);
  if (cmd.name == "TOP") co_return co_await top(s, *drop, cmd);
  if (cmd.name == "DELE") co_return dele(*drop, cmd);
  if (cmd.name == "RSET") co_return rset(*drop, cmd);
  if (cmd.name == "NOOP") {
    if (!cmd.args().empty()) co_return reply(syntax("NOOP"));
    co_return reply(response::ok());
  }
  co_return verdict::next();
}

awaitable<verdict> commands_module::pass(session& s) {
  if (!s.login()) {
    // Only a chain without an auth module before this one gets here.
    log_.error("session ", s.id(), ": PASS reached ", instance_, " without a login; is auth before it?");
    co_return reply(response::err("[AUTH] authentication failed"));
  }
  std::shared_ptr<maildrop> drop;
  try {
    drop = co_await source_->open(s);
  } catch (const spool_error& e) {
    log_.warning("session ", s.id(), ": cannot open the maildrop of ", s.login()->display(), ": ", e.what());
  }
  if (!drop) co_return reply(response::err("[SYS/TEMP] your mail cannot be read just now, try again later"));
  // PASS sets LAST to 0 and starts with nothing deleted (RFC 1460), even on
  // a maildrop kept from an earlier attempt.
  drop->reset();
  // (No structured bindings in coroutines: docs/toolchain.md.)
  const auto totals = drop->live_totals();
  const std::size_t live = totals.first;
  const std::uint64_t octets = totals.second;
  std::string text =
      s.login()->display() + " has " + count_messages(live) + " (" + std::to_string(octets) + " octets)";
  const std::vector<std::string> missing = drop->missing();
  if (!missing.empty()) text += "; mail on " + join_names(missing) + " is unavailable";
  s.enter(pop3_state::transaction);
  s.log().info(s.login()->display(), " logged in: ", live, " messages, ", octets, " octets",
               missing.empty() ? "" : ", punts missing: ", join_names(missing));
  co_return reply(response::ok(std::move(text)));
}

awaitable<verdict> commands_module::quit(session& s) {
  // The connection closes either way; what was not removed stays for the
  // next session.
  const pop3::update_outcome done = co_await pop3::run_update(s, source_->current(s), log_);
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

verdict commands_module::stat(maildrop& drop, const command& cmd) const {
  if (!cmd.args().empty()) return reply(syntax("STAT"));
  const auto [live, octets] = drop.live_totals();
  return reply(response::ok(std::to_string(live) + " " + std::to_string(octets)));
}

verdict commands_module::list(maildrop& drop, const command& cmd) const {
  const auto args = cmd.args();
  if (args.size() > 1) return reply(syntax("LIST [msg]"));
  if (args.size() == 1) {
    message_choice chosen = choose_message(drop, args[0], "LIST [msg]");
    if (chosen.error) return reply(std::move(*chosen.error));
    return reply(
        response::ok(std::to_string(chosen.index + 1) + " " + std::to_string(drop.info(chosen.index).size)));
  }
  std::string body;
  body.reserve(drop.count() * 16);
  for (std::size_t i = 0; i < drop.count(); ++i)
    if (!drop.deleted(i)) append_line(body, i + 1, decimal(drop.info(i).size).view());
  const auto [live, octets] = drop.live_totals();
  return reply(response::ok(count_messages(live) + " (" + std::to_string(octets) + " octets)").with_body(std::move(body)));
}

verdict commands_module::uidl(maildrop& drop, const command& cmd) const {
  const auto args = cmd.args();
  if (args.size() > 1) return reply(syntax("UIDL [msg]"));
  if (args.size() == 1) {
    message_choice chosen = choose_message(drop, args[0], "UIDL [msg]");
    if (chosen.error) return reply(std::move(*chosen.error));
    return reply(response::ok(std::to_string(chosen.index + 1) + " " + drop.info(chosen.index).uidl));
  }
  // One buffer for the whole listing: 100,000 lines make no allocation each.
  std::string body;
  body.reserve(drop.count() * (8 + (drop.count() > 0 ? drop.info(0).uidl.size() : 0)));
  for (std::size_t i = 0; i < drop.count(); ++i)
    if (!drop.deleted(i)) append_line(body, i + 1, drop.info(i).uidl);
  return reply(response::ok("unique-id listing follows").with_body(std::move(body)));
}

awaitable<verdict> commands_module::retr(session& s, maildrop& drop, const command& cmd) {
  const auto args = cmd.args();
  if (args.size() != 1) co_return reply(syntax("RETR msg"));
  message_choice chosen = choose_message(drop, args[0], "RETR msg");
  if (chosen.error) co_return reply(std::move(*chosen.error));
  const std::size_t index = chosen.index;
  std::unique_ptr<body_source> body;
  try {
    body = co_await drop.retrieve(index, std::nullopt);
    // Marked read once the message could be opened: a client that drops
    // the connection half way has still been sent (part of) it.
    co_await drop.mark_read(index);
  } catch (const spool_error& e) {
    s.log().warning("RETR ", index + 1, " (", drop.info(index).punt, "): ", e.what());
    co_return reply(unavailable(index));
  }
  if (!body) {
    log_.error("session ", s.id(), ": RETR ", index + 1, ": the maildrop returned no message");
    co_return reply(unavailable(index));
  }
  drop.touch(index);
  // What follows, which is not the LIST size when SMTP took the message
  // and a dummy notice is sent instead.
  const std::uint64_t octets = body->size().value_or(drop.info(index).size);
  co_return reply(response::ok(std::to_string(octets) + " octets").with_body(std::move(body)));
}

awaitable<verdict> commands_module::top(session& s, maildrop& drop, const command& cmd) {
  const auto args = cmd.args();
  if (args.size() != 2) co_return reply(syntax("TOP msg n"));
  message_choice chosen = choose_message(drop, args[0], "TOP msg n");
  if (chosen.error) co_return reply(std::move(*chosen.error));
  const auto lines = parse_decimal(args[1]);
  if (!lines) co_return reply(response::err("invalid number of lines (syntax: TOP msg n)"));
  const std::size_t index = chosen.index;
  std::unique_ptr<body_source> body;
  try {
    body = co_await drop.retrieve(index, *lines);
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

verdict commands_module::dele(maildrop& drop, const command& cmd) const {
  const auto args = cmd.args();
  if (args.size() != 1) return reply(syntax("DELE msg"));
  message_choice chosen = choose_message(drop, args[0], "DELE msg");
  if (chosen.error) return reply(std::move(*chosen.error));
  drop.mark_deleted(chosen.index);
  drop.touch(chosen.index);
  return reply(response::ok("message " + std::to_string(chosen.index + 1) + " deleted"));
}

verdict commands_module::rset(maildrop& drop, const command& cmd) const {
  if (!cmd.args().empty()) return reply(syntax("RSET"));
  drop.reset();
  const auto [live, octets] = drop.live_totals();
  return reply(response::ok("maildrop has " + count_messages(live) + " (" + std::to_string(octets) + " octets)"));
}

}  // namespace sdps::commands
