#pragma once
/// @file
/// The one place sdps's log lines are written, for sdpsd and the admin
/// tool's long-running `sdps lmtp` alike: a sink that takes a level and a
/// line (or a structured event) and writes it to its target, and a logger
/// over it that puts a source prefix in front ("sdpsd session 7").
///
/// Targets (`log_target:`):
///  - stderr: "TIME LEVEL SOURCE: text", or one JSON object per line with
///    `log_format: json`;
///  - journal: standard error read by journald: each line starts with its
///    syslog priority, "<4>", and carries no time of its own (journald
///    stamps it); what sdpsd chooses by itself when `JOURNAL_STREAM`
///    names its standard error (systemd.exec(5));
///  - syslog: one datagram per line to the local syslog socket (`/dev/log`),
///    framed as glibc's syslog(3) frames it (RFC 3164: "<PRI>Mmm dd
///    hh:mm:ss IDENT[PID]: text"), facility `syslog_facility:`.
/// Levels map to syslog severities: debug 7, info 6, warning 4, error 3.

#include "base/descriptor.hpp"

#include <sdps/log.hpp>

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace sdps::logging {

/// Where lines go.
enum class target { stderr_lines, journal, syslog };
/// How a line is written.
enum class format { text, json };

/// A sink's settings: the config's `log_level`, `log_format`,
/// `log_target`, `syslog_facility` and `syslog_socket`.
struct options {
  log_level minimum = log_level::info;
  logging::format format = format::text;
  /// Empty: journal when standard error is the journal (journal_on()),
  /// else stderr_lines.
  std::optional<logging::target> target;
  /// syslog(3)'s facility code (LOG_MAIL is 2 << 3).
  int facility = 2 << 3;
  std::string syslog_socket = "/dev/log";
  /// The program's name in syslog lines.
  std::string ident = "sdps";

  bool operator==(const options&) const = default;
};

/// "debug", "info", "warning", "error".
const char* level_name(log_level level);
/// The level named `name`; nullopt for anything else.
std::optional<log_level> parse_level(std::string_view name);
/// "stderr", "journal", "syslog".
const char* target_name(target t);
std::optional<target> parse_target(std::string_view name);
/// A syslog facility by name: "mail", "daemon", "user", "local0" ...
/// "local7"; its code (the value syslog(3) takes), nullopt if unknown.
std::optional<int> parse_facility(std::string_view name);
/// The syslog severity of a level: 7, 6, 4, 3.
int severity(log_level level);

/// Whether `JOURNAL_STREAM` ("DEVICE:INODE", set by systemd when standard
/// output or error is connected to the journal) names the file `fd` is
/// open on.
bool journal_on(int fd);

/// One named value of a structured event (the logout line). `text` is how
/// the text format writes it (key=text); `json` the members the JSON
/// format writes for it, each a key and a JSON value written as it is
/// (numbers as numbers); empty: {key: text as a JSON string}.
struct field {
  std::string key;
  std::string text;
  std::vector<std::pair<std::string, std::string>> json;
};
using fields = std::vector<field>;

/// A text value, a JSON string.
field text_field(std::string key, std::string value);
/// A whole number, a JSON number.
field number_field(std::string key, std::uint64_t value);
/// A duration: text "3.214s", JSON 3.214 (seconds).
field seconds_field(std::string key, double seconds);
/// Messages and their octets: text "N/OCTETS", JSON `key: N` and
/// `key_octets: OCTETS`.
field count_field(std::string key, std::uint64_t count, std::uint64_t octets);

/// Writes lines to its target. Thread-safe: lines from any thread come out
/// whole, one after another; configure() may run while others write.
class sink {
 public:
  /// `stderr_fd` is where stderr and journal lines go (tests give a file
  /// or a pipe of their own).
  explicit sink(options o, int stderr_fd = 2);
  ~sink();
  sink(const sink&) = delete;
  sink& operator=(const sink&) = delete;

  /// Takes new settings (SIGHUP): the level at once, the format and the
  /// target from the next line on.
  void configure(options o);
  options settings() const;
  /// The target in force (the journal when detected).
  logging::target target() const;

  bool enabled(log_level level) const {
    return static_cast<int>(level) >= minimum_.load(std::memory_order_relaxed);
  }
  /// One line: `source` ("sdpsd session 7") and `text`. Newlines in
  /// `text` become spaces: one event, one line.
  void write(log_level level, std::string_view source, std::string_view text);
  /// One event with named values: text "EVENT k=v k=\"v w\"", JSON
  /// {"event":EVENT,"k":"v",...}.
  void write_event(log_level level, std::string_view source, std::string_view event, const fields& values);

 private:
  /// Writes one line (without its time, level and source) to the target;
  /// `json` is the JSON object's members after time, level and source.
  void emit(log_level level, std::string_view source, std::string_view text, std::string_view json);
  /// Sends one datagram to the syslog socket, connecting (again) when
  /// needed; false when it cannot.
  bool send_syslog(const std::string& datagram);  // lock_ held

  std::atomic<int> minimum_;
  int stderr_fd_;
  mutable std::mutex lock_;  // guards the members below, and the output
  options options_;
  logging::target target_;
  base::unique_fd syslog_fd_;
  bool syslog_stream_ = false;
  bool syslog_failed_ = false;  // said once on stderr
};

/// A logger over a shared sink, with a source prefix: what sdpsd's
/// modules, sessions and the core write through, and `sdps lmtp`.
class source_log final : public sdps::logger {
 public:
  explicit source_log(std::shared_ptr<sink> out, std::string source = {})
      : out_(std::move(out)), source_(std::move(source)) {}
  /// A logger with a sink of its own on standard error (tests, tools).
  explicit source_log(log_level minimum = log_level::info, std::string source = {});

  void write(log_level level, std::string_view line) override;
  bool enabled(log_level level) const override { return copy_ || out_->enabled(level); }
  /// One structured event (see sink::write_event).
  void write_event(log_level level, std::string_view event, const fields& values);

  /// A logger on the same sink with a longer source ("sdpsd" + "session
  /// 7"); it copies to where this one copies (copy_to).
  std::unique_ptr<source_log> derive(const std::string& source) const;
  /// Also hands every line written from now on ("source: text", whatever
  /// the level) to `copy`, and so do loggers derived after this call: what
  /// unit tests read log lines through. `copy` must outlive them.
  void copy_to(sdps::logger* copy) { copy_ = copy; }

  const std::shared_ptr<sink>& output() const { return out_; }
  const std::string& source() const { return source_; }

 private:
  std::shared_ptr<sink> out_;
  std::string source_;
  sdps::logger* copy_ = nullptr;
};

}  // namespace sdps::logging
