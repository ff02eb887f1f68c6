#include "lock.hpp"

#include "pop3/response_code.hpp"

#include <algorithm>

namespace sdps::lock {

lock_module::lock_module(module_config& config)
    : log_(config.log()), instance_(config.instance()), punts_(config.options().strings_or("punts", {})) {
  if (config.options().has("punts") && punts_.empty())
    config.options().fail("punts", "'punts' must list at least one punt (or be left out: every spool)");
  config.require<spool>();
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

awaitable<verdict> lock_module::on_event(session& s, event) {
  // quit: UPDATE is over and the reply not yet sent, so a client that logs
  // in again the moment it reads +OK finds the maildrop free. disconnect:
  // whatever ended the session.
  if (held* h = s.find_slot(held_)) release(s, *h, "the session ended");
  co_return verdict::next();
}

void lock_module::undo_login(session& s, login_stage) {
  // A stage after this one refused the login (or threw): the locks taken
  // for it must not outlive it.
  if (held* h = s.find_slot(held_)) release(s, *h, "the login that took them did not succeed");
}

void lock_module::release(session& s, held& h, const char* why) {
  if (!h.started) return;
  // Newest first, the reverse of the locking order; every punt of the
  // login, not only those locked: prepare() may have started a lock that
  // nobody took (unlock() is idempotent).
  for (auto it = order_.rbegin(); it != order_.rend(); ++it) {
    try {
      (*it)->unlock(s);
    } catch (const std::exception& e) {
      log_.error("session ", s.id(), ": unlocking punt ", (*it)->punt(), ": ", e.what());
    }
  }
  if (!h.spools.empty()) log_.debug("session ", s.id(), ": released ", h.spools.size(), " lock(s): ", why);
  h.spools.clear();
  h.started = false;
}

awaitable<spool*> lock_module::lock_each(session& s, held& h, const identity& login, const std::string& who) {
  for (spool* sp : order_) {
    lock_status status = lock_status::unavailable;
    try {
      status = co_await sp->lock(s, login);
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
        co_return sp;
    }
  }
  co_return nullptr;
}

awaitable<login_verdict> lock_module::on_login(session& s, login_stage, login_attempt& attempt) {
  // Slots live until after the disconnect event, which never runs beside
  // this call: the reference stays good across the suspensions below.
  held& h = s.slot(held_);
  release(s, h, "a new login starts afresh");
  const identity& login = attempt.who();
  const std::string who = login.display();
  // Every punt hears first that its lock follows, and may start it (a
  // back end's login): the punts' locks are then taken side by side, and
  // a login waits for the slowest, not the sum. A punt found in use then
  // may be held by another session that waits for a punt this one took
  // ahead: everything is released and locked again one punt after
  // another, in the fixed order, where two such sessions cannot hold each
  // other up (one of them gets every lock).
  h.started = true;
  try {
    for (spool* sp : order_) sp->prepare(s, login);
  } catch (...) {
    release(s, h, "preparing the locks failed");
    throw;
  }
  spool* busy = co_await lock_each(s, h, login, who);
  if (busy && order_.size() > 1) {
    log_.debug("session ", s.id(), ": ", who, " is in use on punt ", busy->punt(),
               "; locking again, one punt after another");
    release(s, h, "a punt was in use: locking again in order");
    h.started = true;
    busy = co_await lock_each(s, h, login, who);
  }
  if (busy) {
    log_.info("session ", s.id(), ": ", who, " is locked by another session on punt ", busy->punt());
    release(s, h, "the maildrop is in use");
    co_return login_verdict::refuse(
        response::err(pop3::with_code(pop3::response_code::in_use, "maildrop already locked")), "in use");
  }
  co_return login_verdict::proceed();
}

}  // namespace sdps::lock
