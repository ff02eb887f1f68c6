#pragma once
// The process's metrics: what modules and the core count, rendered in the
// Prometheus text exposition format (version 0.0.4) for GET /metrics.

#include <sdps/metrics.hpp>

#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

namespace sdps::core {

/// Counters, gauges and histograms by family name and label set. Every call
/// is thread-safe. The core's own families are declared (with help text and
/// zero values where a scrape should always show them) at construction.
///
/// Counter and gauge values are atomics in map nodes that never move, so a
/// series resolved once (counter(), and the core's own per-session and
/// per-command counts) is added to without the mutex; the mutex guards the
/// maps themselves and the histograms.
class metrics_registry final : public sdps::metrics {
 public:
  metrics_registry();

  void declare(std::string_view name, std::string_view kind, std::string_view help,
               const std::vector<double>& buckets = {}) override;
  void add(std::string_view name, const metric_labels& labels = {}, double amount = 1) override;
  void set(std::string_view name, const metric_labels& labels, double value) override;
  void observe(std::string_view name, const metric_labels& labels, double value) override;
  counter_handle counter(std::string_view name, const metric_labels& labels = {}) override;

  /// The current value of one series (0 when absent), for tests.
  double value(std::string_view name, const metric_labels& labels = {}) const;

  /// Every family in the text format, families sorted by name.
  std::string render() const;

  /// The role label of this process's session counters: "embedded",
  /// "frontend" or "backend" (decided from the chain at start-up), and the
  /// label values the core counts by: the verbs the chain declares and the
  /// ways a session ends. Resolves the core's series; call it once, before
  /// the event loops start.
  void set_role(std::string role);
  void resolve(const std::vector<std::string>& verbs, const std::vector<std::string>& ends);
  const std::string& role() const { return role_; }

  // The core's own measurements: no lock, no lookup beyond a small
  // read-only table for the labelled ones.
  void session_opened();
  /// A session is over; `how` is its end reason (session_end).
  void session_closed(std::string_view how);
  /// One command answered; `verb` as sdps_commands_total labels it.
  void command(std::string_view verb);
  void login_ok() { logins_ok_.add(); }
  /// A login refused at some stage; `reason` is the stage's fixed words.
  void login_failed(std::string_view reason);
  void sent(std::size_t octets) { sent_bytes_.add(static_cast<double>(octets)); }

 private:
  struct series {
    std::atomic<double> value{0};
    std::vector<std::uint64_t> buckets;  // histogram: count per upper bound
    double sum = 0;
    std::uint64_t count = 0;
  };
  struct family {
    std::string kind;
    std::string help;
    std::vector<double> bounds;
    std::map<std::string, series> rows;  // key: rendered label set, "" or {a="b"}
  };
  family& find_or_make(std::string_view name, std::string_view kind);
  static std::string label_key(const metric_labels& labels);

  /// The cell of one counter or gauge series; mutex held.
  std::atomic<double>* cell(std::string_view name, std::string_view kind, const metric_labels& labels);

  mutable std::mutex lock_;
  std::map<std::string, family, std::less<>> families_;
  std::string role_ = "embedded";
  // Resolved by the constructor, set_role() and resolve(); read-only while
  // the event loops run. Sessions count only once a role is set.
  counter_handle sessions_total_, logins_ok_, logins_failed_, sent_bytes_;
  std::atomic<double>* sessions_current_ = nullptr;
  std::map<std::string, counter_handle, std::less<>> commands_, ends_;
};

/// The registry of this process (one sdpsd, one set of metrics).
metrics_registry& process_metrics();

}  // namespace sdps::core
