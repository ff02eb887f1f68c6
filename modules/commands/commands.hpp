#pragma once
// The RFC 1939 commands and RFC 2449 CAPA over a session's maildrop.

#include <sdps/maildrop.hpp>
#include <sdps/module.hpp>

#include <string>
#include <vector>

namespace sdps::commands {

/// The `commands` module: answers the TRANSACTION commands STAT, LIST,
/// RETR, TOP, UIDL, DELE, RSET and NOOP, QUIT in both states, STLS and
/// CAPA, over the session's maildrop and marks (session::maildrop(),
/// session::marks(): the core opens the maildrop at login).
///
/// Every call runs on the session's event loop; the instance keeps no
/// per-session state of its own.
class commands_module final : public sdps::module {
 public:
  /// Reads the settings (`source:`, optional). Throws config_error.
  explicit commands_module(module_config& config);

  std::vector<command_spec> commands() const override;
  /// Checks `source:` against the chain; throws config_error.
  void start(const registry& services) override;
  awaitable<verdict> on_command(session& s, const command& cmd) override;
  /// TOP, UIDL, PIPELINING, RESP-CODES and IMPLEMENTATION, in both states.
  void capabilities(session& s, std::vector<std::string>& lines) const override;

 private:
  awaitable<verdict> quit(session& s);
  awaitable<verdict> retr(session& s, maildrop& drop, const command& cmd);
  awaitable<verdict> top(session& s, maildrop& drop, const command& cmd);
  verdict capa(session& s, const command& cmd) const;
  verdict stat(session& s, maildrop& drop, const command& cmd) const;
  verdict list(session& s, maildrop& drop, const command& cmd) const;
  verdict uidl(session& s, maildrop& drop, const command& cmd) const;
  verdict dele(session& s, maildrop& drop, const command& cmd) const;
  verdict rset(session& s, maildrop& drop, const command& cmd) const;

  logger& log_;
  std::string instance_;
  std::string server_name_;
  std::string source_name_;
};

}  // namespace sdps::commands
