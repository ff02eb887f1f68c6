#include "metrics.hpp"

#include "base/version.hpp"

#include <cmath>
#include <cstdio>

namespace sdps::core {

namespace {

std::string format_number(double v) {
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  if (std::isnan(v)) return "NaN";
  if (v == std::floor(v) && std::fabs(v) < 1e15) return std::to_string(static_cast<long long>(v));
  char text[32];
  std::snprintf(text, sizeof text, "%.9g", v);
  return text;
}

std::string escape_label(std::string_view value) {
  std::string out;
  for (char c : value) {
    if (c == '\\' || c == '"') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out;
}

// A label set with one more pair (the histogram's le), rendered.
std::string with_le(const std::string& key, const std::string& le) {
  const std::string pair = "le=\"" + le + "\"";
  if (key.empty()) return "{" + pair + "}";
  return key.substr(0, key.size() - 1) + "," + pair + "}";
}

}  // namespace

metrics_registry::metrics_registry() {
  declare("sdps_build_info", "gauge", "Version, commit and module ABI of this sdpsd; always 1.");
  set("sdps_build_info",
      {{"version", base::version::number()}, {"commit", base::version::commit()}, {"abi", std::to_string(base::version::abi)}}, 1);
  declare("sdps_sessions_current", "gauge", "POP3 sessions open now.");
  declare("sdps_sessions_total", "counter", "POP3 sessions accepted since start.");
  declare("sdps_session_ends_total", "counter", "Sessions ended, by how they ended.");
  declare("sdps_logins_total", "counter", "Logins (USER/PASS, AUTH), by result (ok, failed).");
  add("sdps_logins_total", {{"result", "ok"}}, 0);
  add("sdps_logins_total", {{"result", "failed"}}, 0);
  declare("sdps_login_failures_total", "counter", "Failed logins, by reason (the refusing login stage's words).");
  declare("sdps_commands_total", "counter", "Commands answered, by verb (verbs no module knows count as OTHER).");
  declare("sdps_sent_bytes_total", "counter", "Octets written to POP3 clients.");
  add("sdps_sent_bytes_total", {}, 0);
  declare("sdps_module_timeouts_total", "counter", "Module calls that overran their timeout, by instance.");
  logins_ok_ = counter("sdps_logins_total", {{"result", "ok"}});
  logins_failed_ = counter("sdps_logins_total", {{"result", "failed"}});
  sent_bytes_ = counter("sdps_sent_bytes_total");
}

std::atomic<double>* metrics_registry::cell(std::string_view name, std::string_view kind,
                                            const metric_labels& labels) {
  return &find_or_make(name, kind).rows[label_key(labels)].value;
}

counter_handle metrics_registry::counter(std::string_view name, const metric_labels& labels) {
  std::lock_guard guard(lock_);
  return counter_handle(cell(name, "counter", labels));
}

void metrics_registry::set_role(std::string role) {
  std::lock_guard guard(lock_);
  role_ = std::move(role);
  const metric_labels labels{{"role", role_}};
  sessions_total_ = counter_handle(cell("sdps_sessions_total", "counter", labels));
  sessions_current_ = cell("sdps_sessions_current", "gauge", labels);
}

void metrics_registry::resolve(const std::vector<std::string>& verbs, const std::vector<std::string>& ends) {
  std::lock_guard guard(lock_);
  for (const std::string& verb : verbs)
    commands_[verb] = counter_handle(cell("sdps_commands_total", "counter", {{"verb", verb}}));
  for (const std::string& how : ends)
    ends_[how] = counter_handle(cell("sdps_session_ends_total", "counter", {{"end", how}}));
}

void metrics_registry::session_opened() {
  sessions_total_.add();
  if (sessions_current_) sessions_current_->fetch_add(1, std::memory_order_relaxed);
}

void metrics_registry::session_closed(std::string_view how) {
  if (sessions_current_) sessions_current_->fetch_sub(1, std::memory_order_relaxed);
  if (const auto it = ends_.find(how); it != ends_.end())
    it->second.add();
  else
    add("sdps_session_ends_total", {{"end", std::string(how)}});
}

void metrics_registry::command(std::string_view verb) {
  if (const auto it = commands_.find(verb); it != commands_.end())
    it->second.add();
  else
    add("sdps_commands_total", {{"verb", std::string(verb)}});
}

void metrics_registry::login_failed(std::string_view reason) {
  logins_failed_.add();
  add("sdps_login_failures_total", {{"reason", std::string(reason)}});
}

std::string metrics_registry::label_key(const metric_labels& labels) {
  if (labels.empty()) return {};
  std::string out = "{";
  for (std::size_t i = 0; i < labels.size(); ++i) {
    if (i) out += ',';
    out += labels[i].first + "=\"" + escape_label(labels[i].second) + "\"";
  }
  return out + "}";
}

metrics_registry::family& metrics_registry::find_or_make(std::string_view name, std::string_view kind) {
  auto it = families_.find(name);
  if (it == families_.end()) {
    it = families_.emplace(std::string(name), family{}).first;
    it->second.kind = std::string(kind);
    if (kind == "histogram") it->second.bounds = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
  }
  return it->second;
}

void metrics_registry::declare(std::string_view name, std::string_view kind, std::string_view help,
                               const std::vector<double>& buckets) {
  std::lock_guard guard(lock_);
  family& f = find_or_make(name, kind);
  f.kind = std::string(kind);
  f.help = std::string(help);
  if (!buckets.empty()) f.bounds = buckets;
}

void metrics_registry::add(std::string_view name, const metric_labels& labels, double amount) {
  if (!(amount >= 0)) return;
  std::lock_guard guard(lock_);
  cell(name, "counter", labels)->fetch_add(amount, std::memory_order_relaxed);
}

void metrics_registry::set(std::string_view name, const metric_labels& labels, double value) {
  std::lock_guard guard(lock_);
  cell(name, "gauge", labels)->store(value, std::memory_order_relaxed);
}

void metrics_registry::observe(std::string_view name, const metric_labels& labels, double value) {
  std::lock_guard guard(lock_);
  family& f = find_or_make(name, "histogram");
  series& s = f.rows[label_key(labels)];
  s.buckets.resize(f.bounds.size());
  for (std::size_t i = 0; i < f.bounds.size(); ++i)
    if (value <= f.bounds[i]) ++s.buckets[i];
  s.sum += value;
  ++s.count;
}

double metrics_registry::value(std::string_view name, const metric_labels& labels) const {
  std::lock_guard guard(lock_);
  const auto it = families_.find(name);
  if (it == families_.end()) return 0;
  const auto row = it->second.rows.find(label_key(labels));
  if (row == it->second.rows.end()) return 0;
  return it->second.kind == "histogram" ? static_cast<double>(row->second.count) : row->second.value.load();
}

std::string metrics_registry::render() const {
  std::lock_guard guard(lock_);
  std::string out;
  for (const auto& [name, f] : families_) {
    if (!f.help.empty()) out += "# HELP " + name + " " + f.help + "\n";
    out += "# TYPE " + name + " " + f.kind + "\n";
    for (const auto& [key, s] : f.rows) {
      if (f.kind != "histogram") {
        out += name + key + " " + format_number(s.value.load(std::memory_order_relaxed)) + "\n";
        continue;
      }
      // Buckets are cumulative in the format; observe() counted each
      // value in every bucket it fits, which is the same thing.
      for (std::size_t i = 0; i < f.bounds.size(); ++i)
        out += name + "_bucket" + with_le(key, format_number(f.bounds[i])) + " " +
               format_number(static_cast<double>(i < s.buckets.size() ? s.buckets[i] : 0)) + "\n";
      out += name + "_bucket" + with_le(key, "+Inf") + " " + format_number(static_cast<double>(s.count)) + "\n";
      out += name + "_sum" + key + " " + format_number(s.sum) + "\n";
      out += name + "_count" + key + " " + format_number(static_cast<double>(s.count)) + "\n";
    }
  }
  return out;
}

metrics_registry& process_metrics() {
  static metrics_registry registry;
  return registry;
}

}  // namespace sdps::core
