#include "address_guard.hpp"

#include <algorithm>

namespace sdps::auth {

namespace {
/// The failure table is swept of ended windows when it grows past this.
constexpr std::size_t prune_at = 4096;
}  // namespace

asio::ip::address address_guard::canonical(const asio::ip::address& a) {
  if (a.is_v6() && a.to_v6().is_v4_mapped()) return asio::ip::make_address_v4(asio::ip::v4_mapped, a.to_v6());
  return a;
}

void address_guard::prune(clock::time_point now) {
  if (failures_.size() < prune_at) return;
  for (auto it = failures_.begin(); it != failures_.end();)
    it = now - it->second.window_start >= limits_.failure_window ? failures_.erase(it) : std::next(it);
}

bool address_guard::refused(const asio::ip::address& address, clock::time_point now, bool& first) {
  first = false;
  if (limits_.max_failures == 0) return false;
  std::lock_guard guard(mutex_);
  const auto it = failures_.find(canonical(address));
  if (it == failures_.end()) return false;
  failures& f = it->second;
  if (now - f.window_start >= limits_.failure_window) {
    failures_.erase(it);
    return false;
  }
  if (f.count < limits_.max_failures) return false;
  first = !f.refusal_logged;
  f.refusal_logged = true;
  return true;
}

std::chrono::milliseconds address_guard::failed(const asio::ip::address& address, clock::time_point now) {
  std::lock_guard guard(mutex_);
  prune(now);
  failures& f = failures_[canonical(address)];
  if (f.count == 0 || now - f.window_start >= limits_.failure_window) f = failures{0, now, false};
  ++f.count;
  auto delay = limits_.fail_delay;
  const auto cap = std::max(limits_.max_delay, limits_.fail_delay);
  for (unsigned n = limits_.free_failures; n < f.count && delay < cap; ++n) delay *= 2;
  return std::min(delay, cap);
}

std::size_t address_guard::tracked() const {
  std::lock_guard guard(mutex_);
  return failures_.size();
}

awaitable<std::unique_ptr<address_guard::check_slot>> address_guard::check(const asio::ip::address& address,
                                                                          executor ex) {
  const auto a = canonical(address);
  std::shared_ptr<waiter> w;
  {
    std::lock_guard guard(mutex_);
    checks& c = checks_[a];
    if (limits_.max_checks == 0 || c.held < limits_.max_checks) {
      ++c.held;
      co_return std::make_unique<check_slot>(*this, a);
    }
    w = std::make_shared<waiter>();
    w->timer = std::make_shared<asio::steady_timer>(ex, asio::steady_timer::time_point::max());
    c.queue.push_back(w);
  }
  // release() hands the slot over (granted) and wakes the timer through
  // the waiter's own executor, so the wake-up cannot overtake this wait.
  for (;;) {
    boost::system::error_code ignored;
    co_await w->timer->async_wait(asio::redirect_error(asio::use_awaitable, ignored));
    std::lock_guard guard(mutex_);
    if (w->granted) break;
  }
  co_return std::make_unique<check_slot>(*this, a);
}

void address_guard::release(const asio::ip::address& a) {
  std::lock_guard guard(mutex_);
  const auto it = checks_.find(a);
  if (it == checks_.end()) return;
  checks& c = it->second;
  if (!c.queue.empty()) {
    // The slot passes to the oldest waiter: held stays the same.
    auto next = std::move(c.queue.front());
    c.queue.pop_front();
    next->granted = true;
    auto timer = next->timer;
    asio::post(timer->get_executor(), [timer] { timer->cancel(); });
    return;
  }
  if (c.held > 0) --c.held;
  if (c.held == 0) checks_.erase(it);
}

void address_guard::set_limits(const address_limits& limits) {
  std::lock_guard guard(mutex_);
  limits_ = limits;
  // A raised bound lets waiting checks through at once.
  for (auto& [address, c] : checks_)
    while (!c.queue.empty() && (limits_.max_checks == 0 || c.held < limits_.max_checks)) {
      auto next = std::move(c.queue.front());
      c.queue.pop_front();
      ++c.held;
      next->granted = true;
      auto timer = next->timer;
      asio::post(timer->get_executor(), [timer] { timer->cancel(); });
    }
}

address_guard::check_slot::~check_slot() { guard_->release(address_); }

}  // namespace sdps::auth
