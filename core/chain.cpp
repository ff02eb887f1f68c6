#include "chain.hpp"

#include <algorithm>
#include <set>

namespace sdps::core {

namespace {

constexpr event all_events[] = {event::connect, event::authenticated, event::quit, event::disconnect, event::logout};

std::string join(const std::vector<std::string>& words, const char* separator = ", ") {
  std::string out;
  for (const auto& w : words) {
    if (!out.empty()) out += separator;
    out += w;
  }
  return out;
}

}  // namespace

chain::chain(std::vector<std::unique_ptr<module_instance>> links, maildrop_source* source,
             const module_instance* source_instance)
    : links_(std::move(links)), source_(source), source_instance_(source_instance) {
  // Routes in chain order (links_ is in YAML order): the "*" instances
  // are merged into every route at their place.
  for (const auto& l : links_)
    for (const command_spec& spec : l->specs)
      if (spec.name == "*") wildcard_only_.visit.emplace_back(l.get(), spec.states);
  for (const auto& l : links_) {
    for (const command_spec& spec : l->specs) {
      if (spec.name == "*") continue;
      auto [it, fresh] = routes_.try_emplace(spec.name);
      route& r = it->second;
      r.declared = true;
      r.states |= spec.states;
      // An instance that declares a verb twice (or also as "*") is visited
      // once, in the union of the states it asked for.
      auto mine = std::find_if(r.visit.begin(), r.visit.end(), [&](const auto& v) { return v.first == l.get(); });
      if (mine != r.visit.end())
        mine->second |= spec.states;
      else
        r.visit.emplace_back(l.get(), spec.states);
    }
  }
  auto position = [this](const module_instance* l) {
    return std::find_if(links_.begin(), links_.end(), [l](const auto& p) { return p.get() == l; }) - links_.begin();
  };
  for (auto& [name, r] : routes_) {
    for (const auto& [l, states] : wildcard_only_.visit) {
      auto mine = std::find_if(r.visit.begin(), r.visit.end(), [l = l](const auto& v) { return v.first == l; });
      if (mine != r.visit.end())
        mine->second |= states;
      else
        r.visit.emplace_back(l, states);
    }
    std::stable_sort(r.visit.begin(), r.visit.end(),
                     [&](const auto& a, const auto& b) { return position(a.first) < position(b.first); });
  }
  for (const auto& l : links_) {
    for (const login_stage s : login_stages_in_order)
      if (l->stages.contains(s)) stages_[static_cast<std::size_t>(s)].push_back(l.get());
    for (const event e : all_events)
      if (l->events.contains(e)) events_[static_cast<std::size_t>(e)].push_back(l.get());
  }
}

chain::~chain() {
  // Later instances may use earlier ones' services: the reverse order.
  while (!links_.empty()) links_.pop_back();
}

const chain::route& chain::route_for(std::string_view verb) const {
  const auto it = routes_.find(verb);
  return it == routes_.end() ? wildcard_only_ : it->second;
}

std::vector<std::string> chain::capabilities(session& s) const {
  std::vector<std::string> out;
  std::set<std::string> seen;
  for (const auto& l : links_) {
    std::vector<std::string> lines;
    try {
      l->object->capabilities(s, lines);
    } catch (const std::exception& e) {
      l->log->error("session ", s.id(), ": capabilities: ", e.what());
    }
    for (auto& line : lines)
      if (seen.insert(line).second) out.push_back(std::move(line));
  }
  return out;
}

std::vector<std::string> chain::verbs() const {
  std::vector<std::string> out;
  for (const auto& [name, r] : routes_) out.push_back(name);
  return out;
}

void chain::reload() {
  for (const auto& l : links_) {
    try {
      l->object->reload();
    } catch (const std::exception& e) {
      l->log->error("reload: ", e.what());
    }
  }
}

std::vector<std::string> chain::check() const {
  std::vector<std::string> out;
  for (const auto& l : links_) {
    std::vector<std::string> problems;
    try {
      problems = l->object->check();
    } catch (const std::exception& e) {
      problems.push_back(std::string("the check failed: ") + e.what());
    }
    for (auto& p : problems) out.push_back(l->instance + ": " + p);
  }
  return out;
}

std::vector<std::string> chain::describe() const {
  std::vector<std::string> out;
  for (std::size_t i = 0; i < links_.size(); ++i) {
    const module_instance& l = *links_[i];
    std::vector<std::string> parts;
    std::vector<std::string> verbs;
    for (const command_spec& spec : l.specs) verbs.push_back(spec.name);
    if (!verbs.empty()) parts.push_back("commands " + join(verbs, " "));
    std::vector<std::string> stages;
    for (const login_stage s : login_stages_in_order)
      if (l.stages.contains(s)) stages.push_back(to_string(s));
    if (!stages.empty()) parts.push_back("login stage " + join(stages));
    std::vector<std::string> heard;
    for (const event e : all_events)
      if (l.events.contains(e)) heard.push_back(to_string(e));
    if (!heard.empty()) parts.push_back("events " + join(heard));
    if (&l == source_instance_) parts.push_back("the sessions' maildrop");
    std::string line = "  " + std::to_string(i + 1) + " " + l.instance;
    if (l.module != l.instance) line += " (" + l.module + ")";
    line += ": " + (parts.empty() ? std::string("services only") : join(parts, "; "));
    out.push_back(std::move(line));
  }
  return out;
}

}  // namespace sdps::core
