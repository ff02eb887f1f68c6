#include "lock.hpp"

#include "pop3/response_code.hpp"

#include <algorithm>

namespace sdps::lock {

/// One session's locks.
struct lock_module::held {
  std::vector<spool*> spools;  // in locking order
};

lock_module::lock_module(module_config& config)
    : log_(config.log()), instance_(config.instance()), punts_(config.options().strings_or("punts", {})) {
  if (config.options().has("punts") && punts_.empty())
    config.options().fail("punts", "'punts' must list at least one punt (or be left out: every spool)");
  config.require<spool>();
}

std::vector<command_spec> lock_module::commands() const {
  return {{"PASS", static_cast<state_mask>(pop3_state::authorization)}};
}

void lock_module::start(const registry& services) {
  const auto spools = services.named<spool>();
  std::vector<std::pair<std::string, spool*>> chosen;  // (instance, spool)
  if (punts_.empty()) {
    chosen = spools;
  } else {
    for (const std::string& name : punts_) {
      const auto it = std::find_if(spools.begin(), spools.end(),
                                   [&](const auto& e) { return e.second->punt() == name || e.first == name; });
      if (it == spools.end())
        throw config_error("module instance '" + instance_ + "': no spool instance serves punt '" + name + "'");
      if (std::find(chosen.begin(), chosen.end(), *it) == chosen.end()) chosen.push_back(*it);
    }
  }
  std::stable_sort(chosen.begin(), chosen.end(), [](const auto& a, const auto& b) {
    if (a.second->punt() != b.second->punt()) return a.second->punt() < b.second->punt();
    return a.first < b.first;
  });
  for (std::size_t i = 1; i < chosen.size(); ++i)
    if (chosen[i].second->punt() == chosen[i - 1].second->punt())
      throw config_error("module instance '" + instance_ + "': spool instances '" + chosen[i - 1].first + "' and '" +
                         chosen[i].first + "' both serve punt '" + chosen[i].second->punt() +
                         "'; list the one to lock under 'punts'");
  order_.clear();
  for (const auto& e : chosen) order_.push_back(e.second);
  std::string names;
  for (const spool* s : order_) names += (names.empty() ? "" : ", ") + s->punt();
  log_.debug("locking order: ", names);
}

awaitable<verdict> lock_module::on_command(session& s, const command& cmd) {
  if (cmd.name == "PASS") co_return co_await take(s);
  co_return verdict::next();
}

awaitable<verdict> lock_module::on_event(session& s, event e) {
  held* h = s.find_slot<held>(this);
  if (!h) co_return verdict::next();
  switch (e) {
    case event::command_failed:
      // A module after this one refused the PASS that took the locks (or
      // threw): they must not outlive it.
      release(s, *h, "the PASS that took them did not succeed");
      break;
    case event::quit:
      // UPDATE is over and the reply not yet sent, so a client that logs
      // in again the moment it reads +OK finds the maildrop free.
    case event::disconnect:
      release(s, *h, "the session ended");
      break;
    default:
      break;
  }
  co_return verdict::next();
}

void lock_module::release(session& s, held& h, const char* why) {
  if (h.spools.empty()) return;
  // Newest first, the reverse of the locking order.
  for (auto it = h.spools.rbegin(); it != h.spools.rend(); ++it) {
    try {
      (*it)->unlock(s);
    } catch (const std::exception& e) {
      log_.error("session ", s.id(), ": unlocking punt ", (*it)->punt(), ": ", e.what());
    }
  }
  log_.debug("session ", s.id(), ": released ", h.spools.size(), " lock(s): ", why);
  h.spools.clear();
}

awaitable<verdict> lock_module::take(session& s) {
  // Slots live until after the disconnect event, which never runs beside
  // this call: the reference stays good across the suspensions below.
  held& h = s.slot<held>(this);
  release(s, h, "a new PASS starts afresh");
  if (!s.login()) {
    log_.error("session ", s.id(), ": PASS reached ", instance_, " without a login; is auth before it?");
    co_return verdict::answer(response::err("[AUTH] authentication failed"));
  }
  const std::string who = s.login()->display();
  for (spool* sp : order_) {
    lock_status status = lock_status::unavailable;
    try {
      status = co_await sp->lock(s);
    } catch (const spool_error& e) {
      log_.warning("session ", s.id(), ": locking ", who, " on punt ", sp->punt(), ": ", e.what());
      status = lock_status::unavailable;
    } catch (...) {
      // Anything else is a fault, not a punt being down: give up the locks
      // taken so far and let the core answer.
      release(s, h, "locking failed");
      throw;
    }
    switch (status) {
      case lock_status::acquired:
        h.spools.push_back(sp);
        break;
      case lock_status::unavailable:
        log_.warning("session ", s.id(), ": punt ", sp->punt(), " is unavailable: mail held there is left out of ",
                     who, "'s maildrop for this session");
        break;
      case lock_status::in_use:
        log_.info("session ", s.id(), ": ", who, " is locked by another session on punt ", sp->punt());
        release(s, h, "the maildrop is in use");
        co_return verdict::answer(response::err(pop3::with_code(pop3::response_code::in_use, "maildrop already locked")));
    }
  }
  co_return verdict::next();
}

}  // namespace sdps::lock
