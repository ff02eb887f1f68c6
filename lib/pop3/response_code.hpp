#pragma once
/// @file
/// RFC 2449 / RFC 3206 response codes: the machine-readable part of a
/// reply, in brackets at the start of its text ("-ERR [IN-USE] maildrop
/// already locked"). Programs (POP3 clients, and our own front end reading
/// a back end) act on the code; the words after it are for people and may
/// change. Modules that write a code a program acts on write it with
/// with_code(); readers use code_of().

#include <array>
#include <string>
#include <string_view>
#include <utility>

namespace sdps::pop3 {

enum class response_code {
  none,         ///< no code at the start of the text
  in_use,       ///< [IN-USE]: the maildrop is locked by another session
  login_delay,  ///< [LOGIN-DELAY]
  sys_temp,     ///< [SYS/TEMP]: a temporary failure, try again later
  sys_perm,     ///< [SYS/PERM]
  auth,         ///< [AUTH]: the credentials were refused
  other,        ///< a bracketed code this list does not know
};

namespace detail {
inline constexpr std::array<std::pair<response_code, std::string_view>, 5> response_codes{{
    {response_code::in_use, "IN-USE"},
    {response_code::login_delay, "LOGIN-DELAY"},
    {response_code::sys_temp, "SYS/TEMP"},
    {response_code::sys_perm, "SYS/PERM"},
    {response_code::auth, "AUTH"},
}};
}  // namespace detail

/// The code's name without brackets ("IN-USE"); empty for none and other.
inline std::string_view name(response_code code) {
  for (const auto& [c, n] : detail::response_codes)
    if (c == code) return n;
  return {};
}

/// "[NAME] text"; just `text` for none and other.
inline std::string with_code(response_code code, std::string_view text) {
  const std::string_view n = name(code);
  if (n.empty()) return std::string(text);
  std::string out;
  out.reserve(n.size() + 3 + text.size());
  out.append("[").append(n).append("] ").append(text);
  return out;
}

/// The code that begins `text` (a reply's text after "+OK " or "-ERR "):
/// "[IN-USE] ..." -> in_use, "[SYS/TEMP]" -> sys_temp, "[X-FOO] ..." ->
/// other, and none when the text does not begin with a bracketed code.
/// Codes are matched whole and case-insensitively (RFC 2449 section 8).
inline response_code code_of(std::string_view text) {
  if (!text.starts_with('[')) return response_code::none;
  const auto close = text.find(']');
  if (close == std::string_view::npos || close == 1) return response_code::none;
  const std::string_view token = text.substr(1, close - 1);
  if (token.find_first_of(" \t") != std::string_view::npos) return response_code::none;
  for (const auto& [c, n] : detail::response_codes) {
    if (n.size() != token.size()) continue;
    bool same = true;
    for (std::size_t i = 0; i < n.size() && same; ++i) {
      char t = token[i];
      if (t >= 'a' && t <= 'z') t = static_cast<char>(t - 'a' + 'A');
      same = t == n[i];
    }
    if (same) return c;
  }
  return response_code::other;
}

}  // namespace sdps::pop3
