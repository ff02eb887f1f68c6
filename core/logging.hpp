#pragma once
// The server's log: one line per call, to stderr, safe from any thread.

#include <sdps/log.hpp>

#include <memory>
#include <mutex>
#include <string>

namespace sdps::core {

/// Writes "LEVEL prefix: text" lines to stderr under a mutex.
class stderr_log final : public sdps::logger {
 public:
  explicit stderr_log(log_level minimum, std::string prefix = {}, std::shared_ptr<std::mutex> lock = nullptr)
      : minimum_(minimum), prefix_(std::move(prefix)), lock_(lock ? std::move(lock) : std::make_shared<std::mutex>()) {}

  void write(log_level level, std::string_view line) override;
  bool enabled(log_level level) const override { return level >= minimum_; }
  void set_minimum(log_level level) { minimum_ = level; }

  /// A logger sharing this one's output and level, with a longer prefix.
  std::unique_ptr<stderr_log> derive(const std::string& prefix) const {
    return std::make_unique<stderr_log>(minimum_, prefix_.empty() ? prefix : prefix_ + " " + prefix, lock_);
  }

 private:
  log_level minimum_;
  std::string prefix_;
  std::shared_ptr<std::mutex> lock_;
};

log_level parse_level(const std::string& name);

}  // namespace sdps::core
