#include "smtp/protocol.hpp"

#include <sdps/log.hpp>

#include <algorithm>
#include <cctype>
#include <ctime>

namespace sdps::smtp {

namespace {

std::string upper(std::string_view text) {
  std::string out(text);
  for (char& c : out) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return out;
}

std::string_view chomp(std::string_view line) {
  if (!line.empty() && line.back() == '\n') line.remove_suffix(1);
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  return line;
}

bool digit(char c) { return c >= '0' && c <= '9'; }

}  // namespace

std::string reply::summary() const {
  std::string text = std::to_string(code);
  for (std::size_t i = 0; i < lines.size(); ++i) {
    text += i == 0 ? " " : " / ";
    text += lines[i];
  }
  return printable(text, 300);
}

reply_reader::status reply_reader::feed(std::string_view raw) {
  const std::string_view line = chomp(raw);
  if (line.size() < 3 || !digit(line[0]) || !digit(line[1]) || !digit(line[2]) || line[0] < '2' || line[0] > '5')
    return status::bad;
  if (line.size() > 3 && line[3] != ' ' && line[3] != '-') return status::bad;
  const int code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
  if (!reply_.lines.empty() && code != reply_.code) return status::bad;
  reply_.code = code;
  reply_.lines.emplace_back(line.size() > 4 ? line.substr(4) : std::string_view());
  return line.size() > 3 && line[3] == '-' ? status::more : status::complete;
}

reply reply_reader::take() {
  reply r = std::move(reply_);
  reply_ = reply{};
  return r;
}

std::vector<std::pair<std::string, std::string>> extensions(const reply& ehlo) {
  std::vector<std::pair<std::string, std::string>> out;
  for (std::size_t i = 1; i < ehlo.lines.size(); ++i) {
    const std::string_view line = ehlo.lines[i];
    const auto space = line.find(' ');
    out.emplace_back(upper(line.substr(0, space)),
                     space == std::string_view::npos ? std::string() : std::string(line.substr(space + 1)));
  }
  return out;
}

command parse_command(std::string_view raw) {
  const std::string_view line = chomp(raw);
  const auto space = line.find(' ');
  command c;
  c.verb = upper(line.substr(0, space));
  if (space != std::string_view::npos) c.argument = std::string(line.substr(space + 1));
  return c;
}

std::optional<path_argument> parse_path(std::string_view argument, std::string_view keyword) {
  if (argument.size() < keyword.size() + 1 || upper(argument.substr(0, keyword.size())) != keyword ||
      argument[keyword.size()] != ':')
    return std::nullopt;
  std::string_view rest = argument.substr(keyword.size() + 1);
  while (!rest.empty() && rest.front() == ' ') rest.remove_prefix(1);  // tolerated, as Postfix does
  if (rest.empty() || rest.front() != '<') return std::nullopt;
  // Find the closing '>' outside a quoted string.
  std::size_t i = 1;
  bool quoted = false;
  for (; i < rest.size(); ++i) {
    const char c = rest[i];
    if (quoted && c == '\\' && i + 1 < rest.size()) {
      // RFC 5321 quoted-pairSMTP: a backslash and a printable octet.
      const auto escaped = static_cast<unsigned char>(rest[++i]);
      if (escaped < 0x20 || escaped == 0x7f) return std::nullopt;
    } else if (c == '"') {
      quoted = !quoted;
    } else if (!quoted && c == '>') {
      break;
    } else if (!quoted && c == ' ') {
      // RFC 5321's Path holds no space outside a quoted local part:
      // "< x@host>" is not the address " x@host".
      return std::nullopt;
    } else if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
      return std::nullopt;
    }
  }
  if (i >= rest.size()) return std::nullopt;
  path_argument out;
  std::string_view address = rest.substr(1, i - 1);
  if (!address.empty() && address.front() == '@') {  // <@relay,@relay:user@domain>
    const auto colon = address.find(':');
    // Domain names hold no quotes: a quote before the colon means the
    // colon is inside a quoted local part, not the end of a route.
    if (colon == std::string_view::npos || address.substr(0, colon).find('"') != std::string_view::npos)
      return std::nullopt;
    address.remove_prefix(colon + 1);
    // A route leads to a mailbox: not to nothing (which would read as the
    // null sender) nor to a second route.
    if (address.empty() || address.front() == '@') return std::nullopt;
  }
  out.address = std::string(address);
  std::string_view params = rest.substr(i + 1);
  while (!params.empty()) {
    if (params.front() != ' ') return std::nullopt;
    while (!params.empty() && params.front() == ' ') params.remove_prefix(1);
    if (params.empty()) break;
    const auto end = params.find(' ');
    const std::string_view param = params.substr(0, end);
    const auto eq = param.find('=');
    // RFC 5321 esmtp-keyword: a letter or digit, then letters, digits and
    // hyphens. ("=X" would otherwise be a parameter with no name.)
    const std::string_view key = param.substr(0, eq);
    if (key.empty() || !std::isalnum(static_cast<unsigned char>(key.front())) ||
        !std::all_of(key.begin(), key.end(),
                     [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '-'; }))
      return std::nullopt;
    out.params.emplace_back(upper(param.substr(0, eq)),
                            eq == std::string_view::npos ? std::string() : std::string(param.substr(eq + 1)));
    params = end == std::string_view::npos ? std::string_view() : params.substr(end);
  }
  return out;
}

std::optional<std::pair<std::string, std::string>> split_address(std::string_view address) {
  bool quoted = false;
  std::size_t at = std::string_view::npos;
  for (std::size_t i = 0; i < address.size(); ++i) {
    if (quoted && address[i] == '\\') {
      ++i;
    } else if (address[i] == '"') {
      quoted = !quoted;
    } else if (!quoted && address[i] == '@') {
      at = i;
    }
  }
  if (at == std::string_view::npos) return std::nullopt;
  return std::make_pair(std::string(address.substr(0, at)), std::string(address.substr(at + 1)));
}

void dot_stuffer::feed(std::string_view in, std::string& out) {
  for (char c : in) {
    if (line_start_ && c == '.') out.push_back('.');
    out.push_back(c);
    line_start_ = c == '\n';
    last_ = c;
    empty_ = false;
  }
}

void dot_stuffer::finish(std::string& out) {
  if (!empty_ && last_ != '\n') out += last_ == '\r' ? "\n" : "\r\n";
  out += ".\r\n";
  line_start_ = true;
  last_ = '\n';
  empty_ = true;
}

bool dot_unstuffer::feed(std::string_view piece, std::string& out) {
  const bool ends_line = !piece.empty() && piece.back() == '\n';
  if (line_start_ && !piece.empty() && piece.front() == '.') {
    if (ends_line && chomp(piece).size() == 1) return true;
    piece.remove_prefix(1);
  }
  out.append(piece);
  line_start_ = ends_line;
  return false;
}

std::string rfc5322_date(std::int64_t unix_seconds) {
  const std::time_t t = static_cast<std::time_t>(unix_seconds);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buffer[64];
  std::strftime(buffer, sizeof buffer, "%a, %d %b %Y %H:%M:%S +0000", &tm);  // C locale names
  return buffer;
}

std::string iso_date(std::int64_t unix_seconds) {
  const std::time_t t = static_cast<std::time_t>(unix_seconds);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buffer[32];
  std::strftime(buffer, sizeof buffer, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buffer;
}

}  // namespace sdps::smtp
