#include "smtp/client.hpp"

#include <sdps/log.hpp>

namespace sdps::smtp {

namespace {

/// Longest reply line accepted (RFC 5321 says 512; servers exceed it).
constexpr std::size_t max_reply_line = 4096;
/// Most lines in one reply before the server is deemed broken.
constexpr std::size_t max_reply_lines = 200;

delivery_result decide(const reply& r, const char* stage) {
  delivery_result out;
  out.last = r;
  out.stage = stage;
  out.result = r.positive()    ? delivery_result::outcome::delivered
               : r.transient() ? delivery_result::outcome::deferred
                               : delivery_result::outcome::failed;
  return out;
}

}  // namespace

client::client(const endpoint& to, client_options options)
    : connection_(connection::open(to, options.connect_timeout)), options_(std::move(options)) {
  connection_.set_timeout(options_.command_timeout);
  greeting_ = read_reply();
  if (greeting_.code != 220) throw refused(greeting_);  // RFC 5321 3.1: it will close; no QUIT
  command("EHLO " + options_.helo);
  connection_.flush();
  reply hello = read_reply();
  if (hello.code >= 500 && hello.code != 554) {  // an old server: try HELO
    command("HELO " + options_.helo);
    connection_.flush();
    hello = read_reply();
  } else if (hello.positive()) {
    extensions_ = extensions(hello);
  }
  if (hello.code != 250) {
    quit();
    throw refused(hello);
  }
}

bool client::offers(std::string_view keyword) const {
  for (const auto& [name, params] : extensions_)
    if (name == keyword) return true;
  return false;
}

void client::command(const std::string& line) { connection_.write(line + "\r\n"); }

reply client::read_reply() {
  reply_reader reader;
  for (std::size_t n = 0; n < max_reply_lines; ++n) {
    const std::string line = connection_.read_line(max_reply_line);
    if (line.empty()) throw network_error("the server closed the connection");
    switch (reader.feed(line)) {
      case reply_reader::status::complete:
        return reader.take();
      case reply_reader::status::bad:
        throw network_error("not an SMTP reply: '" + printable(line, 120) + "'");
      case reply_reader::status::more:
        break;
    }
  }
  throw network_error("a reply of more than " + std::to_string(max_reply_lines) + " lines");
}

delivery_result client::send(const std::string& from, const std::string& to, std::uint64_t size,
                             const message_reader& read) {
  std::string mail = "MAIL FROM:<" + from + ">";
  if (offers("SIZE")) mail += " SIZE=" + std::to_string(size);
  if (offers("8BITMIME")) mail += " BODY=8BITMIME";
  const std::string rcpt = "RCPT TO:<" + to + ">";

  reply mail_reply, rcpt_reply, data_reply;
  if (offers("PIPELINING")) {
    command(mail);
    command(rcpt);
    command("DATA");
    connection_.flush();
    mail_reply = read_reply();
    rcpt_reply = read_reply();
    data_reply = read_reply();
    if (!mail_reply.positive() || !rcpt_reply.positive()) {
      if (data_reply.code == 354) {  // RFC 2920 3.1: end the DATA the server wrongly accepted
        connection_.write(".\r\n");
        connection_.flush();
        read_reply();
      }
      command("RSET");
      connection_.flush();
      read_reply();
      return !mail_reply.positive() ? decide(mail_reply, "MAIL") : decide(rcpt_reply, "RCPT");
    }
  } else {
    command(mail);
    connection_.flush();
    mail_reply = read_reply();
    if (!mail_reply.positive()) {
      command("RSET");
      connection_.flush();
      read_reply();
      return decide(mail_reply, "MAIL");
    }
    command(rcpt);
    connection_.flush();
    rcpt_reply = read_reply();
    if (!rcpt_reply.positive()) {
      command("RSET");
      connection_.flush();
      read_reply();
      return decide(rcpt_reply, "RCPT");
    }
    command("DATA");
    connection_.flush();
    data_reply = read_reply();
  }
  if (data_reply.code != 354) {
    command("RSET");
    connection_.flush();
    read_reply();
    return decide(data_reply, "DATA");
  }

  dot_stuffer stuffer;
  std::string out;
  char buffer[65536];
  for (;;) {
    const std::size_t n = read(std::span<char>(buffer, sizeof buffer));
    if (n == 0) break;
    out.clear();
    stuffer.feed(std::string_view(buffer, n), out);
    connection_.write(out);
  }
  out.clear();
  stuffer.finish(out);
  connection_.write(out);
  connection_.flush();
  connection_.set_timeout(options_.data_timeout);
  reply final_reply = read_reply();
  connection_.set_timeout(options_.command_timeout);
  return decide(final_reply, "end of data");
}

void client::quit() noexcept {
  try {
    command("QUIT");
    connection_.flush();
    connection_.set_timeout(std::chrono::seconds(5));
    read_reply();
  } catch (...) {
  }
}

}  // namespace sdps::smtp
