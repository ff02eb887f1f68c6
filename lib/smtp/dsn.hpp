#pragma once
/// @file
/// Delivery status notifications (RFC 3464, RFC 3462 multipart/report):
/// the bounce `sdps expire` sends for a message that was never read.

#include <cstdint>
#include <string>

namespace sdps::smtp {

struct dsn_details {
  std::string reporting_mta;    ///< this machine's name (config `server_name`)
  std::string sender;           ///< the original envelope sender: the bounce's To:
  std::string recipient;        ///< the original envelope recipient (Final-Recipient)
  std::int64_t arrival = 0;     ///< when the original arrived, Unix seconds
  std::int64_t now = 0;         ///< Date:, Unix seconds
  std::string status = "4.4.7"; ///< RFC 3463: delivery time expired
  std::string diagnostic;       ///< one line for the human-readable part; may be empty
  std::string original_header;  ///< the original's header block, CRLF line ends
  std::string unique;           ///< random letters/digits: boundary and Message-ID
};

/// The whole bounce message, CRLF line ends, ready for DATA (not yet
/// dot-stuffed): From MAILER-DAEMON, Auto-Submitted: auto-replied, and a
/// multipart/report; report-type=delivery-status of three parts: text,
/// message/delivery-status (Reporting-MTA, Arrival-Date, Final-Recipient,
/// Action: failed, Status), text/rfc822-headers.
std::string dsn_message(const dsn_details& d);

}  // namespace sdps::smtp
