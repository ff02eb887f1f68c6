#include "smtp/dsn.hpp"

#include "smtp/protocol.hpp"

namespace sdps::smtp {

namespace {

bool has_8bit(const std::string& text) {
  for (unsigned char c : text)
    if (c >= 0x80) return true;
  return false;
}

/// Address text safe to put in a header field: no CR, LF or other controls.
std::string field_safe(const std::string& text) {
  std::string out;
  for (unsigned char c : text) out.push_back(c < 0x20 || c == 0x7f ? '?' : static_cast<char>(c));
  return out;
}

}  // namespace

std::string dsn_message(const dsn_details& d) {
  const std::string boundary = "=_sdps_" + d.unique;
  const std::string mta = field_safe(d.reporting_mta);
  const std::string recipient = field_safe(d.recipient);
  std::string header = d.original_header;
  if (header.size() < 2 || header.compare(header.size() - 2, 2, "\r\n") != 0) header += "\r\n";

  std::string m;
  m += "From: Mail Delivery System <MAILER-DAEMON@" + mta + ">\r\n";
  m += "To: <" + field_safe(d.sender) + ">\r\n";
  m += "Subject: Undelivered Mail Returned to Sender\r\n";
  m += "Date: " + rfc5322_date(d.now) + "\r\n";
  m += "Message-ID: <" + d.unique + ".dsn@" + mta + ">\r\n";
  m += "Auto-Submitted: auto-replied\r\n";
  m += "MIME-Version: 1.0\r\n";
  m += "Content-Type: multipart/report; report-type=delivery-status;\r\n\tboundary=\"" + boundary + "\"\r\n";
  m += "Content-Transfer-Encoding: " + std::string(has_8bit(header) ? "8bit" : "7bit") + "\r\n";
  m += "\r\nThis is a MIME-encapsulated message.\r\n\r\n";

  m += "--" + boundary + "\r\n";
  m += "Content-Description: Notification\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n";
  m += "This is the mail system at " + mta + ".\r\n\r\n";
  m += "Your message to <" + recipient + "> was not collected by its recipient\r\n";
  m += "before it expired, and has been removed from the queue.\r\n";
  m += "It arrived on " + rfc5322_date(d.arrival) + ".\r\n";
  if (!d.diagnostic.empty()) m += "\r\n" + field_safe(d.diagnostic) + "\r\n";
  m += "\r\nThe message's header is attached.\r\n\r\n";

  m += "--" + boundary + "\r\n";
  m += "Content-Description: Delivery report\r\nContent-Type: message/delivery-status\r\n\r\n";
  m += "Reporting-MTA: dns; " + mta + "\r\n";
  m += "Arrival-Date: " + rfc5322_date(d.arrival) + "\r\n\r\n";
  m += "Final-Recipient: rfc822; " + recipient + "\r\n";
  m += "Action: failed\r\n";
  m += "Status: " + field_safe(d.status) + "\r\n";
  m += "Diagnostic-Code: X-sdps; message expired in the queue\r\n";
  m += "Last-Attempt-Date: " + rfc5322_date(d.now) + "\r\n\r\n";

  m += "--" + boundary + "\r\n";
  m += "Content-Description: Undelivered message header\r\nContent-Type: text/rfc822-headers\r\n";
  if (has_8bit(header)) m += "Content-Transfer-Encoding: 8bit\r\n";
  m += "\r\n" + header;
  m += "\r\n--" + boundary + "--\r\n";
  return m;
}

}  // namespace sdps::smtp
