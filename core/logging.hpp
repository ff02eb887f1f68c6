#pragma once
// The server's log: one line per call, to stderr, safe from any thread.

#include <sdps/log.hpp>

#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace sdps::core {

/// Named values of one structured log event (the session's logout line).
using log_fields = std::vector<std::pair<std::string, std::string>>;

/// Writes "TIME LEVEL prefix: text" lines to stderr under a mutex, or with
/// `log_format: json` one JSON object per line:
/// {"time":...,"level":...,"source":prefix,"message":text}.
class stderr_log final : public sdps::logger {
 public:
  explicit stderr_log(log_level minimum, std::string prefix = {}, std::shared_ptr<std::mutex> lock = nullptr)
      : minimum_(minimum), prefix_(std::move(prefix)), lock_(lock ? std::move(lock) : std::make_shared<std::mutex>()) {}

  void write(log_level level, std::string_view line) override;
  bool enabled(log_level level) const override { return level >= minimum_; }
  void set_minimum(log_level level) { minimum_ = level; }
  /// JSON lines instead of text (set before deriving loggers).
  void set_json(bool json) { json_ = json; }

  /// One event with named fields: text "EVENT k=v k=\"v w\"", or in JSON
  /// mode {"time":...,"level":...,"source":...,"event":EVENT,"k":"v",...}.
  void write_event(log_level level, std::string_view event, const log_fields& fields);

  /// A logger sharing this one's output, level and format, with a longer prefix.
  std::unique_ptr<stderr_log> derive(const std::string& prefix) const {
    auto out = std::make_unique<stderr_log>(minimum_, prefix_.empty() ? prefix : prefix_ + " " + prefix, lock_);
    out->json_ = json_;
    return out;
  }

 private:
  void emit(log_level level, std::string_view text, const std::string& json_body);

  log_level minimum_;
  bool json_ = false;
  std::string prefix_;
  std::shared_ptr<std::mutex> lock_;
};

log_level parse_level(const std::string& name);

}  // namespace sdps::core
