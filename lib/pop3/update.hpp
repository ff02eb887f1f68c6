#pragma once
/// @file
/// UPDATE (RFC 1939 section 6), as both QUIT in TRANSACTION (commands) and
/// a back end's XUPDATE (backend_listing) run it.

#include <sdps/log.hpp>
#include <sdps/maildrop.hpp>
#include <sdps/session.hpp>

#include <cstddef>
#include <exception>
#include <memory>

namespace sdps::pop3 {

/// What UPDATE came to: the messages marked deleted, and what became of them.
struct update_outcome {
  std::size_t marked = 0;
  removal_result result;
};

/// Enters UPDATE and removes the messages marked deleted in `drop` (none
/// when null). A removal that throws is logged on `log` and counts every
/// marked message as not removed (they stay for the next session). The
/// outcome is logged on the session's log. Event loop only.
inline awaitable<update_outcome> run_update(session& s, std::shared_ptr<maildrop> drop, logger& log) {
  update_outcome out;
  if (drop)
    for (std::size_t i = 0; i < drop->count(); ++i) out.marked += drop->deleted(i) ? 1 : 0;
  s.enter(pop3_state::update);
  if (drop && out.marked > 0) {
    try {
      out.result = co_await drop->remove_deleted();
    } catch (const std::exception& e) {
      log.error("session ", s.id(), ": UPDATE failed: ", e.what());
      out.result = removal_result{0, out.marked};
    }
  }
  // A QUIT that deleted nothing is in the logout line (dele=0) already.
  s.log().log(out.marked > 0 ? log_level::info : log_level::debug, "UPDATE: ", out.result.removed, " removed, ",
              out.result.failed, " not removed, of ", out.marked, " deleted");
  co_return out;
}

}  // namespace sdps::pop3
