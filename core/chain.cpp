#include "chain.hpp"

#include "bounded.hpp"
#include "metrics.hpp"

#include <algorithm>
#include <set>

namespace sdps::core {

namespace {

response internal_error() { return response::err("[SYS/TEMP] internal server error, try again later"); }
response overrun_error() { return response::err("[SYS/TEMP] the server took too long, try again later").and_close(); }

// The module calls, as coroutines that own their arguments (a timed-out
// call outlives the dispatch that started it).
awaitable<verdict> call_command(std::shared_ptr<session> s, sdps::module* object, command cmd) {
  co_return co_await object->on_command(*s, cmd);
}
awaitable<verdict> call_event(std::shared_ptr<session> s, sdps::module* object, event e) {
  co_return co_await object->on_event(*s, e);
}

// What one guarded call came to: a verdict; or nothing (it threw); or,
// when it overran its time limit, the call still running.
struct call_outcome {
  std::optional<verdict> answer;
  std::shared_ptr<late_call> late;
  bool overran = false;  // watched, and past its deadline
};

// Calls one module with the chain's guarantees: bounded in time, and an
// exception never lets the command through.
awaitable<call_outcome> guarded(const module_instance& l, session& s, const char* what, awaitable<verdict> call,
                                call_watch* watch) {
  try {
    if (watch) {
      // Awaited here, with the watch keeping the deadline: no coroutine
      // or timer of its own.
      watch->call_started(l);
      std::optional<verdict> answer;
      try {
        answer.emplace(co_await std::move(call));
      } catch (...) {
        if (watch->call_ended()) co_return call_outcome{std::nullopt, nullptr, true};
        throw;
      }
      if (watch->call_ended()) co_return call_outcome{std::nullopt, nullptr, true};
      co_return call_outcome{std::move(answer), nullptr};
    }
    verdict answer = co_await bounded<verdict>(s.get_executor(), l.timeout, std::move(call));
    co_return call_outcome{std::move(answer), nullptr};
  } catch (const module_timeout& e) {
    process_metrics().add("sdps_module_timeouts_total", {{"instance", l.instance}});
    l.log->error("session ", s.id(), ": ", what, ": no answer within ", l.timeout.count(),
                 "ms; ending the session once the call returns");
    co_return call_outcome{std::nullopt, e.call()};
  } catch (const std::exception& e) {
    l.log->error("session ", s.id(), ": ", what, ": ", e.what());
  } catch (...) {
    l.log->error("session ", s.id(), ": ", what, ": unknown exception");
  }
  co_return call_outcome{};
}

}  // namespace

chain::chain(std::vector<std::unique_ptr<module_instance>> links) : links_(std::move(links)) {
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
  auto position = [this](const module_instance* l) {
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

std::ptrdiff_t chain::position_of(const module_instance* l) const {
  return std::find_if(links_.begin(), links_.end(), [l](const auto& p) { return p.get() == l; }) - links_.begin();
}

const chain::route& chain::route_for(const std::string& name) const {
  const auto it = routes_.find(name);
  return it == routes_.end() ? wildcard_only_ : it->second;
}

awaitable<dispatch_result> chain::dispatch(std::shared_ptr<session> s, command cmd, call_watch* watch) {
  const route* r = &route_for(cmd.name);
  const auto state = static_cast<state_mask>(s->state());
  bool valid = r->declared && (r->states & state);
  std::vector<const module_instance*> passed;  // the instances that let it through, in order
  std::optional<dispatch_result> result;
  // Chain position of the last instance called: after verdict::next_as()
  // the new command's route resumes behind it.
  std::ptrdiff_t after = -1;
  for (std::size_t i = 0; i < r->visit.size(); ++i) {
    const module_instance* l = r->visit[i].first;
    const state_mask states = r->visit[i].second;
    const std::ptrdiff_t at = position_of(l);
    if (at <= after) continue;
    if (!(states & state)) continue;
    after = at;
    auto outcome = co_await guarded(*l, *s, cmd.name.c_str(), call_command(s, l->object.get(), cmd), watch);
    if (outcome.overran) co_return dispatch_result{overrun_error(), l, nullptr, true};
    if (outcome.late) co_return dispatch_result{overrun_error(), l, std::move(outcome.late)};
    if (!outcome.answer) {
      result = dispatch_result{internal_error(), l, nullptr};
      break;
    }
    if (outcome.answer->answered()) {
      result = dispatch_result{std::move(outcome.answer->reply()), l, nullptr};
      break;
    }
    passed.push_back(l);
    if (outcome.answer->replaced()) {
      cmd = std::move(*outcome.answer->replaced());
      r = &route_for(cmd.name);
      valid = r->declared && (r->states & state);
      i = static_cast<std::size_t>(-1);  // restart the new route, past `after`
    }
  }
  if (!result) {
    if (!r->declared)
      result = dispatch_result{response::err("unknown command"), nullptr, nullptr};
    else if (!valid)
      result = dispatch_result{
          response::err(std::string("command not valid in the ") + to_string(s->state()) + " state"), nullptr, nullptr};
    else
      result = dispatch_result{response::err("command not available"), nullptr, nullptr};
  }
  if (result->reply.positive) co_return std::move(*result);
  // Whatever the instances that passed it on took for it (locks) is
  // given back before the client hears -ERR; latest first, as unwinding.
  for (auto it = passed.rbegin(); it != passed.rend(); ++it) {
    const module_instance* l = *it;
    if (!l->events.contains(event::command_failed)) continue;
    auto outcome = co_await guarded(*l, *s, to_string(event::command_failed),
                                    call_event(s, l->object.get(), event::command_failed), watch);
    if (outcome.overran) co_return dispatch_result{overrun_error(), l, nullptr, true};
    if (outcome.late) co_return dispatch_result{overrun_error(), l, std::move(outcome.late)};
  }
  co_return std::move(*result);
}

awaitable<event_outcome> chain::fire(std::shared_ptr<session> s, event e) {
  event_outcome out;
  for (const auto& l : links_) {
    if (!l->events.contains(e)) continue;
    auto outcome = co_await guarded(*l, *s, to_string(e), call_event(s, l->object.get(), e), nullptr);
    if (outcome.late) {
      if (e != event::disconnect) {
        out.late = std::move(outcome.late);
        if (e == event::connect) out.answer = dispatch_result{overrun_error(), l.get(), out.late};
        co_return out;
      }
      co_await outcome.late->wait();
      continue;
    }
    if (e != event::connect) continue;
    if (!outcome.answer) {
      out.answer = dispatch_result{internal_error().and_close(), l.get(), nullptr};
      co_return out;
    }
    if (outcome.answer->answered()) {
      out.answer = dispatch_result{std::move(outcome.answer->reply()), l.get(), nullptr};
      co_return out;
    }
  }
  co_return out;
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

}  // namespace sdps::core
