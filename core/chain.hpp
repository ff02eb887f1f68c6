#pragma once
// The ordered list of module instances and the dispatch of commands and
// events through it.

#include "bounded.hpp"
#include "logging.hpp"

#include <sdps/module.hpp>

#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace sdps::core {

/// One loaded instance: a YAML entry made real.
struct module_instance {
  std::string module;    // module name (the .so stem)
  std::string instance;  // instance name
  std::string where;     // "file:line" of its YAML entry
  std::chrono::milliseconds timeout{};
  std::unique_ptr<sdps::module> object;
  std::vector<command_spec> specs;
  event_set events = event_set::all();  // what object->events() said
  std::unique_ptr<stderr_log> log;
};

/// What answered a command: the reply and the instance that wrote it
/// (whose time limit also bounds the reply's body reads).
struct dispatch_result {
  response reply;
  const module_instance* by = nullptr;
  /// Set when a module call overran its time limit: the reply is then
  /// -ERR [SYS/TEMP] with close, and the session must call nothing more
  /// until this call has finished.
  std::shared_ptr<late_call> late;
  /// A call watched by a call_watch overran its time limit: the watch has
  /// already ended the session (told the client and closed), and the call
  /// has returned since. Nothing is to be sent.
  bool overran = false;
};

/// Bounds the module calls of one session in time without a timer or a
/// coroutine per call: the calls are awaited directly, and the watch (the
/// connection's watchdog) keeps their deadline. A call past its deadline
/// is still awaited to its end, so nothing else of its session runs
/// meanwhile; the watch ends the session at the deadline itself: -ERR
/// [SYS/TEMP] to the client and the connection closed. Event loop only.
class call_watch {
 public:
  /// A call of `l` starts and must return within l.timeout.
  virtual void call_started(const module_instance& l) = 0;
  /// The call returned (or threw); true if it overran its time limit (the
  /// session has been ended; discard what it returned).
  virtual bool call_ended() = 0;

 protected:
  ~call_watch() = default;
};

/// What delivering an event came to.
struct event_outcome {
  /// `connect` only: a module's answer replacing the greeting.
  std::optional<dispatch_result> answer;
  /// As in dispatch_result: a call overran, the session must end. The
  /// event reached no instance after the one that overran.
  std::shared_ptr<late_call> late;
};

/// Dispatches commands and events in chain order. Read-only once built, so
/// every event loop thread dispatches through the one chain; a session's
/// calls run on that session's executor.
class chain {
 public:
  explicit chain(std::vector<std::unique_ptr<module_instance>> links);
  ~chain();

  /// Sends `cmd` through the modules that declared it (and "*" modules),
  /// in order, until one answers. Never throws: a module's exception
  /// becomes -ERR [SYS/TEMP]; no answer becomes -ERR; a call past its time
  /// limit becomes -ERR [SYS/TEMP] with close and sets `late`. When the
  /// command ends in -ERR (a timeout aside), the instances that passed it
  /// on get `event::command_failed`, latest first, before this returns.
  /// With a `watch`, the calls are bounded by it (see call_watch) and a
  /// call that overran gives `overran`, never `late`.
  awaitable<dispatch_result> dispatch(std::shared_ptr<session> s, command cmd, call_watch* watch = nullptr);

  /// Delivers an event to every module in order. For `connect`, the first
  /// answer (a module replacing the greeting) ends the delivery. A call
  /// past its time limit ends it too (`late`), except for `disconnect`:
  /// that one waits for the late call and goes on, so that every instance
  /// hears of the end of the session.
  awaitable<event_outcome> fire(std::shared_ptr<session> s, event e);

  /// Every module's CAPA lines for this session, in chain order, without
  /// duplicates.
  std::vector<std::string> capabilities(session& s) const;

  /// The verbs some instance declared (not "*"), sorted.
  std::vector<std::string> verbs() const;

  /// SIGHUP: every instance's reload(), in chain order, on the calling
  /// thread (the first event loop's) while sessions run on the others.
  void reload();
  const std::vector<std::unique_ptr<module_instance>>& links() const { return links_; }

 private:
  struct route {
    bool declared = false;  // some module declared this verb (not "*")
    state_mask states = 0;  // union of the declared states
    std::vector<std::pair<const module_instance*, state_mask>> visit;  // in chain order, "*" modules included
  };
  const route& route_for(const std::string& name) const;
  std::ptrdiff_t position_of(const module_instance* l) const;

  std::vector<std::unique_ptr<module_instance>> links_;
  std::map<std::string, route, std::less<>> routes_;
  route wildcard_only_;
};

}  // namespace sdps::core
