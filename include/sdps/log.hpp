#pragma once
/// @file
/// Logging. One line per call, to the server's log (stderr for sdpsd).
/// Never pass a password, a secret or a message body to a logger.

#include <sstream>
#include <string>
#include <string_view>

namespace sdps {

enum class log_level { debug, info, warning, error };

/// A destination for log lines. Thread-safe: may be called from the event
/// loop and from blocking-pool threads.
class logger {
 public:
  virtual ~logger() = default;
  virtual void write(log_level level, std::string_view line) = 0;
  virtual bool enabled(log_level level) const = 0;

  /// Formats the arguments with operator<< and writes one line.
  template <typename... Args>
  void log(log_level level, const Args&... args) {
    if (!enabled(level)) return;
    std::ostringstream out;
    (out << ... << args);
    write(level, out.str());
  }
  template <typename... Args>
  void debug(const Args&... args) { log(log_level::debug, args...); }
  template <typename... Args>
  void info(const Args&... args) { log(log_level::info, args...); }
  template <typename... Args>
  void warning(const Args&... args) { log(log_level::warning, args...); }
  template <typename... Args>
  void error(const Args&... args) { log(log_level::error, args...); }
};

/// Makes client-supplied text safe for one log line: printable ASCII is
/// kept, anything else becomes `\xNN`, and the result is cut at `limit`.
inline std::string printable(std::string_view text, std::size_t limit = 120) {
  static constexpr char hex[] = "0123456789abcdef";
  std::string out;
  for (unsigned char c : text) {
    if (out.size() >= limit) {
      out += "...";
      break;
    }
    if (c >= 0x20 && c < 0x7f && c != '\\') {
      out += static_cast<char>(c);
    } else {
      out += "\\x";
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

}  // namespace sdps
