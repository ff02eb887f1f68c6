#include "pop3/user.hpp"

#include "hostdb/hostdb.hpp"

#include <algorithm>
#include <cstring>

namespace sdps::pop3 {

namespace {

bool atext(char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
  // RFC 5322 atext without '/', which would make the user part unsafe as a
  // file name (modules use it to name per-user locks).
  return std::strchr("!#$%&'*+-=?^_`{|}~", c) != nullptr && c != '\0';
}

bool valid_local_part(std::string_view user) {
  if (user.empty() || user.size() > 64 || user.front() == '.' || user.back() == '.') return false;
  if (user.find("..") != std::string_view::npos) return false;
  return std::all_of(user.begin(), user.end(), [](char c) { return c == '.' || atext(c); });
}

}  // namespace

std::optional<identity> parse_user(std::string_view argument, std::string_view customer_domain) {
  const auto first = argument.find_first_not_of(" \t");
  if (first == std::string_view::npos) return std::nullopt;
  const auto last = argument.find_last_not_of(" \t");
  const std::string_view text = argument.substr(first, last - first + 1);
  if (text.size() > 255) return std::nullopt;
  for (char c : text)
    if (static_cast<unsigned char>(c) <= 0x20 || static_cast<unsigned char>(c) >= 0x7f) return std::nullopt;

  identity who;
  std::string_view host = text;
  // Host names hold neither '+' nor '@', so the last one separates; the
  // user part may itself contain '+' (fred+lists+sample).
  const auto separator = text.find_last_of("+@");
  if (separator != std::string_view::npos) {
    const std::string_view user = text.substr(0, separator);
    if (!valid_local_part(user)) return std::nullopt;
    who.user.assign(user);
    for (char& c : who.user)
      if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    host = text.substr(separator + 1);
  }
  who.host = hostdb::normalise_host(host, customer_domain);
  if (who.host.empty()) return std::nullopt;
  return who;
}

}  // namespace sdps::pop3
