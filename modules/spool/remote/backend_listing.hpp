#pragma once
// The back end's commands for front ends: XLIST, XREAD, XUPDATE and XRESET.

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
///   (backend_proto::format_update), and the session ends;
/// - `XUPDATE KEEP`: the same removal and reply, but then the login ends
///   (session::end_login(): its locks are released before the reply goes
///   out) and the connection stays in AUTHORIZATION, its XAUTH trust kept,
///   for the front end's next login on it;
/// - `XRESET`: ends the login without UPDATE (nothing marked deleted is
///   removed), the same way: the front end's link goes back to its pool.
/// CAPA lists `XRESET` (backend_proto::reset_capability), which is how a
/// front end knows it may keep links to this back end.
///
/// It reads the session's maildrop and marks. No per-session state. All
/// calls on the session's event loop.
class backend_listing final : public sdps::module {
 public:
  explicit backend_listing(module_config& config);

  std::vector<command_spec> commands() const override;
  /// Checks `source:` against the chain; throws config_error.
  void start(const registry& services) override;
  awaitable<verdict> on_command(session& s, const command& cmd) override;
  /// XRESET (backend_proto::reset_capability).
  void capabilities(session& s, std::vector<std::string>& lines) const override;

 private:
  logger& log_;
  std::string instance_;
  std::string source_name_;
};

}  // namespace sdps::backend
