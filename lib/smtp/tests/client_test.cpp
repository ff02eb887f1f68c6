// The SMTP client against a scripted server on 127.0.0.1: send this,
// expect that.

#include "smtp/client.hpp"

#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <thread>

using namespace sdps::smtp;

namespace {

/// A one-connection server that answers each command line with the next
/// scripted reply and records what it received.
struct scripted_server {
  int listener = -1;
  std::uint16_t port = 0;
  std::string received;
  std::thread thread;

  explicit scripted_server(std::vector<std::pair<std::string, std::string>> script) {
    listener = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(listener, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    socklen_t len = sizeof a;
    ::getsockname(listener, reinterpret_cast<sockaddr*>(&a), &len);
    port = ntohs(a.sin_port);
    ::listen(listener, 1);
    // Each step: wait until `received` ends with the expected text, then reply.
    thread = std::thread([this, script = std::move(script)] {
      const int fd = ::accept(listener, nullptr, nullptr);
      if (fd < 0) return;
      connection c(fd, std::chrono::seconds(10));
      for (const auto& [expect, answer] : script) {
        while (received.size() < expect.size() ||
               received.compare(received.size() - expect.size(), expect.size(), expect) != 0) {
          const auto line = c.read_line(100000);
          if (line.empty()) return;
          received += line;
        }
        c.write(answer);
        c.flush();
      }
      while (!c.read_line(100000).empty()) {
      }
    });
  }
  void wait() {
    if (thread.joinable()) thread.join();
  }
  ~scripted_server() {
    wait();
    ::close(listener);
  }
};

client_options quick() {
  client_options o;
  o.helo = "punt.example";
  o.connect_timeout = o.command_timeout = o.data_timeout = std::chrono::seconds(10);
  return o;
}

message_reader from(std::string text) {
  auto data = std::make_shared<std::string>(std::move(text));
  auto pos = std::make_shared<std::size_t>(0);
  return [data, pos](std::span<char> buffer) {
    const std::size_t n = std::min(buffer.size(), data->size() - *pos);
    std::copy_n(data->data() + *pos, n, buffer.data());
    *pos += n;
    return n;
  };
}

}  // namespace

TEST_CASE("pipelined transaction with SIZE and 8BITMIME, multi-line EHLO") {
  scripted_server s({{"", "220 mx ESMTP\r\n"},
                     {"EHLO punt.example\r\n", "250-mx\r\n250-PIPELINING\r\n250-SIZE 100000\r\n250 8BITMIME\r\n"},
                     {"DATA\r\n", "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 go\r\n"},
                     {"\r\n.\r\n", "250 2.0.0 Ok: queued\r\n"},
                     {"QUIT\r\n", "221 bye\r\n"}});
  {
    client c(endpoint::parse("127.0.0.1:" + std::to_string(s.port)), quick());
    CHECK(c.offers("PIPELINING"));
    const auto r = c.send("alice@example.com", "fred@sample.demon.co.uk", 21, from("Subject: x\r\n\r\n.dot\r\n"));
    CHECK(r.result == delivery_result::outcome::delivered);
    CHECK(r.last.summary() == "250 2.0.0 Ok: queued");
    c.quit();
  }
  s.wait();
  CHECK(s.received ==
        "EHLO punt.example\r\n"
        "MAIL FROM:<alice@example.com> SIZE=21 BODY=8BITMIME\r\nRCPT TO:<fred@sample.demon.co.uk>\r\nDATA\r\n"
        "Subject: x\r\n\r\n..dot\r\n.\r\nQUIT\r\n");
}

TEST_CASE("a rejected RCPT without PIPELINING is permanent, then RSET") {
  scripted_server s({{"", "220 mx\r\n"},
                     {"EHLO punt.example\r\n", "250 mx\r\n"},
                     {"MAIL FROM:<>\r\n", "250 ok\r\n"},
                     {"RCPT TO:<fred@sample.demon.co.uk>\r\n", "550 5.1.1 no such user\r\n"},
                     {"RSET\r\n", "250 ok\r\n"},
                     {"QUIT\r\n", "221 bye\r\n"}});
  {
    client c(endpoint::parse("127.0.0.1:" + std::to_string(s.port)), quick());
    const auto r = c.send("", "fred@sample.demon.co.uk", 3, from("x\r\n"));
    CHECK(r.result == delivery_result::outcome::failed);
    CHECK(r.stage == "RCPT");
    c.quit();
  }
}

TEST_CASE("a 421 greeting is refused; a closed port is a network error") {
  {
    scripted_server s(std::vector<std::pair<std::string, std::string>>{{"", "421 busy\r\n"}});
    CHECK_THROWS_AS(client(endpoint::parse("127.0.0.1:" + std::to_string(s.port)), quick()), refused);
  }
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  const auto port = ntohs(a.sin_port);
  ::close(fd);  // nothing listens there now
  CHECK_THROWS_AS(client(endpoint::parse("127.0.0.1:" + std::to_string(port)), quick()), network_error);
}
