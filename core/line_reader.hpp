#pragma once
// Splits a POP3 client's byte stream into command lines.

#include <cstddef>
#include <string>
#include <string_view>

namespace sdps::core {

/// Incremental command-line parser. Feed it whatever the socket returned;
/// take complete lines out with next(). Accepts CRLF or bare LF. A line
/// longer than `limit` octets (terminator included) is reported once as
/// `overlong` and the rest of it, up to its terminator, is discarded.
/// Pure: no I/O, so it is unit-tested directly.
class line_reader {
 public:
  enum class status { line, overlong, need_more };

  explicit line_reader(std::size_t limit = 512) : limit_(limit) {}

  /// Appends received bytes. Returns how many were consumed; the rest
  /// must be fed again after next() has drained what is pending. Only
  /// what fits under the limit plus a terminator is buffered.
  std::size_t feed(std::string_view bytes);

  /// The next event. For `line`, `line()` holds the text without its
  /// terminator until the following call.
  status next();
  const std::string& line() const { return line_; }
  /// True when a complete line or an overlong report is waiting, so
  /// replies can be held back and sent together (pipelining).
  bool pending() const { return ready_ != ready::none; }
  /// Wipes the buffers (they may have held a password).
  void wipe();
  /// Octets of an unfinished line held (or a pending line not yet taken).
  std::size_t buffered() const { return partial_.size() + (ready_ == ready::line ? line_.size() + 1 : 0); }
  /// Forgets everything received so far (wiped): the next octet starts a
  /// new line. For STLS, which must not carry input across the handshake.
  void reset();

 private:
  enum class ready { none, line, overlong };
  std::size_t limit_;
  std::string partial_;  // the current line so far (at most limit_ octets)
  std::string line_;
  bool discarding_ = false;  // inside an overlong line
  ready ready_ = ready::none;
};

}  // namespace sdps::core
