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
/// It reads the maildrop of the nearest maildrop_source before it, or of
/// the one its `source:` setting names, like the commands module.
class extensions_module final : public sdps::module {
 public:
  /// Reads `source:` (optional). Throws config_error.
  explicit extensions_module(module_config& config);

  std::vector<command_spec> commands() const override;
  event_set events() const override { return {}; }
  void start(const registry& services) override;
  awaitable<verdict> on_command(session& s, const command& cmd) override;

 private:
  awaitable<verdict> env(session& s, const command& cmd);

  logger& log_;
  std::string instance_;
  std::string source_name_;
  std::size_t position_;
  maildrop_source* source_ = nullptr;
};

}  // namespace sdps::extensions
