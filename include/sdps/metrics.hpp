#pragma once
/// @file
/// Metrics a module feeds: counters, gauges and histograms that sdpsd
/// exposes in the Prometheus text format (see docs/operations.md).
///
/// Get the sink from server_context::metrics(). Every call is thread-safe
/// (any event loop thread, or the blocking pool) and cheap; for a count on
/// a hot path, resolve the series once with metrics::counter() and add to
/// the handle, which takes no lock and looks nothing up. Names follow Prometheus rules
/// (`sdps_` prefix, `_total` for counters, `_seconds` for durations); label
/// values must come from a small fixed set (punt names, reasons), never from
/// client input, or the scrape grows without bound. Never put a secret in
/// a name or a label.

#include <atomic>
#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace sdps {

/// Label pairs of one series: {{"punt", "finchley"}}.
using metric_labels = std::vector<std::pair<std::string, std::string>>;

/// One counter series, resolved once by metrics::counter(): add() is one
/// relaxed atomic addition, safe from any thread. A default-made handle
/// drops what it is given. Valid as long as the metrics object that made
/// it (server_context::metrics(): the life of the process).
class counter_handle {
 public:
  counter_handle() = default;
  explicit counter_handle(std::atomic<double>* cell) : cell_(cell) {}
  /// Adds `amount` (>= 0; anything else is ignored).
  void add(double amount = 1) const {
    if (cell_ && amount >= 0) cell_->fetch_add(amount, std::memory_order_relaxed);
  }
  bool live() const { return cell_ != nullptr; }

 private:
  std::atomic<double>* cell_ = nullptr;
};

/// Where modules send measurements. The core's implementation keeps them
/// for the scrape; the default one (tests, tools) drops them.
class metrics {
 public:
  virtual ~metrics() = default;

  /// Declares a family with its help text (optional: an undeclared family
  /// gets its type from the first call and no help). `kind` is "counter",
  /// "gauge" or "histogram". A histogram's `buckets` are upper bounds in
  /// ascending order (seconds for durations).
  virtual void declare(std::string_view name, std::string_view kind, std::string_view help,
                       const std::vector<double>& buckets = {}) {
    (void)name, (void)kind, (void)help, (void)buckets;
  }
  /// Adds `amount` (>= 0) to a counter.
  virtual void add(std::string_view name, const metric_labels& labels = {}, double amount = 1) {
    (void)name, (void)labels, (void)amount;
  }
  /// The series `name` with `labels`, resolved now (created at zero if
  /// new) for later add()s without a lookup. Call it at start-up (create()
  /// or start()), not per event.
  virtual counter_handle counter(std::string_view name, const metric_labels& labels = {}) {
    (void)name, (void)labels;
    return {};
  }
  /// Sets a gauge.
  virtual void set(std::string_view name, const metric_labels& labels, double value) {
    (void)name, (void)labels, (void)value;
  }
  /// Records one observation in a histogram.
  virtual void observe(std::string_view name, const metric_labels& labels, double value) {
    (void)name, (void)labels, (void)value;
  }
};

/// A sink that drops everything: what server_context::metrics() returns
/// when the host process keeps no metrics.
inline metrics& null_metrics() {
  static metrics none;
  return none;
}

}  // namespace sdps
