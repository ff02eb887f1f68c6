#pragma once
/// @file
/// What a module answers: a status line, optionally followed by a
/// multi-line body that the core streams, dot-stuffs and terminates.

#include <sdps/asio.hpp>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace sdps {

/// The raw octets of a multi-line response body, read piece by piece.
///
/// The core calls read() on the session's event loop until it returns 0,
/// writing each piece to the client before asking for the next, so a large
/// message never has to be held in memory and a slow client slows the
/// reading (backpressure). Lines must end in CRLF; the core adds the
/// dot-stuffing and the terminating "." line, and supplies a final CRLF if
/// the body does not end with one. The core offers big spans (up to 256
/// KiB; just enough for the whole body when size() is known): fill as much
/// as is cheap, and return 0 without I/O once at the end. Each read() is
/// bounded by the owning module's time limit; a read that throws or times
/// out closes the connection (a multi-line reply cannot be turned into
/// -ERR half way; one that times out before any of the reply went out is
/// answered -ERR [SYS/TEMP]), and a read that timed out is waited for
/// before the session's `disconnect` event, as for any late call (see
/// module::on_command()).
class body_source {
 public:
  virtual ~body_source() = default;
  /// Fills a prefix of `buffer`; returns how many octets, 0 at the end.
  virtual awaitable<std::size_t> read(std::span<char> buffer) = 0;
  /// The same without waiting, when the octets are at hand (a file read
  /// from the page cache, a string): how many, 0 at the end; or nullopt
  /// when read() must be awaited instead. The core tries it first, so a
  /// body at hand costs no coroutine per piece. Same rules as read()
  /// otherwise. The default: nullopt.
  virtual std::optional<std::size_t> read_now(std::span<char> buffer) {
    (void)buffer;
    return std::nullopt;
  }
  /// How many octets the remaining read() calls produce in all (before
  /// dot-stuffing), when that is known without reading; nullopt if not.
  /// RETR's "+OK N octets" is this number when there is one, so that it
  /// matches what follows (a dummy notice has its own length). Event loop.
  virtual std::optional<std::uint64_t> size() const { return std::nullopt; }
  /// True when read() gives octets already in POP3's multi-line form:
  /// dot-stuffed, lines ending in CRLF, without the terminating "." line
  /// (a body relayed from another POP3 server). The core then sends them
  /// as they are and only ends the body. False by default.
  virtual bool stuffed() const { return false; }
};

/// A body already in memory (listings, short notices).
class string_body final : public body_source {
 public:
  explicit string_body(std::string text) : text_(std::move(text)) {}
  awaitable<std::size_t> read(std::span<char> buffer) override { co_return take(buffer); }
  std::optional<std::size_t> read_now(std::span<char> buffer) override { return take(buffer); }
  std::optional<std::uint64_t> size() const override { return text_.size() - offset_; }

 private:
  std::size_t take(std::span<char> buffer) {
    const std::size_t n = std::min(buffer.size(), text_.size() - offset_);
    text_.copy(buffer.data(), n, offset_);
    offset_ += n;
    return n;
  }
  std::string text_;
  std::size_t offset_ = 0;
};

/// One POP3 reply. Build it with ok() / err() and, for a multi-line reply,
/// with_body(). The status text must not contain CR or LF; the core
/// replaces them if it does.
struct response {
  bool positive = false;
  std::string text;                   ///< after "+OK " / "-ERR "
  bool multiline = false;             ///< body follows (possibly empty)
  std::unique_ptr<body_source> body;  ///< null with multiline means an empty body
  bool close = false;                 ///< close the connection after sending

  static response ok(std::string text = {}) { return {true, std::move(text), false, nullptr, false}; }
  static response err(std::string text) { return {false, std::move(text), false, nullptr, false}; }

  response&& with_body(std::unique_ptr<body_source> source) && {
    multiline = true;
    body = std::move(source);
    return std::move(*this);
  }
  response&& with_body(std::string text) && {
    return std::move(*this).with_body(std::make_unique<string_body>(std::move(text)));
  }
  response&& and_close() && {
    close = true;
    return std::move(*this);
  }
};

}  // namespace sdps
