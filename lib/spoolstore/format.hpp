#pragma once
/// @file
/// The on-disk spool format, as pure functions: file names, UIDLs, the
/// envelope header, user-name encoding, and the two streaming filters
/// (CRLF normalisation at delivery, TOP truncation at retrieval).
/// docs/spool.md describes the format for MTA authors and admins.
///
/// Namespace note: `sdps::spool` is the service class of maildrop.hpp, so
/// the spool's code lives in `sdps::spoolstore` (a namespace may not share
/// a name with a class in the same scope).

#include "spoolstore/departure.hpp"

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

namespace sdps::spoolstore {

/// A file system operation on a spool failed. `what()` names the path and
/// the system error; code() is the errno value (0 when not an OS error).
class io_error : public std::runtime_error {
 public:
  io_error(const std::string& what, int code) : std::runtime_error(what), code_(code) {}
  int code() const { return code_; }

 private:
  int code_;
};

// -- names ------------------------------------------------------------------

/// Names inside a host folder that are not messages.
inline constexpr const char* tmp_folder = "tmp";
inline constexpr const char* locks_folder = "locks";

/// Longest local part accepted at delivery (RFC 5321 section 4.5.3.1.1).
inline constexpr std::size_t max_local_part = 64;
/// Longest envelope address (sender or recipient) accepted at delivery.
inline constexpr std::size_t max_address = 512;

/// True for a customer host folder name: 1-63 of [a-z0-9-], not starting
/// or ending with a hyphen. Checked before any host name becomes a path.
bool valid_host(std::string_view host);

/// Encodes a recipient's local part for file names: ASCII letters are
/// lower-cased (user matching is case-insensitive), [a-z0-9._+-] are kept,
/// every other octet becomes %XX (upper-case hex). The result is canonical,
/// so two encodings compare equal exactly when the local parts match.
std::string encode_user(std::string_view local_part);
/// Reverses encode_user; nullopt if `encoded` is not a canonical encoding.
std::optional<std::string> decode_user(std::string_view encoded);

/// Microseconds since the epoch, from the system clock.
std::int64_t now_us();

/// A new UIDL for a message arriving at `arrival_us`:
/// 17 decimal digits of the arrival time, ".", 16 lower-case hex digits
/// from libsodium's randombytes (34 octets). Lexical order is arrival order.
std::string new_uidl(std::int64_t arrival_us);
/// True if `uidl` has the form new_uidl() makes.
bool valid_uidl(std::string_view uidl);
/// The arrival time a valid UIDL begins with.
std::int64_t uidl_arrival(std::string_view uidl);

/// What a message file's name says: `UIDL,s=SIZE,u=USER`.
struct file_name {
  std::string uidl;        ///< valid_uidl()
  std::uint64_t size = 0;  ///< octets RETR sends: Return-Path line + stored message
  std::string user;        ///< encode_user() of the envelope recipient's local part
  std::int64_t arrival = 0;  ///< uidl_arrival(uidl)
};

/// What a message file's name says, as views into the name: parsed with
/// no copy, for listing big maildrops.
struct name_view {
  std::string_view uidl;     ///< valid_uidl()
  std::uint64_t size = 0;    ///< as file_name::size
  std::string_view user;     ///< as file_name::user (encoded)
  std::int64_t arrival = 0;  ///< uidl_arrival(uidl)
  /// The UIDL's 16 hex digits as a number: (arrival, random) sorts as the
  /// UIDL does, as integers.
  std::uint64_t random = 0;
};

std::string format_name(const file_name& name);
/// Parses a directory entry name; nullopt for anything that is not a
/// well-formed message name (junk, temporary files, lock folders).
std::optional<file_name> parse_name(std::string_view text);
/// parse_name() without copies: the views point into `text`. Accepts
/// exactly the names parse_name() accepts.
std::optional<name_view> parse_name_view(std::string_view text);
/// True if decode_user() accepts `encoded` (a canonical encoding), without
/// decoding it.
bool valid_user_encoding(std::string_view encoded);

// -- envelope header ----------------------------------------------------------

/// The envelope stored in front of each message.
struct envelope_header {
  std::string from;          ///< sender without angle brackets; empty for the null sender
  std::string to;            ///< the one recipient, without angle brackets
  std::int64_t arrival = 0;  ///< microseconds since the epoch
};

/// True if `address` may be stored as an envelope address: at most
/// max_address octets, no control characters (octets below 0x20, 0x7f),
/// no angle brackets. 8-bit octets are allowed (SMTPUTF8).
bool valid_address(std::string_view address);

/// The header block:
///   "SDPS-Spool: 1\r\nEnvelope-From: <F>\r\nEnvelope-To: <T>\r\n"
///   "Arrival: 2026-11-26T20:42:11.123456Z\r\n\r\n"
std::string format_envelope(const envelope_header& envelope);

/// A parsed header block and where the stored message starts.
struct parsed_envelope {
  envelope_header envelope;
  std::uint64_t body_offset = 0;
};

/// The longest header block parse_envelope() looks at.
inline constexpr std::size_t max_envelope_block = 4096;

/// Parses the header block at the start of `data` (the first octets of a
/// file, up to max_envelope_block). nullopt if it is missing, damaged or
/// incomplete. Unknown fields are ignored (later versions may add some).
std::optional<parsed_envelope> parse_envelope(std::string_view data);

/// "Return-Path: <from>\r\n": what RETR and TOP put first.
std::string return_path_line(std::string_view from);

/// RFC 5322 date-time for `us` microseconds since the epoch, in UTC.
std::string rfc5322_date(std::int64_t us);

/// What the dummy notice says about a message that left the spool during
/// a session.
struct dummy_details {
  std::string uidl;          ///< the original message's UIDL
  std::uint64_t size = 0;    ///< its size as LIST gave it
  std::string to;            ///< recipient address for the To: field; may be empty
  std::string server_name;   ///< for From: and the Message-ID's right-hand side
  std::int64_t now = 0;      ///< Date:, microseconds since the epoch
  /// Why it left, as its departure record says (departure.hpp); nullopt
  /// when there is none: removed by hand or by another POP3 session.
  std::optional<departure> why;
};

/// The notice RETR and TOP return instead of a message that left the spool
/// after the snapshot: a valid RFC 5322 message with From, To, Subject,
/// Date and a synthesised Message-ID, CRLF line ends, starting with
/// `Return-Path: <>`. Its subject and text say what became of the message:
/// "Message already delivered by SMTP" (delivered), "Message expired and
/// returned to its sender" (returned), "Message expired" (expired), or
/// "Message removed from the spool" (no record).
std::string dummy_message(const dummy_details& details);

// -- streaming filters --------------------------------------------------------

/// Turns a message into the stored form, piece by piece: a bare LF becomes
/// CRLF, everything else (8-bit octets, NULs, lone CRs) is kept, and the
/// message ends with CRLF unless it is empty. Pure.
class crlf_normaliser {
 public:
  /// Appends the normalised form of `in` to `out`.
  void feed(std::string_view in, std::string& out);
  /// Ends the message: completes a final CR to CRLF, or adds a CRLF after
  /// an unterminated last line.
  void finish(std::string& out);

 private:
  bool empty_ = true;
  bool last_cr_ = false;  // the last octet written was CR
  bool last_lf_ = false;  // the last octet written was LF
};

/// TOP's cut: lets through the header, the blank line after it, and then
/// `body_lines` lines of the body. Without a limit everything passes. A
/// message with no blank line is all header and passes whole. Pure.
class top_filter {
 public:
  explicit top_filter(std::optional<std::uint64_t> body_lines) : left_(body_lines) {}
  /// How many octets at the front of `chunk` to send; after a return
  /// smaller than chunk.size() (or once done()), nothing more is wanted.
  std::size_t accept(std::string_view chunk);
  bool done() const { return done_; }

 private:
  std::optional<std::uint64_t> left_;
  bool in_header_ = true;
  bool line_empty_so_far_ = true;  // only a CR (or nothing) since the last LF
  bool done_ = false;
};

}  // namespace sdps::spoolstore
