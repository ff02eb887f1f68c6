#include "backend_listing.hpp"

#include "pop3/arguments.hpp"
#include "pop3/update.hpp"
#include "backend_proto/protocol.hpp"

namespace sdps::backend {

backend_listing::backend_listing(module_config& config)
    : log_(config.log()),
      instance_(config.instance()),
      source_name_(pop3::source_setting(config)) {}

std::vector<command_spec> backend_listing::commands() const {
  const state_mask transaction = pop3_state::transaction;
  return {{"XLIST", transaction},
          {"XREAD", transaction},
          {std::string(backend_proto::update_command), transaction},
          {std::string(backend_proto::reset_command), transaction}};
}

void backend_listing::capabilities(session&, std::vector<std::string>& lines) const {
  lines.emplace_back(backend_proto::reset_capability);
}

void backend_listing::start(const registry& services) { pop3::check_source(services, source_name_, instance_); }

awaitable<verdict> backend_listing::on_command(session& s, const command& cmd) {
  const std::shared_ptr<maildrop> drop = s.maildrop();
  if (!drop) {
    log_.error("session ", s.id(), ": ", cmd.name, " in TRANSACTION but no maildrop is open");
    co_return verdict::answer(response::err("[SYS/TEMP] maildrop not open, try again later"));
  }
  const auto args = cmd.args();
  if (cmd.name == "XLIST") {
    if (!args.empty()) co_return verdict::answer(response::err("syntax: XLIST"));
    std::string body;
    body.reserve(drop->count() * 64);
    const marks& marked = s.marks();
    for (std::size_t i = 0; i < drop->count(); ++i) {
      if (marked.deleted(i)) continue;
      const message_info& info = drop->info(i);
      body += backend_proto::format_listing({i + 1, info.uidl, info.size, info.arrival});
      body += "\r\n";
    }
    const auto totals = live_totals(*drop, marked);
    const std::size_t live = totals.first;
    const std::uint64_t octets = totals.second;
    co_return verdict::answer(
        response::ok(pop3::count_messages(live) + " (" + std::to_string(octets) + " octets)")
            .with_body(std::move(body)));
  }
  if (cmd.name == "XREAD") {
    if (args.size() != 1) co_return verdict::answer(response::err("syntax: XREAD msg"));
    pop3::message_choice chosen = pop3::choose_message(*drop, s.marks(), args[0], "XREAD msg");
    if (chosen.error) co_return verdict::answer(std::move(*chosen.error));
    const std::size_t index = chosen.index;
    try {
      // The read flag is set as the message is opened; nothing of it is sent.
      co_await drop->retrieve(index, retrieval{0, true});
    } catch (const spool_error& e) {
      s.log().warning("XREAD ", index + 1, ": ", e.what());
      co_return verdict::answer(response::err("[SYS/TEMP] message " + std::to_string(index + 1) +
                                              " cannot be marked read just now, try again later"));
    }
    co_return verdict::answer(response::ok("message " + std::to_string(index + 1) + " marked read"));
  }
  if (cmd.name == backend_proto::update_command) {
    const bool keep = args.size() == 1 && backend_proto::same_word(args[0], backend_proto::keep_argument);
    if (!args.empty() && !keep) co_return verdict::answer(response::err("syntax: XUPDATE [KEEP]"));
    if (!keep) {
      // QUIT's UPDATE, reported as counts: the session ends here either way.
      const pop3::update_outcome done = co_await pop3::run_update(s, log_);
      co_return verdict::answer(response::ok(backend_proto::format_update(done.result)).and_close());
    }
    // The same removal, then the login ends and the link stays: its locks
    // are released (the logout event) before the front end reads the counts.
    const pop3::update_outcome done = co_await pop3::remove_marked(s, log_);
    s.end_login();
    co_return verdict::answer(response::ok(backend_proto::format_update(done.result)));
  }
  if (cmd.name == backend_proto::reset_command) {
    if (!args.empty()) co_return verdict::answer(response::err("syntax: XRESET"));
    // No UPDATE: what was marked deleted stays in the spool.
    const std::string who = s.login() ? s.login()->display() : std::string("the login");
    s.end_login();
    co_return verdict::answer(response::ok(who + " logged out, nothing removed; the connection stays open"));
  }
  co_return verdict::next();
}

}  // namespace sdps::backend
