#pragma once
// SDPS's own commands: LAST (RFC 1460) and *ENV.

#include <sdps/maildrop.hpp>
#include <sdps/module.hpp>

#include <string>
#include <vector>

namespace sdps::extensions {

/// The `extensions` module, in TRANSACTION:
/// - `LAST`: `+OK n`, the highest message number touched by RETR or DELE
///   since PASS or RSET (maildrop::last()).
/// - `*ENV n`: for a message that exists and is not deleted, a multi-line
///   reply of exactly four lines: `OK` (never read) or `RD` (read before),
///   where the message is held (the envelope's note: its punt), the
///   envelope sender without angle brackets (an empty line for the null
///   sender), the envelope recipient.
/// It reads the session's maildrop and marks (session::maildrop(),
/// session::marks()), like the commands module.
class extensions_module final : public sdps::module {
 public:
  /// Reads `source:` (optional). Throws config_error.
  explicit extensions_module(module_config& config);

  std::vector<command_spec> commands() const override;
  /// Checks `source:` against the chain; throws config_error.
  void start(const registry& services) override;
  awaitable<verdict> on_command(session& s, const command& cmd) override;

 private:
  awaitable<verdict> env(session& s, const command& cmd);

  logger& log_;
  std::string instance_;
  std::string source_name_;
};

}  // namespace sdps::extensions
