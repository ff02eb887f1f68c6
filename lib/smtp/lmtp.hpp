#pragma once
/// @file
/// The server's side of an LMTP conversation (RFC 2033) without I/O or
/// storage: fed what the client sends, piece by piece, it keeps the state
/// (greeted, sender, recipients, DATA), checks each command's syntax and
/// place, and writes the replies. What needs the site (is this recipient
/// one of ours? store the message) it asks of its driver as a request,
/// and takes the answer back, so the slow work happens where the driver
/// wants it (`sdps lmtp`: a thread pool) while the protocol stays here,
/// pure, unit-tested and fuzzed (tests/fuzz/lmtp.cpp).
///
/// The driver's loop:
///
///     send(greeting())
///     for each piece read (read_line: up to the limit, ending in LF when
///     the line fits; max_command_line, or max_data_piece in DATA):
///       switch (feed(piece, message))     // in DATA, message octets appended
///         check_recipient: recipient_checked(check(recipient_asked()))
///         store:           for each of recipients(): stored(store(...))
///         close:           send(take_replies()), close the connection
///       send(take_replies()) once no more input is waiting (PIPELINING)
///       log each of take_transactions()
///
/// Replies follow RFC 2033: one per command, and after the final dot of
/// DATA one per accepted recipient, in the order they were accepted.

#include "smtp/protocol.hpp"

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace sdps::smtp {

/// The longest command line read (RFC 5321 says 512 with the CRLF; MTAs
/// send longer MAIL lines with parameters).
inline constexpr std::size_t max_command_line = 2048;
/// How much of a DATA line is read at once (a longer line comes in pieces).
inline constexpr std::size_t max_data_piece = 8192;

/// What the site says about one recipient.
struct recipient_verdict {
  enum class kind {
    accepted,     ///< 250: ours; stored at the end of DATA
    unknown,      ///< 550 5.1.1: not a customer address (`reason` says why)
    unavailable,  ///< 451 4.3.0: cannot tell now (the host database is unreadable)
  } result = kind::accepted;
  std::string reason;  ///< for unknown: the end of the reply; for both: the log's
};

/// What became of the message for one recipient.
struct store_outcome {
  enum class kind {
    stored,   ///< 250 2.0.0 <rcpt> UIDL stored
    refused,  ///< 554 5.6.0: the spool cannot take this message, ever (`detail` says why)
    failed,   ///< 451 4.3.0: try again later (`detail`: why, for the log)
  } result = kind::failed;
  std::string uidl;    ///< stored: its UIDL
  std::string detail;  ///< stored: where ("on finchley"); otherwise why
};

/// One transaction that has ended, for the log: who sent what, and what
/// became of it for each recipient, refused ones included.
struct lmtp_transaction {
  std::string from;             ///< the sender, without brackets ("" for <>)
  std::uint64_t size = 0;       ///< message octets received (0 without DATA)
  bool data = false;            ///< DATA ended with the final dot
  /// Each recipient as the client wrote it, with its outcome: "stored UIDL
  /// on PUNT", "refused: REPLY" (a RCPT or a message refused), "deferred:
  /// REPLY" (a 4xx), or "not delivered" (the transaction ended before DATA
  /// completed).
  std::vector<std::pair<std::string, std::string>> recipients;
};

class lmtp_protocol {
 public:
  struct limits {
    std::string server_name = "localhost";        ///< in the greeting and LHLO reply
    std::uint64_t max_message_size = 50ull << 20;  ///< octets; announced as SIZE, 552 beyond it
    std::size_t max_recipients = 1000;            ///< per transaction; 452 beyond it
    /// Whether the spool can record this sender (553 5.1.7 if not); every
    /// sender when unset.
    std::function<bool(std::string_view)> usable_sender;
  };

  /// What the driver must do before reading on.
  enum class request {
    none,             ///< nothing (send take_replies() when the input runs dry)
    check_recipient,  ///< ask the site about recipient_asked(), answer with recipient_checked()
    store,            ///< store the message for each of recipients(), answer with stored() each
    close,            ///< send take_replies() and close the connection (QUIT)
  };

  explicit lmtp_protocol(limits l);

  /// "220 NAME LMTP sdps ready\r\n".
  std::string greeting() const;

  /// One piece of input, as read_line returns it. In DATA, the message
  /// octets it holds (un-stuffed, and only while the message is within
  /// max_message_size) are appended to `message`. Not to be called while
  /// a request is unanswered, nor after close.
  request feed(std::string_view piece, std::string& message);

  /// Whether the next piece belongs to a DATA message (read up to
  /// max_data_piece), rather than to a command line (max_command_line).
  bool in_data() const { return phase_ == phase::data; }

  /// check_recipient: the address asked about (without brackets).
  const std::string& recipient_asked() const { return asked_; }
  void recipient_checked(const recipient_verdict& verdict);

  /// store: the sender (without brackets; "" for the null sender) and the
  /// accepted recipients, in order.
  const std::string& sender() const { return from_; }
  const std::vector<std::string>& recipients() const { return to_; }
  /// The message's size in octets (after DATA).
  std::uint64_t message_size() const { return size_; }
  /// The outcome for the next recipient in recipients()' order; after the
  /// last one the transaction ends.
  void stored(const store_outcome& outcome);

  /// The driver could not keep the message while it arrived (its
  /// temporary file): at the end of DATA every recipient gets 451 and
  /// nothing is asked to be stored. Call while in_data().
  void spool_failed();

  /// The client was idle too long: "421 4.4.2 ..." is the last reply, and
  /// the transaction in progress ends. Then close.
  void timed_out();
  /// The connection ended (lost, timed out, the server stopping): the
  /// transaction in progress, if any, ends undelivered (take_transactions()).
  void ended();

  /// The replies written since the last call: CRLF-ended lines.
  std::string take_replies() { return std::exchange(replies_, std::string()); }
  /// The transactions that ended since the last call (at most one per
  /// feed() or answer), for the log.
  std::vector<lmtp_transaction> take_transactions() { return std::exchange(finished_, {}); }

 private:
  enum class phase { command, skipping_long_line, data, closed };

  void reply(std::string_view line);
  request command(std::string_view line);
  void lhlo(const std::string& argument);
  void mail(const std::string& argument);
  request rcpt(const std::string& argument);
  void data_command();
  request end_of_data();
  /// Ends the transaction in progress (if any) and records it for the log.
  void finish_transaction();
  void reset();

  limits limits_;
  phase phase_ = phase::command;
  bool greeted_ = false;
  /// The transaction: MAIL given (from_ set), its recipients, its log.
  bool in_transaction_ = false;
  std::string from_;
  std::vector<std::string> to_;
  /// Where each of to_ is in log_.recipients.
  std::vector<std::size_t> logged_at_;
  lmtp_transaction log_;
  std::string asked_;
  /// DATA: the message's octets so far, the filter, one piece's octets.
  std::uint64_t size_ = 0;
  dot_unstuffer unstuffer_;
  std::string piece_;
  bool spool_failed_ = false;
  std::size_t answered_ = 0;  ///< stored() outcomes taken so far
  std::string replies_;
  std::vector<lmtp_transaction> finished_;
};

}  // namespace sdps::smtp
