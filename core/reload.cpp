#include "reload.hpp"

#include <algorithm>

namespace sdps::core {

const std::set<std::string> live_keys = {
    "log_level",        "log_format",       "log_target",          "syslog_facility",        "syslog_socket",
    "banner",           "idle_timeout",     "login_timeout",       "max_sessions",           "max_sessions_per_address",
    "trusted_networks", "plaintext_auth",   "proxy_protocol_from", "proxy_protocol_timeout", "tls",
    "metrics_allow",
};

namespace {

/// Keys of a chain entry that are the core's, not the instance's.
const std::set<std::string> entry_keys = {"module", "name", "timeout"};

std::string flow(const YAML::Node& node) {
  YAML::Emitter out;
  out << YAML::Flow << node;
  return out.c_str();
}

std::map<std::string, std::string> mapping_text(const YAML::Node& node, const std::set<std::string>& skipped) {
  std::map<std::string, std::string> out;
  if (!node.IsMap()) return out;
  for (auto it = node.begin(); it != node.end(); ++it) {
    const std::string key = it->first.as<std::string>();
    if (!skipped.count(key)) out[key] = flow(it->second);
  }
  return out;
}

/// The keys whose text differs between `a` and `b` (present in one only
/// included), sorted.
std::vector<std::string> differing(const std::map<std::string, std::string>& a,
                                   const std::map<std::string, std::string>& b) {
  std::set<std::string> keys;
  for (const auto& [key, value] : a) keys.insert(key);
  for (const auto& [key, value] : b) keys.insert(key);
  std::vector<std::string> out;
  for (const std::string& key : keys) {
    const auto x = a.find(key);
    const auto y = b.find(key);
    if (x == a.end() || y == b.end() || x->second != y->second) out.push_back(key);
  }
  return out;
}

std::string shown(const std::map<std::string, std::string>& text, const std::string& key) {
  const auto it = text.find(key);
  return it == text.end() ? std::string("(default)") : it->second;
}

std::string joined(const std::vector<std::string>& keys) {
  std::string out;
  for (const std::string& key : keys) {
    if (!out.empty()) out += ", ";
    out += key;
  }
  return out;
}

}  // namespace

config_text config_text::of(const server_config& config) {
  config_text out;
  out.top = mapping_text(config.root, {"modules"});
  const YAML::Node modules = config.root["modules"];
  if (modules.IsSequence())
    for (const YAML::Node& item : modules) out.entries.push_back(mapping_text(item, entry_keys));
  return out;
}

reload_plan plan_reload(const config_text& in_force, const server_config& running, const server_config& fresh,
                        const chain& modules) {
  reload_plan plan;
  plan.in_force = in_force;
  const config_text now = config_text::of(fresh);

  // The top level: the core's live settings, keys the instances read (they
  // decide below), and the rest, which wait for a restart.
  std::set<std::string> instance_keys;
  for (const std::string& key : differing(in_force.top, now.top)) {
    const bool had = in_force.top.count(key) > 0, has = now.top.count(key) > 0;
    if (key == "listen" && running.listen_from_command_line) continue;  // --listen replaces it
    if (key == "tls" && had != has) {
      plan.restart.push_back(std::string("tls: ").append(has ? "added" : "removed") +
                             " (which listeners offer TLS): takes effect at the next restart");
      continue;
    }
    if (live_keys.count(key)) {
      plan.applied.push_back(key + ": " + shown(in_force.top, key) + " -> " + shown(now.top, key));
      if (has) plan.in_force.top[key] = now.top.at(key);
      else plan.in_force.top.erase(key);
      continue;
    }
    bool read = false;
    for (const auto& l : modules.links())
      if (running.globals && running.globals->keys_read_by(l->instance).count(key)) read = true;
    if (read) instance_keys.insert(key);
    else plan.restart.push_back(key + " changed: takes effect at the next restart");
  }

  // The chain: the same instances in the same order, or a restart.
  bool same_chain = fresh.chain.size() == running.chain.size() && modules.links().size() == running.chain.size() &&
                    now.entries.size() == fresh.chain.size() && in_force.entries.size() == running.chain.size();
  for (std::size_t i = 0; same_chain && i < fresh.chain.size(); ++i)
    same_chain = fresh.chain[i].module == running.chain[i].module &&
                 fresh.chain[i].instance == running.chain[i].instance;
  if (!same_chain) {
    plan.restart.push_back("modules: the chain's instances or their order changed: takes effect at the next restart");
  } else {
    for (std::size_t i = 0; i < fresh.chain.size(); ++i) {
      const chain_entry& entry = fresh.chain[i];
      const std::string who = "module instance '" + entry.instance + "'";
      if (entry.timeout != running.chain[i].timeout)
        plan.restart.push_back(who + ": timeout changed: takes effect at the next restart");
      std::vector<std::string> changed = differing(in_force.entries[i], now.entries[i]);
      std::vector<std::string> top_changed;
      if (running.globals)
        for (const std::string& key : running.globals->keys_read_by(entry.instance))
          if (instance_keys.count(key)) top_changed.push_back(key);
      if (changed.empty() && top_changed.empty()) continue;
      std::vector<std::string> all = changed;
      all.insert(all.end(), top_changed.begin(), top_changed.end());
      std::function<void()> change;
      try {
        change = modules.links()[i]->object->reconfigure(*entry.options, *fresh.globals);
        if (change) entry.options->refuse_unread(entry.instance);
      } catch (const config_error& e) {
        const std::string text = e.what();
        throw config_error(text.find(entry.instance) != std::string::npos ? text
                                                                          : entry.where + ": " + who + ": " + text);
      } catch (const std::exception& e) {
        throw config_error(entry.where + ": " + who + ": " + e.what());
      }
      if (!change) {
        plan.restart.push_back(who + ": " + joined(all) +
                               " changed: takes effect at the next restart (sdpsd --check checks the new settings)");
        continue;
      }
      plan.applied.push_back(who + ": " + joined(all));
      plan.module_changes.push_back(std::move(change));
      plan.in_force.entries[i] = now.entries[i];
      for (const std::string& key : top_changed) {
        if (now.top.count(key)) plan.in_force.top[key] = now.top.at(key);
        else plan.in_force.top.erase(key);
      }
    }
  }

  // A top-level key is the core's, the site's, or read by an instance, as
  // at start-up (instances read the new file's in reconfigure()).
  if (fresh.globals)
    for (const auto& [key, text] : now.top)
      if (!server_keys.count(key) && !config::site_keys.count(key) &&
          !(running.globals && running.globals->read_keys().count(key)) && !fresh.globals->read_keys().count(key))
        fresh.globals->fail(key, "unknown top-level setting '" + key +
                                     "' (neither sdpsd nor a module of the chain uses it)");
  return plan;
}

}  // namespace sdps::core
