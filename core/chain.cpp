#include "chain.hpp"

#include "bounded.hpp"
#include "metrics.hpp"

#include <algorithm>
#include <set>

namespace sdps::core {

namespace {

response internal_error() { return response::err("[SYS/TEMP] internal server error, try again later"); }

// The module calls, as coroutines that own their arguments (a timed-out
// call outlives the dispatch that started it).
awaitable<verdict> call_command(std::shared_ptr<session> s, sdps::module* object, command cmd) {
  co_return co_await object->on_command(*s, cmd);
}
awaitable<verdict> call_event(std::shared_ptr<session> s, sdps::module* object, event e) {
  co_return co_await object->on_event(*s, e);
}

// Calls one module with the chain's guarantees: bounded in time, and an
// exception never lets the command through.
awaitable<std::optional<verdict>> guarded(const link& l, session& s, const char* what, awaitable<verdict> call) {
  try {
    co_return co_await bounded<verdict>(s.get_executor(), l.timeout, std::move(call));
  } catch (const module_timeout&) {
    process_metrics().add("sdps_module_timeouts_total", {{"instance", l.instance}});
    l.log->error("session ", s.id(), ": ", what, ": no answer within ", l.timeout.count(), "ms");
  } catch (const std::exception& e) {
    l.log->error("session ", s.id(), ": ", what, ": ", e.what());
  } catch (...) {
    l.log->error("session ", s.id(), ": ", what, ": unknown exception");
  }
  co_return std::nullopt;
}

}  // namespace

chain::chain(std::vector<std::unique_ptr<link>> links) : links_(std::move(links)) {
  // Wildcard instances first, so every route can start from them.
  for (const auto& l : links_)
    for (const command_spec& spec : l->specs)
      if (spec.name == "*") wildcard_only_.visit.emplace_back(l.get(), spec.states);
  for (const auto& l : links_) {
    for (const command_spec& spec : l->specs) {
      if (spec.name == "*") continue;
      auto [it, fresh] = routes_.try_emplace(spec.name);
      if (fresh) it->second.visit = wildcard_only_.visit;
      it->second.declared = true;
      it->second.states |= spec.states;
      it->second.visit.emplace_back(l.get(), spec.states);
    }
  }
  // Chain order is YAML order: links_ holds them in that order.
  auto position = [this](const link* l) {
    return std::find_if(links_.begin(), links_.end(), [l](const auto& p) { return p.get() == l; }) - links_.begin();
  };
  for (auto& [name, r] : routes_)
    std::stable_sort(r.visit.begin(), r.visit.end(),
                     [&](const auto& a, const auto& b) { return position(a.first) < position(b.first); });
}

chain::~chain() {
  // Destroy instances in reverse order: later ones may use earlier ones' services.
  while (!links_.empty()) links_.pop_back();
}

const chain::route& chain::route_for(const std::string& name) const {
  const auto it = routes_.find(name);
  return it == routes_.end() ? wildcard_only_ : it->second;
}

awaitable<dispatch_result> chain::dispatch(std::shared_ptr<session> s, command cmd) {
  const route& r = route_for(cmd.name);
  const auto state = static_cast<state_mask>(s->state());
  const bool valid = r.declared && (r.states & state);
  for (const auto& [l, states] : r.visit) {
    if (!(states & state)) continue;
    auto answer = co_await guarded(*l, *s, cmd.name.c_str(), call_command(s, l->object.get(), cmd));
    if (!answer) co_return dispatch_result{internal_error(), l};
    if (answer->answered()) co_return dispatch_result{std::move(answer->reply()), l};
  }
  if (!r.declared) co_return dispatch_result{response::err("unknown command"), nullptr};
  if (!valid)
    co_return dispatch_result{response::err(std::string("command not valid in the ") + to_string(s->state()) + " state"),
                              nullptr};
  co_return dispatch_result{response::err("command not available"), nullptr};
}

awaitable<std::optional<dispatch_result>> chain::fire(std::shared_ptr<session> s, event e) {
  for (const auto& l : links_) {
    auto answer = co_await guarded(*l, *s, to_string(e), call_event(s, l->object.get(), e));
    if (e != event::connect) continue;
    if (!answer) co_return dispatch_result{internal_error().and_close(), l.get()};
    if (answer->answered()) co_return dispatch_result{std::move(answer->reply()), l.get()};
  }
  co_return std::nullopt;
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

void chain::reload() {
  for (const auto& l : links_) {
    try {
      l->object->reload();
    } catch (const std::exception& e) {
      l->log->error("reload: ", e.what());
    }
  }
}

}  // namespace sdps::core
