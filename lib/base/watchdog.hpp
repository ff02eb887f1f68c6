#pragma once
/// @file
/// The one way sdps bounds things in time: a watchdog keeps any number of
/// deadlines with a single timer, lazily.
///
/// Setting a deadline is a note: the timer is moved only when the new
/// deadline is earlier than the moment it already wakes at, so a deadline
/// set and cleared around every command costs no system call. At the wake,
/// every deadline that has passed is cleared and its callback runs; the
/// timer then sleeps until the earliest deadline still set. A callback may
/// set deadlines again (its own included), which is how a deadline that
/// moves with activity (an idle timer) stays lazy: it is checked when it
/// comes due and set again if activity moved it.
///
/// Used for a session's idle, login and module-call deadlines, a TLS
/// handshake's and a PROXY header's time limits, the metrics endpoint's
/// connections and a front end's back-end links. Boost 1.74 has neither
/// per-operation cancellation nor awaitable operators, so "bounding" an
/// operation is a deadline whose callback closes the socket or ends the
/// session the operation works on.
///
/// One executor: every call, and every callback, on the thread that runs
/// it (a session's event loop). Destroying the watchdog (or stop()) means
/// no callback runs any more.

#include <sdps/asio.hpp>

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>

namespace sdps::base {

class watchdog {
 public:
  using clock = std::chrono::steady_clock;
  using time_point = clock::time_point;
  /// Runs on the executor when its deadline has passed; `now` is the time
  /// of the wake.
  using callback = std::function<void(time_point now)>;
  /// A deadline of this watchdog, as add() gives it.
  using id = std::size_t;
  static constexpr time_point never = time_point::max();

  explicit watchdog(executor ex) : timer_(std::move(ex)), state_(std::make_shared<shared>()) { state_->owner = this; }
  ~watchdog() { stop(); }
  watchdog(const watchdog&) = delete;
  watchdog& operator=(const watchdog&) = delete;

  /// A new deadline, not set yet; `due` runs when it passes.
  id add(callback due) {
    deadlines_.push_back({never, std::move(due)});
    return deadlines_.size() - 1;
  }
  /// Sets deadline `d` to `when` (replacing what it was).
  void set(id d, time_point when) {
    deadlines_.at(d).when = when;
    if (when < armed_) arm(when);
  }
  /// Sets deadline `d` to `limit` from now.
  void set_after(id d, std::chrono::milliseconds limit) { set(d, clock::now() + limit); }
  /// Unsets deadline `d` (a note: the timer is not touched).
  void clear(id d) { deadlines_.at(d).when = never; }
  time_point when(id d) const { return deadlines_.at(d).when; }
  bool is_set(id d) const { return deadlines_.at(d).when != never; }
  /// Wakes by `when` at the latest, whatever the deadlines (for a caller
  /// that wants to look at the time, as an idle timer does).
  void wake_by(time_point when) {
    if (when < armed_) arm(when);
  }
  /// Unsets every deadline and drops the pending wait, so the watchdog
  /// holds no work on its executor (an event loop with nothing else to do
  /// may end: a back-end link idle in its pool); set() arms it again.
  void clear_all() {
    for (deadline& d : deadlines_) d.when = never;
    if (state_->stopped || armed_ == never) return;
    armed_ = never;
    ++state_->generation;  // the wait being cancelled runs nothing
    boost::system::error_code ignored;
    timer_.cancel(ignored);
  }
  /// No callback runs from now on; deadlines set later are ignored.
  void stop() {
    if (state_->stopped) return;
    state_->stopped = true;
    armed_ = time_point::min();  // set() never arms again
    boost::system::error_code ignored;
    timer_.cancel(ignored);
  }
  bool stopped() const { return state_->stopped; }

 private:
  struct deadline {
    time_point when;
    callback due;
  };
  /// What a pending wait refers to: it outlives the watchdog when the
  /// watchdog is destroyed with a wait pending.
  struct shared {
    watchdog* owner = nullptr;
    std::uint64_t generation = 0;
    bool stopped = false;
  };

  void arm(time_point when) {
    if (state_->stopped) return;
    armed_ = when;
    timer_.expires_at(when);  // cancels the wait pending, if any
    const std::uint64_t generation = ++state_->generation;
    timer_.async_wait([state = state_, generation](const boost::system::error_code&) {
      // A wait replaced by a newer one (or after stop) does nothing; only
      // the newest runs the deadlines, whatever its error code.
      if (state->stopped || generation != state->generation) return;
      state->owner->wake();
    });
  }

  void wake() {
    armed_ = never;
    const time_point now = clock::now();
    // By index: a callback may add deadlines (a deque keeps the others
    // where they are) or set them, never remove them.
    for (std::size_t i = 0; i < deadlines_.size() && !state_->stopped; ++i) {
      if (deadlines_[i].when > now) continue;
      deadlines_[i].when = never;
      deadlines_[i].due(now);
    }
    if (state_->stopped) return;
    time_point next = armed_;  // what the callbacks asked for with wake_by()
    for (const deadline& d : deadlines_) next = std::min(next, d.when);
    if (next != never && next != armed_) arm(next);
  }

  asio::steady_timer timer_;
  std::deque<deadline> deadlines_;
  /// When the pending wait ends; `never` when none is pending.
  time_point armed_ = never;
  std::shared_ptr<shared> state_;
};

}  // namespace sdps::base
