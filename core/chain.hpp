#pragma once
// The chain: the module instances of the YAML list, and what the session
// engine looks up in them per command, login stage and event. Built once
// by the loader, read-only afterwards (every event loop reads it at once).

#include "logging.hpp"

#include <sdps/maildrop.hpp>
#include <sdps/module.hpp>

#include <array>
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
  std::vector<command_spec> specs;  // what object->commands() said
  event_set events;                 // what object->events() said
  stage_set stages;                 // what object->login_stages() said
  std::unique_ptr<logging::source_log> log;
};

/// The instances of the chain and the routes through them.
class chain {
 public:
  /// One verb's way through the chain: the instances that declared it (and
  /// the "*" ones), in chain order, with the states each wants it in.
  struct route {
    bool declared = false;  // some instance declared this verb (not "*")
    state_mask states;      // union of the declared states
    std::vector<std::pair<const module_instance*, state_mask>> visit;
  };

  /// `maildrop_source`: the chain's last provider of sdps::maildrop_source
  /// and its instance (the session's maildrop is opened from it at
  /// login), or null for a chain without one.
  chain(std::vector<std::unique_ptr<module_instance>> links, maildrop_source* source = nullptr,
        const module_instance* source_instance = nullptr);
  ~chain();
  chain(const chain&) = delete;
  chain& operator=(const chain&) = delete;

  /// The route of `verb` (upper case); an empty, undeclared route for a
  /// verb nobody declared (the "*" instances only).
  const route& route_for(std::string_view verb) const;
  /// The instances taking part in login stage `s`, in chain order.
  const std::vector<const module_instance*>& in_stage(login_stage s) const {
    return stages_[static_cast<std::size_t>(s)];
  }
  /// The instances that want event `e`, in chain order.
  const std::vector<const module_instance*>& hearing(event e) const { return events_[static_cast<std::size_t>(e)]; }
  maildrop_source* source() const { return source_; }
  const module_instance* source_instance() const { return source_instance_; }

  /// Every module's CAPA lines for this session, in chain order, without
  /// duplicates.
  std::vector<std::string> capabilities(session& s) const;
  /// The verbs some instance declared (not "*"), sorted.
  std::vector<std::string> verbs() const;
  /// SIGHUP: every instance's reload(), in chain order, on the calling
  /// thread (the first event loop's) while sessions run on the others.
  void reload();
  /// Every instance's check(), in chain order: "instance: problem" lines.
  std::vector<std::string> check() const;
  /// What each instance does, one line each, for `sdpsd --check`:
  /// "  3 lock (lock): login stage lock; events quit, disconnect".
  std::vector<std::string> describe() const;

  const std::vector<std::unique_ptr<module_instance>>& links() const { return links_; }

 private:
  std::vector<std::unique_ptr<module_instance>> links_;
  std::map<std::string, route, std::less<>> routes_;
  route wildcard_only_;
  std::array<std::vector<const module_instance*>, 4> stages_;
  std::array<std::vector<const module_instance*>, 5> events_;
  maildrop_source* source_;
  const module_instance* source_instance_;
};

}  // namespace sdps::core
