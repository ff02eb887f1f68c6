#include "punt_monitor.hpp"

#include <algorithm>

namespace sdps::core {

namespace {

std::string milliseconds_text(std::chrono::milliseconds d) {
  if (d.count() % 1000 == 0) return std::to_string(d.count() / 1000) + "s";
  return std::to_string(d.count()) + "ms";
}

}  // namespace

punt_monitor::punt_monitor(executor loop, const std::vector<std::pair<std::string, spool*>>& spools,
                           std::chrono::milliseconds interval, logger& log, sdps::metrics& metrics)
    : loop_(loop), interval_(interval), log_(log), metrics_(metrics), dog_(loop) {
  for (const auto& entry : spools) {
    auto p = std::make_shared<punt_state>();
    p->punt = entry.second->punt();
    p->service = entry.second;
    p->probe = entry.second->make_probe(loop);
    if (!p->probe) log_.info("punt ", p->punt, " (", entry.first, "): its spool cannot be probed");
    punts_.push_back(std::move(p));
  }
  if (!punts_.empty()) {
    metrics_.declare("sdps_punt_up", "gauge",
                     "1 when the punt's last background probe found it up, else 0 (probe_interval).");
    metrics_.declare("sdps_punt_probe_seconds", "gauge", "Round trip of the punt's last probe that answered.");
  }
  tick_ = dog_.add([this](clock::time_point now) { tick(now); });
}

punt_monitor::~punt_monitor() { stop(); }

void punt_monitor::start() {
  // A series from the start: down until the first probe answers
  // (milliseconds after start-up).
  for (const auto& p : punts_)
    if (p->probe) metrics_.set("sdps_punt_up", {{"punt", p->punt}}, 0);
  tick(clock::now());
}

void punt_monitor::stop() {
  if (stopped_) return;
  stopped_ = true;
  dog_.stop();
  // Idle probes too: a kept connection's time limits would hold the
  // loop until they pass.
  for (const auto& p : punts_)
    if (p->probe) p->probe->stop();
  for (asio::steady_timer* waiter : waiters_) waiter->cancel();
}

void punt_monitor::tick(clock::time_point now) {
  if (stopped_) return;
  for (const auto& p : punts_) {
    if (!p->probe) continue;
    if (p->in_flight) {
      if (!p->late && now - p->started >= interval_) {
        p->late = true;
        record(*p, false, "no answer within probe_interval (" + milliseconds_text(interval_) + ")", std::nullopt);
      }
      continue;
    }
    p->in_flight = true;
    p->late = false;
    p->started = now;
    asio::co_spawn(loop_, probe_once(this, p), asio::detached);
  }
  dog_.set(tick_, now + interval_);
}

awaitable<void> punt_monitor::probe_once(punt_monitor* self, std::shared_ptr<punt_state> punt) {
  const std::shared_ptr<punt_probe> probe = punt->probe;
  const auto began = clock::now();
  punt_health health;
  try {
    health = co_await probe->check();
  } catch (const std::exception& e) {
    // A probe must not throw; one that does has said what is wrong.
    health.up = false;
    health.detail = e.what();
  }
  punt->in_flight = false;
  if (self->stopped_) co_return;
  const auto took = std::chrono::duration_cast<std::chrono::microseconds>(clock::now() - began);
  self->record(*punt, health.up, std::move(health.detail), health.up ? std::optional(took) : std::nullopt);
}

void punt_monitor::record(punt_state& p, bool up, std::string detail,
                          std::optional<std::chrono::microseconds> latency) {
  const bool first = !p.probed, was_up = p.up;
  p.probed = true;
  p.up = up;
  p.checked = clock::now();
  p.detail = std::move(detail);
  if (latency) p.latency = latency;
  metrics_.set("sdps_punt_up", {{"punt", p.punt}}, up ? 1 : 0);
  if (latency)
    metrics_.set("sdps_punt_probe_seconds", {{"punt", p.punt}}, std::chrono::duration<double>(*latency).count());
  if (!up && (first || was_up))
    log_.warning("punt ", p.punt, " is down: ", p.detail);
  else if (up && !first && !was_up)
    log_.info("punt ", p.punt, " is up again");
  else if (up && first)
    log_.debug("punt ", p.punt, " is up (probed in ", latency ? latency->count() : 0, "us)");
  if (first && all_probed()) {
    for (asio::steady_timer* waiter : waiters_) waiter->cancel();
  }
}

bool punt_monitor::all_probed() const {
  return std::all_of(punts_.begin(), punts_.end(), [](const auto& p) { return !p->probe || p->probed; });
}

std::vector<punt_monitor::reading> punt_monitor::readings() const {
  std::vector<reading> out;
  out.reserve(punts_.size());
  for (const auto& p : punts_) {
    reading r;
    r.punt = p->punt;
    r.probed = p->probed;
    r.up = p->up;
    r.latency = p->latency;
    r.checked = p->checked;
    r.detail = p->probe ? p->detail : "its spool cannot be probed";
    r.sessions = p->service->sessions();
    out.push_back(std::move(r));
  }
  return out;
}

awaitable<void> punt_monitor::settled(std::chrono::milliseconds limit) {
  if (stopped_ || all_probed()) co_return;
  asio::steady_timer wait(loop_);
  wait.expires_after(limit);
  waiters_.push_back(&wait);
  boost::system::error_code ignored;
  co_await wait.async_wait(asio::redirect_error(asio::use_awaitable, ignored));
  waiters_.erase(std::find(waiters_.begin(), waiters_.end(), &wait));
}

namespace {

/// The probes of one `--check`, and how many have not answered yet.
struct check_round {
  std::vector<std::shared_ptr<punt_probe>> probes;
  std::size_t waiting = 0;
};

awaitable<void> check_one(std::shared_ptr<punt_probe> probe, punt_check* out, check_round* round) {
  const auto began = punt_monitor::clock::now();
  try {
    punt_health health = co_await probe->check();
    out->up = health.up;
    out->detail = std::move(health.detail);
  } catch (const std::exception& e) {
    out->detail = e.what();
  }
  out->latency = std::chrono::duration_cast<std::chrono::microseconds>(punt_monitor::clock::now() - began);
  // The last to answer ends the round: what the probes keep (a link and
  // its time limits) would hold the loop until the limits pass.
  if (--round->waiting == 0)
    for (const auto& p : round->probes) p->stop();
}

}  // namespace

std::vector<punt_check> check_punts(const std::vector<std::pair<std::string, spool*>>& spools) {
  std::vector<punt_check> out(spools.size());
  asio::io_context loop(1);
  check_round round;
  for (std::size_t i = 0; i < spools.size(); ++i) {
    out[i].punt = spools[i].second->punt();
    std::shared_ptr<punt_probe> probe = spools[i].second->make_probe(loop.get_executor());
    if (!probe) continue;
    out[i].probed = true;
    round.probes.push_back(probe);
  }
  round.waiting = round.probes.size();
  for (std::size_t i = 0, p = 0; i < spools.size(); ++i)
    if (out[i].probed) asio::co_spawn(loop, check_one(round.probes[p++], &out[i], &round), asio::detached);
  loop.run();
  // The probes go here, with their loop still alive.
  round.probes.clear();
  return out;
}

}  // namespace sdps::core
