// The SMTP client against a scripted server on 127.0.0.1: send this,
// expect that.

#include "smtp/client.hpp"

#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <optional>
#include <thread>

using namespace sdps::smtp;

namespace {

/// A one-connection server in a thread of its own (plain blocking
/// sockets: the other side of the client's event loop) that answers each
/// command line with the next scripted reply and records what it received.
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
      timeval limit{10, 0};
      ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit);
      char buffer[4096];
      for (const auto& [expect, answer] : script) {
        while (received.size() < expect.size() ||
               received.compare(received.size() - expect.size(), expect.size(), expect) != 0) {
          const ssize_t n = ::recv(fd, buffer, sizeof buffer, 0);
          if (n <= 0) {
            ::close(fd);
            return;
          }
          received.append(buffer, static_cast<std::size_t>(n));
        }
        ::send(fd, answer.data(), answer.size(), MSG_NOSIGNAL);
      }
      while (::recv(fd, buffer, sizeof buffer, 0) > 0) {
      }
      ::close(fd);
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

/// Runs `work` on an event loop of its own to the end; rethrows.
template <typename T>
T run(sdps::awaitable<T> work) {
  boost::asio::io_context io;
  std::optional<T> result;
  std::exception_ptr failure;
  boost::asio::co_spawn(io, std::move(work), [&](std::exception_ptr e, T value) {
    failure = e;
    if (!e) result = std::move(value);
  });
  io.run();
  if (failure) std::rethrow_exception(failure);
  return std::move(*result);
}

client_options quick() {
  client_options o;
  o.helo = "punt.example";
  o.connect_timeout = o.command_timeout = o.data_timeout = std::chrono::seconds(10);
  return o;
}

message_reader from_text(std::string text) {
  auto data = std::make_shared<std::string>(std::move(text));
  auto pos = std::make_shared<std::size_t>(0);
  return [data, pos](std::span<char> buffer) {
    const std::size_t n = std::min(buffer.size(), data->size() - *pos);
    std::copy_n(data->data() + *pos, n, buffer.data());
    *pos += n;
    return n;
  };
}

/// 127.0.0.1:PORT.
sdps::base::endpoint local(unsigned short port) { return {"127.0.0.1", port}; }

}  // namespace

/// One session: open, send one message, QUIT.
sdps::awaitable<delivery_result> one_message(unsigned short port, std::string from, std::string to, std::string text) {
  const sdps::executor ex = co_await boost::asio::this_coro::executor;
  const sdps::base::endpoint where = local(port);
  auto c = co_await client::open(ex, where, quick());
  CHECK(c->greeting().code == 220);
  const std::uint64_t size = text.size();
  const message_reader read = from_text(std::move(text));
  delivery_result r = co_await c->send(from, to, size, read);
  co_await c->quit();
  co_return r;
}

TEST_CASE("pipelined transaction with SIZE and 8BITMIME, multi-line EHLO") {
  scripted_server s({{"", "220 mx ESMTP\r\n"},
                     {"EHLO punt.example\r\n", "250-mx\r\n250-PIPELINING\r\n250-SIZE 100000\r\n250 8BITMIME\r\n"},
                     {"DATA\r\n", "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 go\r\n"},
                     {"\r\n.\r\n", "250 2.0.0 Ok: queued\r\n"},
                     {"QUIT\r\n", "221 bye\r\n"}});
  const auto r = run(one_message(s.port, "alice@example.com", "fred@sample.demon.co.uk", "Subject: x\r\n\r\n.dot\r\n"));
  CHECK(r.result == delivery_result::outcome::delivered);
  CHECK(r.last.summary() == "250 2.0.0 Ok: queued");
  s.wait();
  CHECK(s.received ==
        "EHLO punt.example\r\n"
        "MAIL FROM:<alice@example.com> SIZE=20 BODY=8BITMIME\r\nRCPT TO:<fred@sample.demon.co.uk>\r\nDATA\r\n"
        "Subject: x\r\n\r\n..dot\r\n.\r\nQUIT\r\n");
}

TEST_CASE("a rejected RCPT without PIPELINING is permanent, then RSET") {
  scripted_server s({{"", "220 mx\r\n"},
                     {"EHLO punt.example\r\n", "250 mx\r\n"},
                     {"MAIL FROM:<>\r\n", "250 ok\r\n"},
                     {"RCPT TO:<fred@sample.demon.co.uk>\r\n", "550 5.1.1 no such user\r\n"},
                     {"RSET\r\n", "250 ok\r\n"},
                     {"QUIT\r\n", "221 bye\r\n"}});
  const auto r = run(one_message(s.port, "", "fred@sample.demon.co.uk", "x\r\n"));
  CHECK(r.result == delivery_result::outcome::failed);
  CHECK(r.stage == "RCPT");
}

TEST_CASE("a 421 greeting is refused; a closed port is a network error; silence times out") {
  {
    scripted_server s(std::vector<std::pair<std::string, std::string>>{{"", "421 busy\r\n"}});
    CHECK_THROWS_AS(run(one_message(s.port, "", "x@y", "x\r\n")), refused);
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
  CHECK_THROWS_AS(run(one_message(port, "", "x@y", "x\r\n")), network_error);

  // A server that accepts and never greets: the watchdog ends the wait.
  scripted_server silent(std::vector<std::pair<std::string, std::string>>{{"never sent", ""}});
  boost::asio::io_context io;
  std::string error;
  client_options brief = quick();
  brief.command_timeout = std::chrono::milliseconds(200);
  boost::asio::co_spawn(
      io,
      [&]() -> sdps::awaitable<void> {
        const sdps::executor ex = co_await boost::asio::this_coro::executor;
        const sdps::base::endpoint where = local(silent.port);
        try {
          auto c = co_await client::open(ex, where, brief);
        } catch (const network_error& e) {
          error = e.what();
        }
      },
      boost::asio::detached);
  io.run();
  CHECK(error == "no answer within 200ms");
}
