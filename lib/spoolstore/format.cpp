#include "spoolstore/format.hpp"

#include <sodium.h>

#include <chrono>
#include <cstdio>
#include <ctime>
#include <mutex>

namespace sdps::spoolstore {

namespace {

constexpr char upper_hex[] = "0123456789ABCDEF";
constexpr char lower_hex[] = "0123456789abcdef";
constexpr std::size_t uidl_time_digits = 17;
constexpr std::size_t uidl_random_digits = 16;

bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_lower_hex(char c) { return is_digit(c) || (c >= 'a' && c <= 'f'); }

bool kept_in_user(char c) {
  return (c >= 'a' && c <= 'z') || is_digit(c) || c == '.' || c == '_' || c == '+' || c == '-';
}

int hex_value(char c) {
  if (is_digit(c)) return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;  // canonical encodings use upper-case hex only
}

std::optional<std::uint64_t> parse_decimal(std::string_view text) {
  if (text.empty() || text.size() > 19) return std::nullopt;
  if (text.size() > 1 && text[0] == '0') return std::nullopt;  // one spelling per number
  std::uint64_t value = 0;
  for (char c : text) {
    if (!is_digit(c)) return std::nullopt;
    value = value * 10 + static_cast<std::uint64_t>(c - '0');
  }
  return value;
}

void ensure_sodium() {
  static std::once_flag once;
  std::call_once(once, [] {
    if (sodium_init() < 0) throw std::runtime_error("libsodium failed to initialise");
  });
}

std::tm utc(std::int64_t us) {
  const std::time_t seconds = static_cast<std::time_t>(us / 1000000);
  std::tm tm{};
  gmtime_r(&seconds, &tm);
  return tm;
}

// "<value>" -> value; nullopt if not bracketed.
std::optional<std::string> unbracket(std::string_view value) {
  if (value.size() < 2 || value.front() != '<' || value.back() != '>') return std::nullopt;
  value = value.substr(1, value.size() - 2);
  if (!valid_address(value)) return std::nullopt;
  return std::string(value);
}

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    char x = a[i], y = b[i];
    if (x >= 'A' && x <= 'Z') x = static_cast<char>(x - 'A' + 'a');
    if (y >= 'A' && y <= 'Z') y = static_cast<char>(y - 'A' + 'a');
    if (x != y) return false;
  }
  return true;
}

// "2026-11-26T20:42:11.123456Z" -> microseconds; nullopt if malformed.
std::optional<std::int64_t> parse_iso(std::string_view text) {
  if (text.size() != 27 || text[4] != '-' || text[7] != '-' || text[10] != 'T' || text[13] != ':' ||
      text[16] != ':' || text[19] != '.' || text[26] != 'Z')
    return std::nullopt;
  auto number = [&](std::size_t at, std::size_t len) -> std::optional<int> {
    int v = 0;
    for (std::size_t i = at; i < at + len; ++i) {
      if (!is_digit(text[i])) return std::nullopt;
      v = v * 10 + (text[i] - '0');
    }
    return v;
  };
  const auto year = number(0, 4), month = number(5, 2), day = number(8, 2), hour = number(11, 2),
             minute = number(14, 2), second = number(17, 2), micro = number(20, 6);
  if (!year || !month || !day || !hour || !minute || !second || !micro) return std::nullopt;
  if (*month < 1 || *month > 12 || *day < 1 || *day > 31 || *hour > 23 || *minute > 59 || *second > 60)
    return std::nullopt;
  const auto days = std::chrono::sys_days(std::chrono::year(*year) / std::chrono::month(*month) /
                                          std::chrono::day(*day));
  const std::int64_t seconds = std::chrono::duration_cast<std::chrono::seconds>(days.time_since_epoch()).count() +
                               *hour * 3600 + *minute * 60 + *second;
  return seconds * 1000000 + *micro;
}

}  // namespace

bool valid_host(std::string_view host) {
  if (host.empty() || host.size() > 63 || host.front() == '-' || host.back() == '-') return false;
  for (char c : host)
    if (!((c >= 'a' && c <= 'z') || is_digit(c) || c == '-')) return false;
  return true;
}

std::string encode_user(std::string_view local_part) {
  std::string out;
  out.reserve(local_part.size());
  for (char raw : local_part) {
    char c = raw;
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    if (kept_in_user(c)) {
      out += c;
    } else {
      const auto u = static_cast<unsigned char>(c);
      out += '%';
      out += upper_hex[u >> 4];
      out += upper_hex[u & 15];
    }
  }
  return out;
}

bool valid_user_encoding(std::string_view encoded) {
  for (std::size_t i = 0; i < encoded.size(); ++i) {
    const char c = encoded[i];
    if (kept_in_user(c)) continue;
    if (c != '%' || i + 2 >= encoded.size()) return false;
    const int hi = hex_value(encoded[i + 1]), lo = hex_value(encoded[i + 2]);
    if (hi < 0 || lo < 0) return false;
    const char decoded = static_cast<char>(hi * 16 + lo);
    // Canonical: what is kept as itself, or an upper-case letter (which
    // encodes lowered), is never written as %XX.
    if (kept_in_user(decoded) || (decoded >= 'A' && decoded <= 'Z')) return false;
    i += 2;
  }
  return true;
}

std::optional<std::string> decode_user(std::string_view encoded) {
  if (!valid_user_encoding(encoded)) return std::nullopt;
  std::string out;
  out.reserve(encoded.size());
  for (std::size_t i = 0; i < encoded.size(); ++i) {
    if (encoded[i] != '%') {
      out += encoded[i];
      continue;
    }
    out += static_cast<char>(hex_value(encoded[i + 1]) * 16 + hex_value(encoded[i + 2]));
    i += 2;
  }
  return out;
}

std::int64_t now_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string new_uidl(std::int64_t arrival_us) {
  ensure_sodium();
  if (arrival_us < 0) arrival_us = 0;
  char time_part[32];
  std::snprintf(time_part, sizeof time_part, "%0*lld", static_cast<int>(uidl_time_digits),
                static_cast<long long>(arrival_us));
  unsigned char random[uidl_random_digits / 2];
  randombytes_buf(random, sizeof random);
  std::string uidl(time_part);
  uidl += '.';
  for (unsigned char b : random) {
    uidl += lower_hex[b >> 4];
    uidl += lower_hex[b & 15];
  }
  return uidl;
}

bool valid_uidl(std::string_view uidl) {
  if (uidl.size() != uidl_time_digits + 1 + uidl_random_digits || uidl[uidl_time_digits] != '.') return false;
  for (std::size_t i = 0; i < uidl_time_digits; ++i)
    if (!is_digit(uidl[i])) return false;
  for (std::size_t i = uidl_time_digits + 1; i < uidl.size(); ++i)
    if (!is_lower_hex(uidl[i])) return false;
  return true;
}

std::int64_t uidl_arrival(std::string_view uidl) {
  std::int64_t value = 0;
  for (std::size_t i = 0; i < uidl_time_digits && i < uidl.size(); ++i) value = value * 10 + (uidl[i] - '0');
  return value;
}

std::string format_name(const file_name& name) {
  return name.uidl + ",s=" + std::to_string(name.size) + ",u=" + name.user;
}

std::optional<name_view> parse_name_view(std::string_view text) {
  // UIDL: 17 digits, '.', 16 lower-case hex digits (valid_uidl), read as
  // the two numbers they are in the same pass.
  constexpr std::size_t uidl_length = uidl_time_digits + 1 + uidl_random_digits;
  if (text.size() <= uidl_length || text[uidl_length] != ',' || text[uidl_time_digits] != '.') return std::nullopt;
  name_view name;
  std::int64_t arrival = 0;
  for (std::size_t i = 0; i < uidl_time_digits; ++i) {
    if (!is_digit(text[i])) return std::nullopt;
    arrival = arrival * 10 + (text[i] - '0');
  }
  std::uint64_t random = 0;
  for (std::size_t i = uidl_time_digits + 1; i < uidl_length; ++i) {
    const char c = text[i];
    if (!is_lower_hex(c)) return std::nullopt;
    random = random << 4 | static_cast<std::uint64_t>(c <= '9' ? c - '0' : c - 'a' + 10);
  }
  name.uidl = text.substr(0, uidl_length);
  name.arrival = arrival;
  name.random = random;
  bool have_size = false, have_user = false;
  std::string_view rest = text.substr(uidl_length + 1);
  for (;;) {
    const auto end = rest.find(',');
    const std::string_view field = rest.substr(0, end);
    const auto eq = field.find('=');
    if (eq == std::string_view::npos || eq == 0) return std::nullopt;
    const std::string_view key = field.substr(0, eq), value = field.substr(eq + 1);
    if (key == "s") {
      const auto size = parse_decimal(value);
      if (have_size || !size) return std::nullopt;
      name.size = *size;
      have_size = true;
    } else if (key == "u") {
      if (have_user || value.empty() || !valid_user_encoding(value)) return std::nullopt;
      name.user = value;
      have_user = true;
    }
    // Other keys are for later versions: ignored.
    if (end == std::string_view::npos) break;
    rest.remove_prefix(end + 1);
  }
  if (!have_size || !have_user) return std::nullopt;
  return name;
}

std::optional<file_name> parse_name(std::string_view text) {
  const auto view = parse_name_view(text);
  if (!view) return std::nullopt;
  return file_name{std::string(view->uidl), view->size, std::string(view->user), view->arrival};
}

bool valid_address(std::string_view address) {
  if (address.size() > max_address) return false;
  for (char c : address) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f || c == '<' || c == '>') return false;
  }
  return true;
}

std::string format_envelope(const envelope_header& envelope) {
  const std::int64_t us = envelope.arrival < 0 ? 0 : envelope.arrival;
  const std::tm tm = utc(us);
  char arrival[96];
  std::snprintf(arrival, sizeof arrival, "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ", tm.tm_year + 1900, tm.tm_mon + 1,
                tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(us % 1000000));
  return "SDPS-Spool: 1\r\nEnvelope-From: <" + envelope.from + ">\r\nEnvelope-To: <" + envelope.to +
         ">\r\nArrival: " + arrival + "\r\n\r\n";
}

std::optional<parsed_envelope> parse_envelope(std::string_view data) {
  if (data.size() > max_envelope_block) data = data.substr(0, max_envelope_block);
  parsed_envelope out;
  bool first = true, have_from = false, have_to = false;
  std::size_t at = 0;
  for (;;) {
    const auto end = data.find("\r\n", at);
    if (end == std::string_view::npos) return std::nullopt;  // incomplete or too long
    const std::string_view line = data.substr(at, end - at);
    at = end + 2;
    if (line.empty()) break;
    const auto colon = line.find(':');
    if (colon == std::string_view::npos) return std::nullopt;
    const std::string_view key = line.substr(0, colon);
    std::string_view value = line.substr(colon + 1);
    while (!value.empty() && value.front() == ' ') value.remove_prefix(1);
    if (first) {
      // The format marker, and its major version: only 1 is understood.
      if (!iequals(key, "SDPS-Spool") || value != "1") return std::nullopt;
      first = false;
    } else if (iequals(key, "Envelope-From")) {
      auto from = unbracket(value);
      if (!from || have_from) return std::nullopt;
      out.envelope.from = std::move(*from);
      have_from = true;
    } else if (iequals(key, "Envelope-To")) {
      auto to = unbracket(value);
      if (!to || to->empty() || have_to) return std::nullopt;
      out.envelope.to = std::move(*to);
      have_to = true;
    } else if (iequals(key, "Arrival")) {
      const auto arrival = parse_iso(value);
      if (!arrival) return std::nullopt;
      out.envelope.arrival = *arrival;
    }
  }
  if (first || !have_from || !have_to) return std::nullopt;
  out.body_offset = at;
  return out;
}

std::string return_path_line(std::string_view from) {
  constexpr std::string_view open = "Return-Path: <", close = ">\r\n";
  std::string line;
  line.reserve(open.size() + from.size() + close.size());
  line += open;
  line += from;
  line += close;
  return line;
}

std::string rfc5322_date(std::int64_t us) {
  static constexpr const char* days[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
  static constexpr const char* months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                           "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  const std::tm tm = utc(us);
  char text[64];
  std::snprintf(text, sizeof text, "%s, %02d %s %04d %02d:%02d:%02d +0000", days[tm.tm_wday % 7], tm.tm_mday,
                months[tm.tm_mon % 12], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
  return text;
}

namespace {

// The part of a domain name safe in a Message-ID: dot-atom text.
std::string dot_atom(std::string_view text, std::string_view fallback) {
  std::string out;
  for (char c : text) {
    const bool atext = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || is_digit(c) || c == '-' || c == '.';
    if (atext) out += c;
  }
  while (!out.empty() && out.front() == '.') out.erase(out.begin());
  while (!out.empty() && out.back() == '.') out.pop_back();
  if (out.empty() || out.find("..") != std::string::npos) return std::string(fallback);
  return out;
}

// True if `address` can stand in a To: field as it is (dot-atom local part
// and domain, printable ASCII).
bool plain_address(std::string_view address) {
  const auto at = address.rfind('@');
  if (at == std::string_view::npos || at == 0 || at + 1 == address.size()) return false;
  static constexpr std::string_view specials = "!#$%&'*+-/=?^_`{|}~.";
  for (std::size_t i = 0; i < address.size(); ++i) {
    const char c = address[i];
    if (i == at) continue;
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || is_digit(c) ||
                    (i < at ? specials.find(c) != std::string_view::npos : (c == '-' || c == '.'));
    if (!ok) return false;
  }
  return address.find("..") == std::string_view::npos && address.front() != '.' && address[at - 1] != '.';
}

}  // namespace

std::string dummy_message(const dummy_details& d) {
  const std::string server = dot_atom(d.server_name, "localhost");
  std::string uidl_atom;
  for (char c : d.uidl)
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || is_digit(c) || c == '.' || c == '-') uidl_atom += c;
  if (uidl_atom.empty()) uidl_atom = "message";
  ensure_sodium();
  unsigned char random[8];
  randombytes_buf(random, sizeof random);
  std::string nonce;
  for (unsigned char b : random) {
    nonce += lower_hex[b >> 4];
    nonce += lower_hex[b & 15];
  }
  // What became of it, as its departure record says.
  const char* subject = "Message removed from the spool";
  const char* story =
      "was removed from the POP3 mail spool after this POP3 session started\r\n"
      "(by another session, or by hand), so it cannot be retrieved.\r\n";
  if (d.why == departure::delivered) {
    subject = "Message already delivered by SMTP";
    story =
        "delivered to you by SMTP after this POP3 session started, so it has left\r\n"
        "the POP3 mail spool. You should already have it through SMTP.\r\n";
  } else if (d.why == departure::returned) {
    subject = "Message expired and returned to its sender";
    story =
        "not collected in time: it expired after this POP3 session started, and\r\n"
        "was returned to its sender with a delivery failure notice. It has left\r\n"
        "the POP3 mail spool; ask the sender to send it again.\r\n";
  } else if (d.why == departure::expired) {
    subject = "Message expired";
    story =
        "kept for as long as this service keeps mail, and expired after this POP3\r\n"
        "session started, so it has left the POP3 mail spool.\r\n";
  }
  std::string text = "Return-Path: <>\r\n";
  text += "From: Mail Delivery System <MAILER-DAEMON@" + server + ">\r\n";
  text += plain_address(d.to) ? "To: <" + d.to + ">\r\n" : std::string("To: undisclosed-recipients:;\r\n");
  text.append("Subject: ").append(subject).append("\r\n");
  text += "Date: " + rfc5322_date(d.now) + "\r\n";
  text += "Message-ID: <sdps-dummy." + uidl_atom + "." + nonce + "@" + server + ">\r\n";
  text += "MIME-Version: 1.0\r\n";
  text += "Content-Type: text/plain; charset=us-ascii\r\n";
  text += "\r\n";
  text += "This is a notice from the POP3 server " + server + ", not the message you asked for.\r\n";
  text += "\r\n";
  text += "The message with unique-id " + uidl_atom + " (" + std::to_string(d.size) + " octets) was\r\n";
  text += story;
  return text;
}

void crlf_normaliser::feed(std::string_view in, std::string& out) {
  std::size_t from = 0;
  while (from < in.size()) {
    const auto lf = in.find('\n', from);
    const std::size_t to = lf == std::string_view::npos ? in.size() : lf;
    if (to > from) {
      out.append(in.substr(from, to - from));
      last_cr_ = in[to - 1] == '\r';
      last_lf_ = false;
      empty_ = false;
    }
    if (lf == std::string_view::npos) break;
    if (!last_cr_) out += '\r';
    out += '\n';
    last_cr_ = false;
    last_lf_ = true;
    empty_ = false;
    from = lf + 1;
  }
}

void crlf_normaliser::finish(std::string& out) {
  if (empty_ || last_lf_) return;
  if (last_cr_) {
    out += '\n';
  } else {
    out += "\r\n";
  }
  last_cr_ = false;
  last_lf_ = true;
}

std::size_t top_filter::accept(std::string_view chunk) {
  if (done_) return 0;
  if (!left_) return chunk.size();
  for (std::size_t i = 0; i < chunk.size(); ++i) {
    const char c = chunk[i];
    if (in_header_) {
      if (c == '\n') {
        if (line_empty_so_far_) {
          in_header_ = false;
          if (*left_ == 0) {
            done_ = true;
            return i + 1;
          }
        }
        line_empty_so_far_ = true;
      } else if (c != '\r') {
        line_empty_so_far_ = false;
      }
    } else if (c == '\n') {
      if (--*left_ == 0) {
        done_ = true;
        return i + 1;
      }
    }
  }
  return chunk.size();
}

}  // namespace sdps::spoolstore
