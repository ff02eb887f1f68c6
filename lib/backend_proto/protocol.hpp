#pragma once
/// @file
/// The back-end protocol's shared pieces, as pure functions: the front-end
/// secret and the XAUTH proofs, nonces, the XLIST line format, the result
/// codes a front end acts on, and the streaming un-stuffer for multi-line
/// replies. Used by both sides in modules/remote/: the front end's
/// remote_spool and the back end's backend_auth and backend_listing.
/// docs/backend-protocol.md describes the protocol on the wire.

#include <sdps/log.hpp>
#include <sdps/maildrop.hpp>

#include <array>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
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

/// XUPDATE's reply text after "+OK ": "REMOVED FAILED" (plain decimal),
/// the messages removed and those marked deleted but still in the spool.
std::string format_update(const removal_result& result);
/// Parses XUPDATE's reply text after "+OK "; nullopt unless it begins with
/// two plain decimal numbers (anything after them is ignored).
std::optional<removal_result> parse_update(std::string_view status_text);

/// Undoes RFC 1939 dot-stuffing of a multi-line reply as it streams in,
/// and finds its terminating "." line. Feed it the octets after the
/// status line's CRLF; it copies the unstuffed body into `out` and stops
/// at the terminator (the octets after it belong to the next reply).
class unstuffer {
 public:
  struct step {
    std::size_t consumed = 0;  ///< input octets used
    std::size_t produced = 0;  ///< body octets written to `out`
  };
  /// Processes a prefix of `in`, writing at most out.size() octets.
  /// Stops early at the terminator (then done() is true) or when `out` is
  /// full. The dot of a stuffed line is dropped; a line that starts with a
  /// dot is held back until the octet after the dot is known.
  step feed(std::string_view in, std::span<char> out);
  bool done() const { return state_ == state::done; }

 private:
  enum class state { line_start, mid_line, after_dot, after_dot_cr, done };
  state state_ = state::line_start;
};

/// The back end's greeting for XAUTH: "+OK NONCE PUNT" -> (nonce, punt).
struct challenge {
  std::string nonce;
  std::string punt;
};
std::optional<challenge> parse_challenge(std::string_view status_text);

/// Host and port of a `backend:` setting: "HOST:PORT", "[IPv6]:PORT".
struct address {
  std::string host;
  std::string port;
};
std::optional<address> parse_address(std::string_view text);

}  // namespace sdps::backend_proto
