#pragma once
// The ordered list of module instances and the dispatch of commands and
// events through it.

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
  std::unique_ptr<stderr_log> log;
};

/// What answered a command: the reply and the instance that wrote it
/// (whose time limit also bounds the reply's body reads).
struct dispatch_result {
  response reply;
  const module_instance* by = nullptr;
};

/// Dispatches commands and events in chain order. Runs on the event loop.
class chain {
 public:
  explicit chain(std::vector<std::unique_ptr<module_instance>> links);
  ~chain();

  /// Sends `cmd` through the modules that declared it (and "*" modules),
  /// in order, until one answers. Never throws: a module's exception or
  /// timeout becomes -ERR [SYS/TEMP]; no answer becomes -ERR.
  awaitable<dispatch_result> dispatch(std::shared_ptr<session> s, command cmd);

  /// Delivers an event to every module in order. For `connect`, returns the
  /// first answer (a module replacing the greeting); otherwise null.
  awaitable<std::optional<dispatch_result>> fire(std::shared_ptr<session> s, event e);

  /// Every module's CAPA lines for this session, in chain order, without
  /// duplicates.
  std::vector<std::string> capabilities(session& s) const;

  void reload();
  const std::vector<std::unique_ptr<module_instance>>& links() const { return links_; }

 private:
  struct route {
    bool declared = false;  // some module declared this verb (not "*")
    state_mask states = 0;  // union of the declared states
    std::vector<std::pair<const module_instance*, state_mask>> visit;  // in chain order, "*" modules included
  };
  const route& route_for(const std::string& name) const;

  std::vector<std::unique_ptr<module_instance>> links_;
  std::map<std::string, route, std::less<>> routes_;
  route wildcard_only_;
};

}  // namespace sdps::core
