#pragma once
/// @file
/// SMTP and LMTP wire format as pure functions (RFC 5321, RFC 2033):
/// replies (multi-line included), commands and their paths and
/// parameters, and the two DATA filters (dot-stuffing on the way out,
/// dot-unstuffing on the way in). No I/O; unit-tested in tests/.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace sdps::smtp {

// -- replies ------------------------------------------------------------------

/// One complete reply: a three-digit code and the text of each line.
struct reply {
  int code = 0;
  std::vector<std::string> lines;  ///< text after "ddd-" / "ddd ", CR LF removed

  bool positive() const { return code >= 200 && code < 400; }
  bool transient() const { return code >= 400 && code < 500; }
  bool permanent() const { return code >= 500; }
  /// "250 2.0.0 Ok: queued" or, for several lines, their texts joined with
  /// " / "; control characters made safe for one log line.
  std::string summary() const;
};

/// Reads a reply line by line: feed() each line (with or without CR LF)
/// until it says `complete`; then take(). A line that is not "ddd",
/// "ddd text" or "ddd-text", or a continuation with another code, is
/// `bad`.
class reply_reader {
 public:
  enum class status { complete, more, bad };
  status feed(std::string_view line);
  reply take();

 private:
  reply reply_;
};

/// "250-SIZE 1000" lines of an EHLO reply: the upper-cased keyword of each
/// line after the first, with its parameters.
std::vector<std::pair<std::string, std::string>> extensions(const reply& ehlo);

// -- commands (server side) -----------------------------------------------------

/// A command line split into its upper-cased verb and the rest.
struct command {
  std::string verb;
  std::string argument;
};
/// Splits "mail FROM:<a@b> SIZE=3" into {"MAIL", "FROM:<a@b> SIZE=3"}.
command parse_command(std::string_view line);

/// The argument of MAIL or RCPT: the address in the path, and the ESMTP
/// parameters (keyword upper-cased, value as sent).
struct path_argument {
  std::string address;  ///< without angle brackets; empty for <>
  std::vector<std::pair<std::string, std::string>> params;
};
/// Parses "FROM:<addr> PARAM=V..." (`keyword` "FROM" or "TO", matched
/// case-insensitively; a space after the colon is tolerated). A source
/// route (<@a,@b:user@c>) is dropped as RFC 5321 says. Quoted local parts
/// may hold '>' and spaces; a space anywhere else inside the brackets
/// ("< x@host>") is malformed. nullopt if malformed.
std::optional<path_argument> parse_path(std::string_view argument, std::string_view keyword);

/// The address of `local@domain` split at its last '@' outside quotes;
/// nullopt when there is none.
std::optional<std::pair<std::string, std::string>> split_address(std::string_view address);

// -- DATA ---------------------------------------------------------------------

/// The client's DATA filter: dot-stuffs a message that has CRLF line ends
/// (a stored spool message), piece by piece. finish() ends an unterminated
/// last line and appends the final ".\r\n".
class dot_stuffer {
 public:
  void feed(std::string_view in, std::string& out);
  void finish(std::string& out);

 private:
  bool line_start_ = true;
  char last_ = '\n';
  bool empty_ = true;
};

/// The server's DATA filter: fed one line at a time (what
/// connection::read_line returns: up to its limit, ending in LF when the
/// line fits), it removes the stuffed dot and recognises the end.
class dot_unstuffer {
 public:
  /// Appends the message octets of `piece` to `out`; true once the
  /// terminating "." line has been seen (then nothing is appended).
  bool feed(std::string_view piece, std::string& out);

 private:
  bool line_start_ = true;
};

// -- dates ----------------------------------------------------------------------

/// RFC 5322 date-time in UTC: "Thu, 26 Nov 2026 20:42:11 +0000".
std::string rfc5322_date(std::int64_t unix_seconds);
/// RFC 3339 in UTC: "2026-11-26T20:42:11Z" (for logs).
std::string iso_date(std::int64_t unix_seconds);

}  // namespace sdps::smtp
