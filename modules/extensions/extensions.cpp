#include "extensions.hpp"

#include "pop3/arguments.hpp"

namespace sdps::extensions {

namespace {

/// One *ENV line: whatever the spool holds, it cannot break the reply into
/// more lines.
std::string one_line(std::string_view text) {
  std::string out(text);
  for (char& c : out)
    if (c == '\r' || c == '\n' || c == '\0') c = ' ';
  return out;
}

/// The envelope sender as *ENV line 3: no angle brackets, empty for <>.
std::string bare_address(std::string_view from) {
  if (from.size() >= 2 && from.front() == '<' && from.back() == '>') from = from.substr(1, from.size() - 2);
  return one_line(from);
}

}  // namespace

extensions_module::extensions_module(module_config& config)
    : log_(config.log()),
      instance_(config.instance()),
      source_name_(pop3::source_setting(config)) {
  config.require<maildrop_source>();
}

std::vector<command_spec> extensions_module::commands() const {
  return {{"LAST", pop3_state::transaction}, {"*ENV", pop3_state::transaction}};
}

void extensions_module::start(const registry& services) { pop3::check_source(services, source_name_, instance_); }

awaitable<verdict> extensions_module::on_command(session& s, const command& cmd) {
  if (cmd.name == "*ENV") co_return co_await env(s, cmd);
  if (cmd.name != "LAST") co_return verdict::next();
  if (!cmd.args().empty()) co_return verdict::answer(response::err("syntax: LAST"));
  co_return verdict::answer(response::ok(std::to_string(s.marks().last())));
}

awaitable<verdict> extensions_module::env(session& s, const command& cmd) {
  const auto args = cmd.args();
  if (args.size() != 1) co_return verdict::answer(response::err("syntax: *ENV msg"));
  const std::shared_ptr<maildrop> drop = s.maildrop();
  if (!drop) {
    log_.error("session ", s.id(), ": *ENV in TRANSACTION but no maildrop is open");
    co_return verdict::answer(response::err("[SYS/TEMP] maildrop not open, try again later"));
  }
  pop3::message_choice chosen = pop3::choose_message(*drop, s.marks(), args[0], "*ENV msg");
  if (chosen.error) co_return verdict::answer(std::move(*chosen.error));
  const std::size_t index = chosen.index;
  sdps::envelope envelope;
  try {
    envelope = co_await drop->envelope(index);
  } catch (const spool_error& e) {
    s.log().warning("*ENV ", index + 1, " (", drop->info(index).punt, "): ", e.what());
    co_return verdict::answer(response::err("[SYS/TEMP] the envelope of message " + std::to_string(index + 1) +
                                            " cannot be read just now, try again later"));
  }
  const std::string note = envelope.note.empty() ? drop->info(index).punt : envelope.note;
  std::string body;
  body += envelope.read ? "RD\r\n" : "OK\r\n";
  body += one_line(note) + "\r\n";
  body += bare_address(envelope.from) + "\r\n";
  body += one_line(envelope.to) + "\r\n";
  co_return verdict::answer(response::ok("envelope follows").with_body(std::move(body)));
}

}  // namespace sdps::extensions
