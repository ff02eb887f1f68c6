#pragma once
/// @file
/// The back-end protocol's shared pieces, as pure functions: the front-end
/// secret and the XAUTH proofs, nonces, the XLIST line format, the result
/// codes a front end acts on, the links' reset commands, and the scanner
/// that finds where a relayed multi-line reply ends. Used by both sides in modules/spool/remote/: the front end's
/// remote_spool and the back end's backend_auth and backend_listing.
/// docs/backend-protocol.md describes the protocol on the wire.

#include <sdps/log.hpp>
#include <sdps/maildrop.hpp>

#include <array>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace sdps::backend_proto {

/// The shared front-end secret, reduced to a 32-octet key. Read once at
/// start-up; the file's contents are wiped from memory as soon as the key
/// is derived, and the key is wiped when the object dies. Never logged.
class backend_secret {
 public:
  static constexpr std::size_t key_size = 32;
  /// Octets the file must hold (after trailing white space is dropped).
  static constexpr std::size_t min_octets = 16;
  static constexpr std::size_t max_octets = 4096;

  /// Reads `file`: key = BLAKE2b-256 (unkeyed) of its contents without
  /// trailing CR, LF, space or tab. Throws config_error (naming `where`,
  /// the setting's file and line) if the file is missing, unreadable, too
  /// short or too long, or readable or writable by other users; warns
  /// through `log` when the group may read it.
  static std::shared_ptr<const backend_secret> load(const std::filesystem::path& file, const std::string& where,
                                                    logger& log);
  /// A key from raw contents (tests). Same rules as load() on the contents.
  static std::shared_ptr<const backend_secret> from_contents(std::string contents);

  backend_secret(const backend_secret&) = delete;
  backend_secret& operator=(const backend_secret&) = delete;
  ~backend_secret();

  const std::array<unsigned char, key_size>& key() const { return key_; }

 private:
  backend_secret() = default;
  std::array<unsigned char, key_size> key_{};
};

/// Which side a proof speaks for (they differ, so one side's proof can
/// never be replayed as the other's).
enum class role { frontend, backend };

/// Nonces are 32 random octets, sent as 64 lower-case hex digits.
inline constexpr std::size_t nonce_hex_size = 64;

/// A fresh nonce (libsodium's randombytes), as hex.
std::string new_nonce();
/// True for exactly 64 lower-case hex digits.
bool valid_nonce(std::string_view text);

/// The proof `side` sends for one exchange, as 64 lower-case hex digits:
///   BLAKE2b-256(key, "sdps-xauth-1 " + ("frontend"|"backend") + " " +
///               server_nonce + " " + frontend_nonce + " " + punt)
/// (keyed BLAKE2b is libsodium's crypto_generichash with a key).
std::string proof(const backend_secret& secret, role side, std::string_view server_nonce,
                  std::string_view frontend_nonce, std::string_view punt);
/// Checks a received proof in constant time (crypto_verify_32); false for
/// anything that is not 64 lower-case hex digits.
bool verify_proof(const backend_secret& secret, role side, std::string_view server_nonce,
                  std::string_view frontend_nonce, std::string_view punt, std::string_view received);

/// One XLIST line: the back end's message number and what the front end
/// needs at login (UIDL, size, arrival time in microseconds).
struct listing_entry {
  std::size_t number = 0;
  std::string uidl;
  std::uint64_t size = 0;
  std::int64_t arrival = 0;
};

/// "NUMBER UIDL SIZE ARRIVAL" (no line end).
std::string format_listing(const listing_entry& entry);
/// Parses one XLIST body line; nullopt if malformed (a UIDL must be 1-70
/// printable non-space octets, numbers plain decimal, NUMBER >= 1).
std::optional<listing_entry> parse_listing(std::string_view line);

// -- result codes ---------------------------------------------------------------
// A front end acts only on these, never on the words of a reply: a back
// end may reword any text without breaking a front end.

/// What a back end's reply to PASS means for the login on that punt:
/// `+OK` is acquired; `-ERR` whose text begins with the RFC 2449 code
/// `[IN-USE]` (pop3::response_code::in_use, written by the lock module) is
/// in_use; any other `-ERR` is unavailable.
lock_status pass_outcome(bool positive, std::string_view text);

/// The verb a front end sends, after the client's deletions as DELE n, to
/// have the back end run UPDATE and report it with counts.
inline constexpr std::string_view update_command = "XUPDATE";

/// A back end that lists this capability in CAPA keeps a link after a
/// login: `XRESET` ends the login without UPDATE, `XUPDATE KEEP` runs
/// UPDATE and then ends the login, and either way the connection stays open
/// and trusted for the next USER and PASS (docs/backend-protocol.md). A
/// back end that does not list it gets a connection per session.
inline constexpr std::string_view reset_capability = "XRESET";
/// Whether `text` is `word`, ignoring ASCII case (a CAPA line, an argument).
bool same_word(std::string_view text, std::string_view word);

/// The verb that ends a login on a back end and keeps the link.
inline constexpr std::string_view reset_command = "XRESET";
/// XUPDATE's argument for "UPDATE, then keep the link".
inline constexpr std::string_view keep_argument = "KEEP";

/// XUPDATE's reply text after "+OK ": "REMOVED FAILED" (plain decimal),
/// the messages removed and those marked deleted but still in the spool.
std::string format_update(const removal_result& result);
/// Parses XUPDATE's reply text after "+OK "; nullopt unless it begins with
/// two plain decimal numbers (anything after them is ignored).
std::optional<removal_result> parse_update(std::string_view status_text);

/// Finds the end of a multi-line reply that is passed on as it came, still
/// dot-stuffed (a front end relays a back end's RETR and TOP bodies to its
/// client without un-stuffing and re-stuffing them): the terminating
/// ".\r\n" line, which sdps always sends at a line start. Nothing else is
/// looked at: a stuffed line ("..x") is body like any other. Pure: it only
/// remembers whether the next octet it is shown starts a line.
class body_scanner {
 public:
  /// The terminating line's octets.
  static constexpr std::size_t terminator_size = 3;

  struct result {
    /// Leading octets of the input that are body for certain (stuffed, as
    /// they are to be sent on).
    std::size_t body = 0;
    /// The terminator starts right after them, at in[body].
    bool end = false;
  };

  /// Scans `in`, the octets of the reply after those scanned before
  /// (after the status line's CRLF at first), deciding at most `limit`
  /// octets. Unless `end`, the octets from in[body] on are not decided yet
  /// (past `limit`, or the start of a line that may be the terminator,
  /// "." or ".\r", at most 2 octets): show them again, with whatever
  /// follows, in the next call.
  result scan(std::string_view in, std::size_t limit = static_cast<std::size_t>(-1));

 private:
  bool at_line_start_ = true;
};

/// Calls `line(text)` for each line of a multi-line reply's body, as it
/// came (dot-stuffed, lines ending in CRLF, without the terminating line):
/// each line without its line end and with a stuffed dot removed. For
/// listings, CAPA and *ENV, read whole (no line is copied).
template <typename F>
void for_each_line(std::string_view body, F&& line) {
  while (!body.empty()) {
    const std::size_t eol = body.find('\n');
    std::string_view text = body.substr(0, eol);
    body.remove_prefix(eol == std::string_view::npos ? body.size() : eol + 1);
    if (!text.empty() && text.back() == '\r') text.remove_suffix(1);
    if (!text.empty() && text.front() == '.') text.remove_prefix(1);
    line(text);
  }
}

/// The back end's greeting for XAUTH: "+OK NONCE PUNT" -> (nonce, punt).
struct challenge {
  std::string nonce;
  std::string punt;
};
std::optional<challenge> parse_challenge(std::string_view status_text);

}  // namespace sdps::backend_proto
