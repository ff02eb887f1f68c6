#include "logging/sink.hpp"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>

namespace sdps::logging {

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
  out += '"';
  return out;
}

std::string field_text(const std::string& value) {
  if (!value.empty() && value.find_first_of(" \"=") == std::string::npos) return value;
  std::string out = "\"";
  for (char c : value) out += c == '"' ? '\'' : c;
  out += '"';
  return out;
}

/// "2025-11-30T12:00:00.000Z".
std::string utc_now() {
  std::timespec now{};
  std::timespec_get(&now, TIME_UTC);
  std::tm utc{};
  gmtime_r(&now.tv_sec, &utc);
  char stamp[40];
  const std::size_t n = std::strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &utc);
  std::snprintf(stamp + n, sizeof stamp - n, ".%03dZ", static_cast<int>(now.tv_nsec / 1000000));
  return stamp;
}

/// RFC 3164's "Mmm dd hh:mm:ss", local time, as syslog(3) writes it.
std::string syslog_now() {
  const std::time_t now = std::time(nullptr);
  std::tm local{};
  localtime_r(&now, &local);
  char stamp[32];
  std::strftime(stamp, sizeof stamp, "%b %e %H:%M:%S", &local);
  return stamp;
}

void write_all(int fd, std::string_view data) {
  while (!data.empty()) {
    const ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return;  // nowhere left to say it
    }
    data.remove_prefix(static_cast<std::size_t>(n));
  }
}

struct facility_name {
  const char* name;
  int code;
};
constexpr facility_name facilities[] = {
    {"kern", 0 << 3},    {"user", 1 << 3},    {"mail", 2 << 3},    {"daemon", 3 << 3},  {"auth", 4 << 3},
    {"authpriv", 10 << 3}, {"local0", 16 << 3}, {"local1", 17 << 3}, {"local2", 18 << 3}, {"local3", 19 << 3},
    {"local4", 20 << 3}, {"local5", 21 << 3}, {"local6", 22 << 3}, {"local7", 23 << 3},
};

}  // namespace

const char* level_name(log_level level) {
  switch (level) {
    case log_level::debug: return "debug";
    case log_level::info: return "info";
    case log_level::warning: return "warning";
    case log_level::error: return "error";
  }
  return "?";
}

std::optional<log_level> parse_level(std::string_view name) {
  for (const log_level l : {log_level::debug, log_level::info, log_level::warning, log_level::error})
    if (name == level_name(l)) return l;
  return std::nullopt;
}

const char* target_name(target t) {
  switch (t) {
    case target::stderr_lines: return "stderr";
    case target::journal: return "journal";
    case target::syslog: return "syslog";
  }
  return "?";
}

std::optional<target> parse_target(std::string_view name) {
  for (const target t : {target::stderr_lines, target::journal, target::syslog})
    if (name == target_name(t)) return t;
  return std::nullopt;
}

std::optional<int> parse_facility(std::string_view name) {
  for (const auto& f : facilities)
    if (name == f.name) return f.code;
  return std::nullopt;
}

int severity(log_level level) {
  switch (level) {
    case log_level::debug: return 7;
    case log_level::info: return 6;
    case log_level::warning: return 4;
    case log_level::error: return 3;
  }
  return 6;
}

bool journal_on(int fd) {
  const char* stream = std::getenv("JOURNAL_STREAM");
  if (!stream || !*stream) return false;
  unsigned long long device = 0, inode = 0;
  char rest = 0;
  if (std::sscanf(stream, "%llu:%llu%c", &device, &inode, &rest) != 2) return false;
  struct stat st {};
  if (::fstat(fd, &st) != 0) return false;
  return static_cast<unsigned long long>(st.st_dev) == device && static_cast<unsigned long long>(st.st_ino) == inode;
}

field text_field(std::string key, std::string value) { return {std::move(key), std::move(value), {}}; }

field number_field(std::string key, std::uint64_t value) {
  std::string text = std::to_string(value);
  field f{std::move(key), text, {}};
  f.json.emplace_back(f.key, std::move(text));
  return f;
}

field seconds_field(std::string key, double seconds) {
  char number[32];
  std::snprintf(number, sizeof number, "%.3f", seconds);
  field f{std::move(key), std::string(number) + "s", {}};
  f.json.emplace_back(f.key, number);
  return f;
}

field count_field(std::string key, std::uint64_t count, std::uint64_t octets) {
  std::string text = std::to_string(count);
  text += '/';
  text += std::to_string(octets);
  field f{std::move(key), std::move(text), {}};
  f.json.emplace_back(f.key, std::to_string(count));
  f.json.emplace_back(f.key + "_octets", std::to_string(octets));
  return f;
}

// -- sink ---------------------------------------------------------------------

sink::sink(options o, int stderr_fd) : minimum_(static_cast<int>(o.minimum)), stderr_fd_(stderr_fd) {
  configure(std::move(o));
}

sink::~sink() = default;

void sink::configure(options o) {
  std::lock_guard guard(lock_);
  const logging::target wanted = o.target ? *o.target : journal_on(stderr_fd_) ? target::journal : target::stderr_lines;
  if (wanted != target::syslog || o.syslog_socket != options_.syslog_socket) {
    syslog_fd_.reset();
    syslog_failed_ = false;
  }
  target_ = wanted;
  minimum_.store(static_cast<int>(o.minimum), std::memory_order_relaxed);
  options_ = std::move(o);
}

options sink::settings() const {
  std::lock_guard guard(lock_);
  return options_;
}

logging::target sink::target() const {
  std::lock_guard guard(lock_);
  return target_;
}

void sink::write(log_level level, std::string_view source, std::string_view text) {
  if (!enabled(level)) return;
  std::string json = "\"message\":";
  json += json_string(text);
  emit(level, source, text, json);
}

void sink::write_event(log_level level, std::string_view source, std::string_view event, const fields& values) {
  if (!enabled(level)) return;
  std::string text(event);
  std::string json = "\"event\":";
  json += json_string(event);
  for (const field& f : values) {
    text += ' ';
    text += f.key;
    text += '=';
    text += field_text(f.text);
    if (f.json.empty()) {
      json += ',';
      json += json_string(f.key);
      json += ':';
      json += json_string(f.text);
    }
    for (const auto& member : f.json) {
      json += ',';
      json += json_string(member.first);
      json += ':';
      json += member.second;
    }
  }
  emit(level, source, text, json);
}

void sink::emit(log_level level, std::string_view source, std::string_view text, std::string_view json) {
  std::lock_guard guard(lock_);
  const bool timed = target_ == target::stderr_lines;
  // The line without the framing its target adds.
  std::string body;
  body.reserve(text.size() + source.size() + 64);
  if (options_.format == format::json) {
    body += '{';
    if (timed) {
      body += "\"time\":\"";
      body += utc_now();
      body += "\",";
    }
    body += "\"level\":\"";
    body += level_name(level);
    body += "\",\"source\":";
    body += json_string(source);
    body += ',';
    body += json;
    body += '}';
  } else {
    if (timed) {
      body += utc_now();
      body += ' ';
      body += level_name(level);
      body += ' ';
    }
    if (!source.empty()) {
      body += source;
      body += ": ";
    }
    // One event, one line: never let a newline from anywhere split it.
    for (char c : text) body.push_back(c == '\n' || c == '\r' ? ' ' : c);
  }

  if (target_ == target::syslog) {
    std::string datagram = "<";
    datagram += std::to_string(options_.facility | severity(level));
    datagram += '>';
    datagram += syslog_now();
    datagram += ' ';
    datagram += options_.ident;
    datagram += '[';
    datagram += std::to_string(::getpid());
    datagram += "]: ";
    datagram += body;
    if (send_syslog(datagram)) return;
    // The syslog daemon is not there: the line goes to standard error
    // rather than nowhere, with its time.
    std::string line = utc_now();
    line += ' ';
    line += level_name(level);
    line += ' ';
    line += body;
    line += '\n';
    write_all(stderr_fd_, line);
    return;
  }
  std::string line;
  if (target_ == target::journal) {
    line = "<";
    line += std::to_string(severity(level));
    line += '>';
  }
  line += body;
  line += '\n';
  write_all(stderr_fd_, line);
}

bool sink::send_syslog(const std::string& datagram) {
  for (int attempt = 0; attempt < 2; ++attempt) {
    if (!syslog_fd_.valid()) {
      sockaddr_un address{};
      address.sun_family = AF_UNIX;
      if (options_.syslog_socket.size() >= sizeof address.sun_path) return false;
      std::memcpy(address.sun_path, options_.syslog_socket.data(), options_.syslog_socket.size());
      // A datagram socket, as /dev/log is; a stream socket where the
      // syslog daemon offers one (syslog(3) tries both too).
      int error = 0;
      for (const int type : {SOCK_DGRAM, SOCK_STREAM}) {
        base::unique_fd fd(::socket(AF_UNIX, type | SOCK_CLOEXEC, 0));
        if (!fd.valid()) return false;
        if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&address), sizeof address) == 0) {
          syslog_fd_ = std::move(fd);
          syslog_stream_ = type == SOCK_STREAM;
          break;
        }
        error = errno;
        if (error != EPROTOTYPE) break;
      }
      if (!syslog_fd_.valid()) {
        if (!syslog_failed_) {
          syslog_failed_ = true;
          std::string line = utc_now();
          line += " warning cannot reach the syslog socket ";
          line += options_.syslog_socket;
          line += " (";
          line += std::strerror(error);
          line += "): logging to standard error until it answers\n";
          write_all(stderr_fd_, line);
        }
        return false;
      }
      syslog_failed_ = false;
    }
    // A stream socket separates messages with a NUL, as syslog(3) does.
    const std::size_t size = datagram.size() + (syslog_stream_ ? 1 : 0);
    ssize_t sent;
    do {
      sent = ::send(syslog_fd_.get(), datagram.c_str(), size, MSG_NOSIGNAL);
    } while (sent < 0 && errno == EINTR);
    if (sent == static_cast<ssize_t>(size)) return true;
    // The daemon restarted (the socket was made anew): connect again, once.
    syslog_fd_.reset();
  }
  return false;
}

// -- source_log ---------------------------------------------------------------

source_log::source_log(log_level minimum, std::string source)
    : out_(std::make_shared<sink>(options{minimum, format::text, target::stderr_lines})), source_(std::move(source)) {}

void source_log::write(log_level level, std::string_view line) {
  if (copy_) {
    std::string copied = source_;
    if (!copied.empty()) copied += ": ";
    copied += line;
    copy_->write(level, copied);
  }
  out_->write(level, source_, line);
}

void source_log::write_event(log_level level, std::string_view event, const fields& values) {
  if (copy_) {
    std::string text(event);
    for (const field& f : values) {
      text += ' ';
      text += f.key;
      text += '=';
      text += field_text(f.text);
    }
    copy_->write(level, text);
  }
  out_->write_event(level, source_, event, values);
}

std::unique_ptr<source_log> source_log::derive(const std::string& source) const {
  std::string longer = source_;
  if (!longer.empty() && !source.empty()) longer += ' ';
  longer += source;
  auto out = std::make_unique<source_log>(out_, std::move(longer));
  out->copy_ = copy_;
  return out;
}

}  // namespace sdps::logging
