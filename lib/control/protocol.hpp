#pragma once
/// @file
/// The control socket's protocol (docs/control.md): what `sdps who`,
/// `sdps kick` and `sdps status` ask sdpsd over its `control_socket:`, and
/// what it answers. Both sides take it from here; it carries codes and
/// numbers, never prose for the other side to read.
///
/// Every message is one line of tab-separated fields ending in LF: a kind
/// (a lower-case word), then `key=value` fields in any order. Values are
/// escaped so that they hold no tab, CR, LF or lone backslash (`\t`, `\r`,
/// `\n`, `\\`). A reader ignores keys it does not know, so either side may
/// add fields without breaking the other.
///
/// One request per connection:
///
///     who                                    -> ok, session..., end
///     kick  id=N | host=HOST | login=LOGIN   -> ok, session... (those ended), end
///     status                                 -> ok, server, punt..., end
///
/// or `error code=CODE detail=TEXT` alone, and the server closes.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

namespace sdps::control {

/// Plain decimal digits, at most 19 of them (no sign, no spaces): a
/// record's numbers and a session id as `sdps who` shows it.
std::optional<std::uint64_t> decimal(std::string_view text);

/// The protocol's version, in the `ok` line (`protocol=1`).
inline constexpr std::uint64_t protocol_version = 1;
/// The longest request line a server reads, and reply line a client reads.
inline constexpr std::size_t max_request_line = 1024;
inline constexpr std::size_t max_reply_line = 16 * 1024;

/// One line: a kind and its fields, in the order written.
struct record {
  std::string kind;
  std::vector<std::pair<std::string, std::string>> fields;

  record() = default;
  explicit record(std::string k) : kind(std::move(k)) {}
  /// Appends a field (a key given twice keeps the first).
  record& set(std::string key, std::string value);
  record& set(std::string key, std::uint64_t value);
  record& set(std::string key, bool value) { return set(std::move(key), std::uint64_t(value ? 1 : 0)); }
  record& set(std::string key, const char* value) { return set(std::move(key), std::string(value)); }
  /// The first field `key`, or null.
  const std::string* get(std::string_view key) const;
  /// Field `key` as a plain decimal number (digits only, at most 19);
  /// nullopt when absent or not one.
  std::optional<std::uint64_t> number(std::string_view key) const;
};

/// The record as one line, LF included. Keys must be words of [a-z0-9_];
/// values may hold anything (escaped).
std::string format(const record& r);
/// One line (without its LF; a CR before it is not removed). Nullopt when
/// malformed: an empty or non-word kind, a field without `=`, a key that
/// is not a word, a bad escape.
std::optional<record> parse(std::string_view line);

// -- requests -------------------------------------------------------------------

/// Which sessions `kick` ends.
struct selector {
  enum class by { id, host, login };
  by what = by::id;
  /// The session id (decimal), the host (`sample` or `sample.DOMAIN`), or
  /// the login (`fred+sample`, any form USER accepts). The server checks
  /// and normalises it.
  std::string value;
};

struct request {
  enum class verb { who, kick, status };
  verb what = verb::who;
  selector which;  ///< kick only
};

record to_record(const request& r);
/// The request a line asked for, or the error code to answer
/// (`bad-request`).
std::variant<request, std::string> read_request(const record& r);

// -- replies --------------------------------------------------------------------

/// Error codes (the `code` of an `error` line).
namespace code {
inline constexpr const char* bad_request = "bad-request";  ///< not a request of this protocol
inline constexpr const char* bad_id = "bad-id";            ///< kick id= is not a session number
inline constexpr const char* bad_host = "bad-host";        ///< kick host= is not a host name
inline constexpr const char* bad_login = "bad-login";      ///< kick login= is not a login
inline constexpr const char* busy = "busy";                ///< too many control connections at once
inline constexpr const char* internal = "internal";        ///< the server failed (its log says why)
}  // namespace code

record ok();
record error(std::string_view code, std::string_view detail);
record end();

/// One session, as `who` lists it and `kick` reports it.
struct session_row {
  std::uint64_t id = 0;
  std::optional<std::string> login;  ///< `fred+sample`; absent before login
  std::optional<std::string> host;   ///< `sample`; absent before login
  std::optional<std::string> user;   ///< `fred`; absent before login and for a host login
  std::string client;                ///< the client's address and port (the PROXY header's, if any)
  bool tls = false;
  std::string state;                 ///< AUTHORIZATION, TRANSACTION or UPDATE
  std::int64_t since = 0;            ///< connected at, seconds since the epoch (UTC)
  std::uint64_t sent = 0;            ///< octets written to the client so far
  /// kick only: the session was over (locks released, logout logged)
  /// before the reply; false when it was still ending.
  std::optional<bool> gone;
};
record to_record(const session_row& s);
/// Nullopt when `r` is not a `session` record with at least an id.
std::optional<session_row> read_session(const record& r);

/// The server, as `status` reports it.
struct server_row {
  std::string role;                    ///< embedded, frontend or backend
  std::uint64_t probe_interval_ms = 0;
  std::uint64_t sessions = 0;          ///< sessions open now
};
record to_record(const server_row& s);
std::optional<server_row> read_server(const record& r);

/// One punt, as `status` reports it.
struct punt_row {
  std::string name;
  bool up = false;
  /// Its last probe's round trip, when one answered.
  std::optional<std::uint64_t> latency_us;
  std::uint64_t sessions = 0;  ///< sessions holding a lock or a link on it now
  /// How long ago the last probe ended; absent before the first.
  std::optional<std::uint64_t> checked_ms_ago;
  std::string detail;  ///< why it is down (or a note while up); for people
};
record to_record(const punt_row& p);
std::optional<punt_row> read_punt(const record& r);

}  // namespace sdps::control
