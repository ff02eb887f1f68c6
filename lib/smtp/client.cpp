#include "smtp/client.hpp"

#include <sdps/log.hpp>

namespace sdps::smtp {

namespace {

/// Longest reply line accepted (RFC 5321 says 512; servers exceed it).
constexpr std::size_t max_reply_line = 4096;
/// Most lines in one reply before the server is deemed broken.
constexpr std::size_t max_reply_lines = 200;
/// Octets of the message read, stuffed and sent at a time.
constexpr std::size_t message_chunk = 64 * 1024;

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

awaitable<std::unique_ptr<client>> client::open(executor ex, base::endpoint to, client_options options) {
  const auto limit = options.connect_timeout;
  std::unique_ptr<connection> link = co_await connection::open(ex, to, limit);
  auto c = std::make_unique<client>(std::move(link), std::move(options));
  co_await c->hello();
  co_return c;
}

awaitable<void> client::hello() {
  connection_->set_timeout(options_.command_timeout);
  greeting_ = co_await read_reply();
  if (greeting_.code != 220) throw refused(greeting_);  // RFC 5321 3.1: it will close; no QUIT
  command("EHLO " + options_.helo);
  co_await connection_->flush();
  reply hello = co_await read_reply();
  if (hello.code >= 500 && hello.code != 554) {  // an old server: try HELO
    command("HELO " + options_.helo);
    co_await connection_->flush();
    hello = co_await read_reply();
  } else if (hello.positive()) {
    extensions_ = extensions(hello);
  }
  if (hello.code != 250) {
    co_await quit();
    throw refused(hello);
  }
}

bool client::offers(std::string_view keyword) const {
  for (const auto& extension : extensions_)
    if (extension.first == keyword) return true;
  return false;
}

void client::command(const std::string& line) {
  connection_->write(line);
  connection_->write("\r\n");
}

awaitable<reply> client::read_reply() {
  reply_reader reader;
  for (std::size_t n = 0; n < max_reply_lines; ++n) {
    const std::string line = co_await connection_->read_line(max_reply_line);
    if (line.empty()) throw network_error("the server closed the connection");
    switch (reader.feed(line)) {
      case reply_reader::status::complete:
        co_return reader.take();
      case reply_reader::status::bad:
        throw network_error("not an SMTP reply: '" + printable(line, 120) + "'");
      case reply_reader::status::more:
        break;
    }
  }
  throw network_error("a reply of more than " + std::to_string(max_reply_lines) + " lines");
}

awaitable<void> client::reset() {
  command("RSET");
  co_await connection_->flush();
  co_await read_reply();
}

awaitable<delivery_result> client::send(const std::string& from, const std::string& to, std::uint64_t size,
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
    co_await connection_->flush();
    mail_reply = co_await read_reply();
    rcpt_reply = co_await read_reply();
    data_reply = co_await read_reply();
    if (!mail_reply.positive() || !rcpt_reply.positive()) {
      if (data_reply.code == 354) {  // RFC 2920 3.1: end the DATA the server wrongly accepted
        connection_->write(".\r\n");
        co_await connection_->flush();
        co_await read_reply();
      }
      co_await reset();
      co_return !mail_reply.positive() ? decide(mail_reply, "MAIL") : decide(rcpt_reply, "RCPT");
    }
  } else {
    command(mail);
    co_await connection_->flush();
    mail_reply = co_await read_reply();
    if (!mail_reply.positive()) {
      co_await reset();
      co_return decide(mail_reply, "MAIL");
    }
    command(rcpt);
    co_await connection_->flush();
    rcpt_reply = co_await read_reply();
    if (!rcpt_reply.positive()) {
      co_await reset();
      co_return decide(rcpt_reply, "RCPT");
    }
    command("DATA");
    co_await connection_->flush();
    data_reply = co_await read_reply();
  }
  if (data_reply.code != 354) {
    co_await reset();
    co_return decide(data_reply, "DATA");
  }

  // The message's octets are read here, on the loop: a file in the page
  // cache, a piece at a time (flush and expire run one session each).
  dot_stuffer stuffer;
  std::string buffer(message_chunk, '\0');
  std::string out;
  for (;;) {
    const std::size_t n = read(std::span<char>(buffer.data(), buffer.size()));
    if (n == 0) break;
    out.clear();
    stuffer.feed(std::string_view(buffer.data(), n), out);
    connection_->write(out);
    co_await connection_->flush();
  }
  out.clear();
  stuffer.finish(out);
  connection_->write(out);
  co_await connection_->flush();
  connection_->set_timeout(options_.data_timeout);
  const reply final_reply = co_await read_reply();
  connection_->set_timeout(options_.command_timeout);
  co_return decide(final_reply, "end of data");
}

awaitable<void> client::quit() {
  try {
    command("QUIT");
    connection_->set_timeout(std::chrono::seconds(5));
    co_await connection_->flush();
    co_await read_reply();
  } catch (const std::exception&) {
  }
  connection_->close();
}

}  // namespace sdps::smtp
