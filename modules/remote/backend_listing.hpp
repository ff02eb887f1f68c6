#pragma once
// The back end's commands for front ends: XLIST, XREAD and XUPDATE.

#include <sdps/maildrop.hpp>
#include <sdps/module.hpp>

#include <string>
#include <vector>

namespace sdps::backend {

/// The `backend_listing` module, in a back end's chain after `commands`.
/// In TRANSACTION:
///
/// - `XLIST`: one multi-line reply listing every message not marked
///   deleted, `NUMBER UIDL SIZE ARRIVAL` per line (ARRIVAL in microseconds
///   since the epoch): all a front end needs at login, in one round trip
///   whatever the maildrop's size;
/// - `XREAD n`: sets message n's read flag without sending it;
/// - `XUPDATE`: QUIT for a front end: UPDATE removes the messages marked
///   deleted, the reply `+OK REMOVED FAILED` counts them
///   (backend_proto::format_update), and the session ends.
///
/// It reads the maildrop of the nearest maildrop_source before it (or the
/// one `source:` names). No per-session state. All calls on the session's event loop.
class backend_listing final : public sdps::module {
 public:
  explicit backend_listing(module_config& config);

  std::vector<command_spec> commands() const override;
  event_set events() const override { return {}; }
  void start(const registry& services) override;
  awaitable<verdict> on_command(session& s, const command& cmd) override;

 private:
  logger& log_;
  std::string instance_;
  std::string source_name_;
  std::size_t position_;
  maildrop_source* source_ = nullptr;
};

}  // namespace sdps::backend
