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

/// The length of the well-formed UTF-8 sequence (RFC 3629: no overlong
/// forms, no surrogates, nothing above U+10FFFF) of a non-ASCII character
/// at the start of `text` that may stand in a user name, or 0. Refused
/// besides: the C1 controls (U+0080-U+009F), the line and paragraph
/// separators (U+2028, U+2029) and the byte order mark (U+FEFF), which
/// would only garble logs and replies.
std::size_t utf8_user_char(std::string_view text) {
  const auto byte = [&](std::size_t i) { return i < text.size() ? static_cast<unsigned char>(text[i]) : 0u; };
  const unsigned lead = byte(0);
  std::size_t length = 0;
  std::uint32_t code = 0;
  if (lead >= 0xc2 && lead <= 0xdf) {
    length = 2;
    code = lead & 0x1f;
  } else if (lead >= 0xe0 && lead <= 0xef) {
    length = 3;
    code = lead & 0x0f;
  } else if (lead >= 0xf0 && lead <= 0xf4) {
    length = 4;
    code = lead & 0x07;
  } else {
    return 0;  // ASCII, a continuation byte, or a lead byte no valid sequence has
  }
  for (std::size_t i = 1; i < length; ++i) {
    if ((byte(i) & 0xc0) != 0x80) return 0;
    code = (code << 6) | (byte(i) & 0x3f);
  }
  constexpr std::uint32_t least[] = {0, 0, 0x80, 0x800, 0x10000};
  if (code < least[length] || code > 0x10ffff || (code >= 0xd800 && code <= 0xdfff)) return 0;
  if (code <= 0x9f || code == 0x2028 || code == 0x2029 || code == 0xfeff) return 0;
  return length;
}

/// An RFC 5322 dot-atom of at most 64 octets whose atext may also hold
/// UTF-8 characters (RFC 6531, SMTPUTF8), but not '/'.
bool valid_local_part(std::string_view user) {
  if (user.empty() || user.size() > 64 || user.front() == '.' || user.back() == '.') return false;
  if (user.find("..") != std::string_view::npos) return false;
  for (std::size_t i = 0; i < user.size();) {
    const char c = user[i];
    if (static_cast<unsigned char>(c) < 0x80) {
      if (c != '.' && !atext(c)) return false;
      ++i;
      continue;
    }
    const std::size_t length = utf8_user_char(user.substr(i));
    if (length == 0) return false;
    i += length;
  }
  return true;
}

}  // namespace

std::optional<identity> parse_user(std::string_view argument, std::string_view customer_domain) {
  const auto first = argument.find_first_not_of(" \t");
  if (first == std::string_view::npos) return std::nullopt;
  const auto last = argument.find_last_not_of(" \t");
  const std::string_view text = argument.substr(first, last - first + 1);
  if (text.size() > 255) return std::nullopt;
  // 8-bit octets may only be UTF-8 in the user part (checked below); the
  // host part is letters, digits and hyphens.
  for (char c : text)
    if (static_cast<unsigned char>(c) <= 0x20 || static_cast<unsigned char>(c) == 0x7f) return std::nullopt;

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
