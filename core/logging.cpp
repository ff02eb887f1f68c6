#include "logging.hpp"

#include <cstdio>
#include <ctime>

namespace sdps::core {

namespace {
const char* level_name(log_level level) {
  switch (level) {
    case log_level::debug: return "debug";
    case log_level::info: return "info";
    case log_level::warning: return "warning";
    case log_level::error: return "error";
  }
  return "?";
}
}  // namespace

void stderr_log::write(log_level level, std::string_view line) {
  if (!enabled(level)) return;
  std::timespec now{};
  std::timespec_get(&now, TIME_UTC);
  std::tm utc{};
  gmtime_r(&now.tv_sec, &utc);
  char stamp[32];
  std::strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &utc);
  std::string text;
  text.reserve(line.size() + prefix_.size() + 48);
  text.append(stamp).append(".").append(std::to_string(now.tv_nsec / 1000000 + 1000).substr(1)).append("Z ");
  text.append(level_name(level)).append(" ");
  if (!prefix_.empty()) text.append(prefix_).append(": ");
  // One event, one line: never let a newline from anywhere split it.
  for (char c : line) text.push_back(c == '\n' || c == '\r' ? ' ' : c);
  text.push_back('\n');
  std::lock_guard guard(*lock_);
  std::fwrite(text.data(), 1, text.size(), stderr);
  std::fflush(stderr);
}

log_level parse_level(const std::string& name) {
  if (name == "debug") return log_level::debug;
  if (name == "warning") return log_level::warning;
  if (name == "error") return log_level::error;
  return log_level::info;
}

}  // namespace sdps::core
