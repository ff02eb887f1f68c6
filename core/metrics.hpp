#pragma once
// The process's metrics: what modules and the core count, rendered in the
// Prometheus text exposition format (version 0.0.4) for GET /metrics.

#include <sdps/metrics.hpp>

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
class metrics_registry final : public sdps::metrics {
 public:
  metrics_registry();

  void declare(std::string_view name, std::string_view kind, std::string_view help,
               const std::vector<double>& buckets = {}) override;
  void add(std::string_view name, const metric_labels& labels = {}, double amount = 1) override;
  void set(std::string_view name, const metric_labels& labels, double value) override;
  void observe(std::string_view name, const metric_labels& labels, double value) override;

  /// The current value of one series (0 when absent), for tests.
  double value(std::string_view name, const metric_labels& labels = {}) const;

  /// Every family in the text format, families sorted by name.
  std::string render() const;

  /// The role label of this process's session counters: "embedded",
  /// "frontend" or "backend" (decided from the chain at start-up).
  void set_role(std::string role);
  const std::string& role() const { return role_; }

  // The core's own measurements.
  void session_opened();
  void session_closed();

 private:
  struct series {
    double value = 0;
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

  mutable std::mutex lock_;
  std::map<std::string, family, std::less<>> families_;
  std::string role_ = "embedded";
};

/// The registry of this process (one sdpsd, one set of metrics).
metrics_registry& process_metrics();

}  // namespace sdps::core
