#pragma once
// Per-address state the auth module shares across sessions: failed logins
// (a growing delay, then a temporary refusal) and password checks in
// progress (a bound, so that one address cannot fill the hash pool).

#include <sdps/asio.hpp>

#include <chrono>
#include <cstddef>
#include <deque>
#include <map>
#include <memory>
#include <mutex>

namespace sdps::auth {

/// The limits, from the top-level settings (README.md).
struct address_limits {
  /// Failed logins one address may make per window; 0 is no limit.
  unsigned max_failures = 20;
  std::chrono::milliseconds failure_window{std::chrono::minutes(10)};
  /// Password checks of one address queued or running at once; 0 is no limit.
  std::size_t max_checks = 1;
  /// The delay of a failure while the address has made at most
  /// `free_failures` in the window; each further one doubles it.
  std::chrono::milliseconds fail_delay{std::chrono::seconds(1)};
  unsigned free_failures = 5;
  std::chrono::milliseconds max_delay{std::chrono::seconds(15)};
};

/// The table. Every member takes the mutex, so sessions on several
/// threads may share one guard. Addresses are canonical (an IPv4-mapped
/// IPv6 address counts as the IPv4 address).
class address_guard {
 public:
  using clock = std::chrono::steady_clock;

  explicit address_guard(address_limits limits) : limits_(limits) {}

  /// True while `a` has used up its failures for the current window.
  /// `first` is set on the first refusal of a window (log it once).
  bool refused(const asio::ip::address& a, clock::time_point now, bool& first);
  /// Counts a failed login of `a`; returns how long to wait before
  /// answering it.
  std::chrono::milliseconds failed(const asio::ip::address& a, clock::time_point now);

  /// A password check slot of one address, given back by the destructor.
  class check_slot {
   public:
    check_slot(address_guard& g, asio::ip::address a) : guard_(&g), address_(std::move(a)) {}
    ~check_slot();
    check_slot(const check_slot&) = delete;
    check_slot& operator=(const check_slot&) = delete;

   private:
    address_guard* guard_;
    asio::ip::address address_;
  };

  /// Waits (on `ex`, without holding a pool thread) until `a` has fewer
  /// than max_checks checks queued or running, then holds a slot. Slots
  /// are handed on in arrival order.
  awaitable<std::unique_ptr<check_slot>> check(const asio::ip::address& a, executor ex);

  /// New limits (SIGHUP): counts and queues stay; a waiting check is let
  /// through when a slot frees under the new bound.
  void set_limits(const address_limits& limits);

  /// Entries in the failure table now (for tests).
  std::size_t tracked() const;

  static asio::ip::address canonical(const asio::ip::address& a);

 private:
  struct failures {
    unsigned count = 0;
    clock::time_point window_start;
    bool refusal_logged = false;
  };
  struct waiter {
    std::shared_ptr<asio::steady_timer> timer;
    bool granted = false;
  };
  struct checks {
    std::size_t held = 0;
    std::deque<std::shared_ptr<waiter>> queue;
  };
  void release(const asio::ip::address& a);
  void prune(clock::time_point now);  // mutex held

  address_limits limits_;
  mutable std::mutex mutex_;
  std::map<asio::ip::address, failures> failures_;
  std::map<asio::ip::address, checks> checks_;
};

}  // namespace sdps::auth
