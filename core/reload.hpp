#pragma once
// SIGHUP's second reading of the config file: what changed since the file
// sdpsd runs with, what of it applies while sessions go on, and what waits
// for a restart. The server applies the result (server.cpp).

#include "chain.hpp"
#include "config.hpp"

#include <functional>
#include <map>
#include <string>
#include <vector>

namespace sdps::core {

/// The top-level keys sdpsd applies while it runs: the log settings, the
/// banner, the session time limits, the limits, the trusted networks, the
/// plaintext policy, the PROXY protocol settings and the `tls:` section
/// (when there was one before and is one after).
extern const std::set<std::string> live_keys;

/// A config as text, key by key (each value as one line of flow-style
/// YAML): what a reload compares. It holds what sdpsd runs with: a change
/// that waits for a restart stays out of it, so the next SIGHUP names it
/// again.
struct config_text {
  /// Every top-level key but `modules`.
  std::map<std::string, std::string> top;
  /// Each chain entry's settings (besides module, name and timeout), by key.
  std::vector<std::map<std::string, std::string>> entries;

  static config_text of(const server_config& config);
};

/// What a reload does.
struct reload_plan {
  /// Changes applied, one log line each ("banner: 'A' -> 'B'", "module
  /// instance 'NAME': KEY").
  std::vector<std::string> applied;
  /// Changes that wait for a restart, one log line each.
  std::vector<std::string> restart;
  /// What the instances accepted (module::reconfigure()), in chain order:
  /// called once the core's own settings are in.
  std::vector<std::function<void()>> module_changes;
  /// What sdpsd runs with once the plan is applied.
  config_text in_force;
};

/// Compares `fresh` (the file just read) with `running` as `in_force`
/// describes it, and asks each instance of `modules` whose settings changed
/// (its entry, or a top-level key it read when created: `running.globals`
/// knows which) for its reconfigure(). Changes nothing. Throws
/// config_error (the file is refused, nothing of it applied) when an
/// instance refuses a value or leaves a key of its entry unread, or when
/// the top level has a key nobody reads.
reload_plan plan_reload(const config_text& in_force, const server_config& running, const server_config& fresh,
                        const chain& modules);

}  // namespace sdps::core
