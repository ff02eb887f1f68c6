#pragma once
// The RFC 1939 commands and RFC 2449 CAPA over a session's maildrop.

#include <sdps/maildrop.hpp>
#include <sdps/module.hpp>

#include <string>
#include <vector>

namespace sdps::commands {

/// The `commands` module: answers PASS (once the modules before it have
/// verified the password, locked and opened the snapshot), the
/// TRANSACTION commands STAT, LIST, RETR, TOP, UIDL, DELE, RSET and NOOP,
/// QUIT in both states, and CAPA. It reads the maildrop of the nearest
/// maildrop_source before it in the chain, or of the one its `source:`
/// setting names.
///
/// Every call runs on the session's event loop; the instance keeps no per-session
/// state of its own (the maildrop holds the session's marks).
class commands_module final : public sdps::module {
 public:
  /// Reads the settings (`source:`, optional). Throws config_error.
  explicit commands_module(module_config& config);

  std::vector<command_spec> commands() const override;
  event_set events() const override { return {}; }
  /// Finds the maildrop_source; throws config_error if there is none.
  void start(const registry& services) override;
  awaitable<verdict> on_command(session& s, const command& cmd) override;
  /// TOP, UIDL, PIPELINING, RESP-CODES and IMPLEMENTATION, in both states.
  void capabilities(session& s, std::vector<std::string>& lines) const override;

 private:
  awaitable<verdict> pass(session& s);
  awaitable<verdict> quit(session& s);
  awaitable<verdict> retr(session& s, maildrop& drop, const command& cmd);
  awaitable<verdict> top(session& s, maildrop& drop, const command& cmd);
  verdict capa(session& s, const command& cmd) const;
  verdict stat(maildrop& drop, const command& cmd) const;
  verdict list(maildrop& drop, const command& cmd) const;
  verdict uidl(maildrop& drop, const command& cmd) const;
  verdict dele(maildrop& drop, const command& cmd) const;
  verdict rset(maildrop& drop, const command& cmd) const;

  logger& log_;
  std::string instance_;
  std::string server_name_;
  std::string source_name_;
  std::size_t position_;
  maildrop_source* source_ = nullptr;
};

}  // namespace sdps::commands
