#include "control/protocol.hpp"

#include <algorithm>
#include <cstdint>

namespace sdps::control {

namespace {

bool word(std::string_view text, bool dash) {
  if (text.empty()) return false;
  return std::all_of(text.begin(), text.end(), [dash](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || (dash && c == '-');
  });
}

void escape(std::string_view value, std::string& out) {
  for (const char c : value) {
    switch (c) {
      case '\\': out += "\\\\"; break;
      case '\t': out += "\\t"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      default: out += c;
    }
  }
}

std::optional<std::string> unescape(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '\r' || c == '\n') return std::nullopt;
    if (c != '\\') {
      out += c;
      continue;
    }
    if (++i == text.size()) return std::nullopt;
    switch (text[i]) {
      case '\\': out += '\\'; break;
      case 't': out += '\t'; break;
      case 'n': out += '\n'; break;
      case 'r': out += '\r'; break;
      default: return std::nullopt;
    }
  }
  return out;
}

}  // namespace

std::optional<std::uint64_t> decimal(std::string_view text) {
  if (text.empty() || text.size() > 19) return std::nullopt;
  std::uint64_t n = 0;
  for (const char c : text) {
    if (c < '0' || c > '9') return std::nullopt;
    n = n * 10 + static_cast<std::uint64_t>(c - '0');
  }
  return n;
}

namespace {

std::optional<std::int64_t> signed_number(const record& r, std::string_view key) {
  const std::string* text = r.get(key);
  if (!text) return std::nullopt;
  std::string_view digits = *text;
  const bool negative = !digits.empty() && digits.front() == '-';
  if (negative) digits.remove_prefix(1);
  const auto n = decimal(digits);
  if (!n || *n > static_cast<std::uint64_t>(INT64_MAX)) return std::nullopt;
  return negative ? -static_cast<std::int64_t>(*n) : static_cast<std::int64_t>(*n);
}

std::optional<bool> flag(const record& r, std::string_view key) {
  const auto n = r.number(key);
  if (!n || *n > 1) return std::nullopt;
  return *n == 1;
}

}  // namespace

record& record::set(std::string key, std::string value) {
  if (!get(key)) fields.emplace_back(std::move(key), std::move(value));
  return *this;
}

record& record::set(std::string key, std::uint64_t value) { return set(std::move(key), std::to_string(value)); }

const std::string* record::get(std::string_view key) const {
  for (const auto& field : fields)
    if (field.first == key) return &field.second;
  return nullptr;
}

std::optional<std::uint64_t> record::number(std::string_view key) const {
  const std::string* text = get(key);
  return text ? decimal(*text) : std::nullopt;
}

std::string format(const record& r) {
  std::string out = r.kind;
  for (const auto& field : r.fields) {
    out += '\t';
    out += field.first;
    out += '=';
    escape(field.second, out);
  }
  out += '\n';
  return out;
}

std::optional<record> parse(std::string_view line) {
  record out;
  std::size_t start = 0;
  bool first = true;
  for (;;) {
    const std::size_t tab = line.find('\t', start);
    const std::string_view field = line.substr(start, tab == std::string_view::npos ? line.npos : tab - start);
    if (first) {
      if (!word(field, true)) return std::nullopt;
      out.kind = std::string(field);
      first = false;
    } else {
      const std::size_t equals = field.find('=');
      if (equals == std::string_view::npos || !word(field.substr(0, equals), false)) return std::nullopt;
      auto value = unescape(field.substr(equals + 1));
      if (!value) return std::nullopt;
      out.set(std::string(field.substr(0, equals)), std::move(*value));
    }
    if (tab == std::string_view::npos) break;
    start = tab + 1;
  }
  return out;
}

// -- requests ------------------------------------------------------------------------

record to_record(const request& r) {
  switch (r.what) {
    case request::verb::who: return record("who");
    case request::verb::status: return record("status");
    case request::verb::kick: break;
  }
  record out("kick");
  switch (r.which.what) {
    case selector::by::id: out.set("id", r.which.value); break;
    case selector::by::host: out.set("host", r.which.value); break;
    case selector::by::login: out.set("login", r.which.value); break;
  }
  return out;
}

std::variant<request, std::string> read_request(const record& r) {
  request out;
  if (r.kind == "who") {
    out.what = request::verb::who;
    return out;
  }
  if (r.kind == "status") {
    out.what = request::verb::status;
    return out;
  }
  if (r.kind != "kick") return std::string(code::bad_request);
  out.what = request::verb::kick;
  int given = 0;
  for (const auto& [key, by] : {std::pair{"id", selector::by::id}, std::pair{"host", selector::by::host},
                                std::pair{"login", selector::by::login}}) {
    if (const std::string* value = r.get(key)) {
      out.which = selector{by, *value};
      ++given;
    }
  }
  // Exactly one way of choosing: never "every session" by mistake.
  if (given != 1) return std::string(code::bad_request);
  return out;
}

// -- replies -----------------------------------------------------------------------------

record ok() { return record("ok").set("protocol", protocol_version); }

record error(std::string_view code, std::string_view detail) {
  record out("error");
  out.set("code", std::string(code));
  if (!detail.empty()) out.set("detail", std::string(detail));
  return out;
}

record end() { return record("end"); }

record to_record(const session_row& s) {
  record out("session");
  out.set("id", s.id);
  if (s.login) out.set("login", *s.login);
  if (s.host) out.set("host", *s.host);
  if (s.user) out.set("user", *s.user);
  out.set("client", s.client);
  out.set("tls", s.tls);
  out.set("state", s.state);
  out.set("since", std::to_string(s.since));
  out.set("sent", s.sent);
  if (s.gone) out.set("gone", *s.gone);
  return out;
}

std::optional<session_row> read_session(const record& r) {
  if (r.kind != "session") return std::nullopt;
  const auto id = r.number("id");
  if (!id) return std::nullopt;
  session_row out;
  out.id = *id;
  if (const auto* v = r.get("login")) out.login = *v;
  if (const auto* v = r.get("host")) out.host = *v;
  if (const auto* v = r.get("user")) out.user = *v;
  if (const auto* v = r.get("client")) out.client = *v;
  out.tls = flag(r, "tls").value_or(false);
  if (const auto* v = r.get("state")) out.state = *v;
  out.since = signed_number(r, "since").value_or(0);
  out.sent = r.number("sent").value_or(0);
  out.gone = flag(r, "gone");
  return out;
}

record to_record(const server_row& s) {
  return record("server").set("role", s.role).set("probe_interval_ms", s.probe_interval_ms).set("sessions",
                                                                                                 s.sessions);
}

std::optional<server_row> read_server(const record& r) {
  if (r.kind != "server") return std::nullopt;
  server_row out;
  if (const auto* v = r.get("role")) out.role = *v;
  out.probe_interval_ms = r.number("probe_interval_ms").value_or(0);
  out.sessions = r.number("sessions").value_or(0);
  return out;
}

record to_record(const punt_row& p) {
  record out("punt");
  out.set("name", p.name);
  out.set("up", p.up);
  if (p.latency_us) out.set("latency_us", *p.latency_us);
  out.set("sessions", p.sessions);
  if (p.checked_ms_ago) out.set("checked_ms_ago", *p.checked_ms_ago);
  if (!p.detail.empty()) out.set("detail", p.detail);
  return out;
}

std::optional<punt_row> read_punt(const record& r) {
  if (r.kind != "punt") return std::nullopt;
  const std::string* name = r.get("name");
  const auto up = flag(r, "up");
  if (!name || !up) return std::nullopt;
  punt_row out;
  out.name = *name;
  out.up = *up;
  out.latency_us = r.number("latency_us");
  out.sessions = r.number("sessions").value_or(0);
  out.checked_ms_ago = r.number("checked_ms_ago");
  if (const auto* v = r.get("detail")) out.detail = *v;
  return out;
}

}  // namespace sdps::control
