#pragma once
// The punts' health, probed in the background: every sdps::spool of the
// chain (found in the registry, whatever module provides it), every
// `probe_interval`, on the first event loop, off every session's path.
// docs/operations.md, "Punt health".

#include "base/watchdog.hpp"

#include <sdps/log.hpp>
#include <sdps/maildrop.hpp>
#include <sdps/metrics.hpp>

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace sdps::core {

/// Probes each punt through its spool's punt_probe: at start(), then every
/// interval; a punt whose probe is still under way when the next is due
/// is not probed again until it answers, and counts as down ("no answer
/// within probe_interval") meanwhile. Each result sets
/// `sdps_punt_up{punt}` and `sdps_punt_probe_seconds{punt}`; a change of
/// state is logged (down: warning, up again: info). Every call on the
/// loop given at construction, after construction (which is on the main
/// thread, before the loops run).
class punt_monitor {
 public:
  using clock = std::chrono::steady_clock;

  /// One punt as status shows it.
  struct reading {
    std::string punt;
    bool probed = false;  ///< some probe has answered (or been late)
    bool up = false;
    std::optional<std::chrono::microseconds> latency;  ///< of the last probe that answered
    clock::time_point checked;                         ///< when the last result came
    std::string detail;
    std::size_t sessions = 0;  ///< spool::sessions(), now
  };

  /// `spools` as the registry lists them (instance name, service); spools
  /// that make no probe are listed by readings() as never probed.
  /// Declares the metric families when there is a spool.
  punt_monitor(executor loop, const std::vector<std::pair<std::string, spool*>>& spools,
               std::chrono::milliseconds interval, logger& log, sdps::metrics& metrics);
  ~punt_monitor();
  punt_monitor(const punt_monitor&) = delete;
  punt_monitor& operator=(const punt_monitor&) = delete;

  /// Probes every punt now, and then every interval.
  void start();
  /// Shutdown: no probe starts any more, and those under way are stopped
  /// (punt_probe::stop()) so that the loop can end. Idempotent.
  void stop();

  std::vector<reading> readings() const;
  /// Until every punt that can be probed has a result, or `limit` passes
  /// (what `sdps status` waits for just after start-up).
  awaitable<void> settled(std::chrono::milliseconds limit);
  std::chrono::milliseconds interval() const { return interval_; }
  bool empty() const { return punts_.empty(); }

 private:
  struct punt_state {
    std::string punt;
    spool* service = nullptr;
    std::shared_ptr<punt_probe> probe;  // null: the spool makes none
    bool in_flight = false;
    bool late = false;  // the probe under way was counted down
    clock::time_point started;
    bool probed = false;
    bool up = false;
    std::optional<std::chrono::microseconds> latency;
    clock::time_point checked;
    std::string detail;
  };

  /// The watchdog's tick: late probes counted down, idle punts probed.
  void tick(clock::time_point now);
  static awaitable<void> probe_once(punt_monitor* self, std::shared_ptr<punt_state> punt);
  void record(punt_state& p, bool up, std::string detail, std::optional<std::chrono::microseconds> latency);
  bool all_probed() const;

  executor loop_;
  std::chrono::milliseconds interval_;
  logger& log_;
  sdps::metrics& metrics_;
  std::vector<std::shared_ptr<punt_state>> punts_;
  base::watchdog dog_;
  base::watchdog::id tick_ = 0;
  /// settled()'s waiters, woken when the last punt gets its first result.
  std::vector<asio::steady_timer*> waiters_;
  bool stopped_ = false;
};

/// What `sdpsd --check` found of one punt.
struct punt_check {
  std::string punt;
  bool probed = false;  ///< false: its spool makes no probe
  bool up = false;
  std::chrono::microseconds latency{0};
  std::string detail;
};

/// `sdpsd --check`: every punt probed once, all at the same time, on an
/// event loop of their own (on the calling thread), each bounded by its
/// spool's time limits. A front end connects to each back end and runs
/// XAUTH; a local spool looks at its folder.
std::vector<punt_check> check_punts(const std::vector<std::pair<std::string, spool*>>& spools);

}  // namespace sdps::core
