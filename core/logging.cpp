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

namespace {

std::string json_string(std::string_view text) {
  static constexpr char hex[] = "0123456789abcdef";
  std::string out = "\"";
  for (unsigned char c : text) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20 || c == 0x7f) {
      out += "\\u00";
      out += hex[c >> 4];
      out += hex[c & 15];
    } else {
      out += static_cast<char>(c);
    }
  }
  return out + "\"";
}

std::string field_value(const std::string& value) {
  if (!value.empty() && value.find_first_of(" \"=") == std::string::npos) return value;
  std::string out = "\"";
  for (char c : value) out += c == '"' ? '\'' : c;
  return out + "\"";
}

}  // namespace

void stderr_log::write(log_level level, std::string_view line) {
  if (!enabled(level)) return;
  emit(level, line, json_ ? "\"message\":" + json_string(line) : std::string());
}

void stderr_log::write_event(log_level level, std::string_view event, const log_fields& fields) {
  if (!enabled(level)) return;
  std::string text(event);
  std::string json = "\"event\":" + json_string(event);
  for (const auto& [key, value] : fields) {
    text += " " + key + "=" + field_value(value);
    json += "," + json_string(key) + ":" + json_string(value);
  }
  emit(level, text, json);
}

void stderr_log::emit(log_level level, std::string_view line, const std::string& json_body) {
  std::timespec now{};
  std::timespec_get(&now, TIME_UTC);
  std::tm utc{};
  gmtime_r(&now.tv_sec, &utc);
  char stamp[32];
  std::strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &utc);
  const std::string time = std::string(stamp) + "." + std::to_string(now.tv_nsec / 1000000 + 1000).substr(1) + "Z";
  std::string text;
  text.reserve(line.size() + prefix_.size() + 64);
  if (json_) {
    text = "{\"time\":\"" + time + "\",\"level\":\"" + level_name(level) + "\",\"source\":" + json_string(prefix_) +
           "," + json_body + "}";
  } else {
    text.append(time).append(" ");
    text.append(level_name(level)).append(" ");
    if (!prefix_.empty()) text.append(prefix_).append(": ");
    // One event, one line: never let a newline from anywhere split it.
    for (char c : line) text.push_back(c == '\n' || c == '\r' ? ' ' : c);
  }
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
