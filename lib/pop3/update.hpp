#pragma once
/// @file
/// UPDATE (RFC 1939 section 6), as both QUIT in TRANSACTION (commands) and
/// a back end's XUPDATE (backend_listing) run it; a back end's XUPDATE KEEP
/// removes the marked messages without entering UPDATE (the login ends
/// instead, and the connection goes on).

#include <sdps/log.hpp>
#include <sdps/maildrop.hpp>
#include <sdps/session.hpp>

#include <cstddef>
#include <exception>
#include <memory>
#include <vector>

namespace sdps::pop3 {

/// What UPDATE came to: the messages marked deleted, and what became of them.
struct update_outcome {
  std::size_t marked = 0;
  removal_result result;
};

/// Removes the messages the session marked deleted from its maildrop
/// (none without one), in whatever state the session is: UPDATE's work.
/// A removal that throws is logged on `log` and counts every marked
/// message as not removed (they stay for the next session). The outcome is
/// logged on the session's log. Event loop only.
inline awaitable<update_outcome> remove_marked(session& s, logger& log) {
  update_outcome out;
  const std::shared_ptr<maildrop> drop = s.maildrop();
  std::vector<std::size_t> doomed;
  if (drop) doomed = s.marks().deleted_indexes();
  out.marked = doomed.size();
  if (drop && out.marked > 0) {
    try {
      out.result = co_await drop->remove(std::move(doomed));
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

/// QUIT in TRANSACTION: enters UPDATE, then remove_marked(). Event loop only.
inline awaitable<update_outcome> run_update(session& s, logger& log) {
  s.enter_update();
  co_return co_await remove_marked(s, log);
}

}  // namespace sdps::pop3
