// remote_spool in a front end's chain (auth, lock, remote_spool, merge,
// commands, extensions) against a scripted back end on a real loopback
// socket: what the client sees, what the back end receives, and the
// faults (silent, refused, dying, wrong secret).

#include "commands.hpp"
#include "extensions.hpp"
#include "support/harness.hpp"
#include "lock.hpp"
#include "merge.hpp"
#include "remote_spool.hpp"

#include <boost/asio/read_until.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/write.hpp>
#include <catch2/catch.hpp>

#include <sys/stat.h>
#include <unistd.h>

#include <fstream>

using namespace sdps;
using namespace sdps::testing;

namespace {

const std::string secret_text = "the front-end secret, 32 octets!";

struct secret_file {
  std::filesystem::path path;
  secret_file() {
    char name[] = "/tmp/sdps-remote-secret-XXXXXX";
    const int fd = ::mkstemp(name);
    REQUIRE(fd >= 0);
    ::close(fd);
    path = name;
    std::ofstream(path, std::ios::binary) << secret_text;
    REQUIRE(::chmod(path.c_str(), 0600) == 0);
  }
  ~secret_file() {
    std::error_code ignored;
    std::filesystem::remove(path, ignored);
  }
};

/// What the scripted back end does and what it saw.
struct script {
  std::string punt = "finchley";
  std::string secret = secret_text;
  enum class mode { normal, silent, wrong_proof, plain_greeting } behaviour = mode::normal;
  std::string pass_error;  // PASS answers "-ERR " + this when set ...
  std::size_t refused_passes = SIZE_MAX;  // ... this many times
  struct stored {
    std::string uidl;
    std::int64_t arrival;
    std::string body;  // as RETR sends it, before stuffing
  };
  std::vector<stored> messages;
  std::string update_reply;  // XUPDATE's reply; by default "+OK N 0", N = the DELEs received
  std::size_t deletes = 0;
  std::size_t die_after = SIZE_MAX;  // commands answered before the connection drops
  bool closed = false;
  bool logged_in = false;
  std::size_t peer_closed = 0;  // connections the front end closed first (EOF read here)

  std::vector<std::string> received;    // every command line, in order
  std::shared_ptr<std::vector<std::string>> journal;  // "PUNT connected", "PUNT VERB", shared by back ends
  std::vector<std::size_t> batches;     // lines per read, in order
};

std::string stuff(const std::string& body) {
  std::string out;
  bool start = true;
  for (char c : body) {
    if (start && c == '.') out += '.';
    out += c;
    start = c == '\n';
  }
  return out + ".\r\n";
}

std::string reply_to(script& sc, const std::string& line, std::string& nonce) {
  const auto space = line.find(' ');
  const std::string verb = line.substr(0, space);
  const std::string arg = space == std::string::npos ? "" : line.substr(space + 1);
  const auto key = backend_proto::backend_secret::from_contents(sc.secret);
  if (verb == "XAUTH" && arg.empty()) {
    nonce = backend_proto::new_nonce();
    return "+OK " + nonce + " " + sc.punt + "\r\n";
  }
  if (verb == "XAUTH") {
    const std::string fnonce = arg.substr(0, arg.find(' '));
    const std::string given = arg.substr(arg.find(' ') + 1);
    if (!backend_proto::verify_proof(*key, backend_proto::role::frontend, nonce, fnonce, sc.punt, given))
      return "-ERR [AUTH] XAUTH refused\r\n";
    if (sc.behaviour == script::mode::wrong_proof) return "+OK " + std::string(64, '0') + "\r\n";
    return "+OK " + backend_proto::proof(*key, backend_proto::role::backend, nonce, fnonce, sc.punt) + "\r\n";
  }
  if (verb == "USER") return "+OK send PASS\r\n";
  if (verb == "PASS") {
    sc.logged_in = sc.pass_error.empty() || sc.refused_passes == 0;
    if (sc.logged_in) return "+OK in\r\n";
    --sc.refused_passes;
    return "-ERR " + sc.pass_error + "\r\n";
  }
  if (verb == "XLIST") {
    if (!sc.logged_in) return "-ERR command not valid in the AUTHORIZATION state\r\n";
    std::string out = "+OK listing\r\n";
    for (std::size_t i = 0; i < sc.messages.size(); ++i)
      out += backend_proto::format_listing({i + 1, sc.messages[i].uidl, sc.messages[i].body.size(), sc.messages[i].arrival}) +
             "\r\n";
    return out + ".\r\n";
  }
  const std::size_t n = arg.empty() ? 0 : std::strtoul(arg.c_str(), nullptr, 10);
  if ((verb == "RETR" || verb == "TOP") && n >= 1 && n <= sc.messages.size()) {
    std::string body = sc.messages[n - 1].body;
    if (verb == "TOP") body = body.substr(0, body.find("\r\n\r\n") + 4);
    return "+OK " + std::to_string(body.size()) + " octets\r\n" + stuff(body);
  }
  if (verb == "*ENV" && n >= 1 && n <= sc.messages.size())
    return "+OK envelope follows\r\nRD\r\n" + sc.punt + "\r\nalice@example.com\r\nfred@sample.demon.co.uk\r\n.\r\n";
  if (verb == "DELE") ++sc.deletes;
  if (verb == "XREAD" || verb == "DELE" || verb == "NOOP") return "+OK\r\n";
  if (verb == "QUIT") return "+OK bye\r\n";
  if (verb == "XUPDATE")
    return (sc.update_reply.empty() ? "+OK " + std::to_string(sc.deletes) + " 0" : sc.update_reply) + "\r\n";
  return "-ERR no such message\r\n";
}

/// One connection to the scripted back end.
awaitable<void> serve(std::shared_ptr<asio::ip::tcp::socket> socket, std::shared_ptr<script> sc) {
  boost::system::error_code ec;
  if (sc->journal) sc->journal->push_back(sc->punt + " connected");
  if (sc->behaviour == script::mode::silent) {
    // Accept and never answer: a SIGSTOPped back end.
    std::array<char, 1024> sink;
    for (;;) {
      co_await socket->async_read_some(asio::buffer(sink), asio::redirect_error(asio::use_awaitable, ec));
      if (ec) co_return;
    }
  }
  std::string nonce;
  std::string greeting = "+OK scripted back end\r\n";
  if (sc->behaviour != script::mode::plain_greeting) {
    nonce = backend_proto::new_nonce();
    greeting = "+OK " + nonce + " " + sc->punt + " scripted back end\r\n";
  }
  co_await asio::async_write(*socket, asio::buffer(greeting), asio::redirect_error(asio::use_awaitable, ec));
  std::string pending;
  std::array<char, 4096> chunk;
  std::size_t answered = 0;
  for (;;) {
    const std::size_t n =
        co_await socket->async_read_some(asio::buffer(chunk), asio::redirect_error(asio::use_awaitable, ec));
    if (ec) {
      if (ec == asio::error::eof) ++sc->peer_closed;
      co_return;
    }
    pending.append(chunk.data(), n);
    std::string out;
    std::size_t lines = 0;
    bool quit = false;
    for (auto eol = pending.find("\r\n"); eol != std::string::npos; eol = pending.find("\r\n")) {
      const std::string line = pending.substr(0, eol);
      pending.erase(0, eol + 2);
      ++lines;
      sc->received.push_back(line);
      if (sc->journal) sc->journal->push_back(sc->punt + " " + line.substr(0, line.find(' ')));
      if (answered++ == sc->die_after) {
        socket->close(ec);
        sc->closed = true;
        co_return;
      }
      out += reply_to(*sc, line, nonce);
      if (line == "QUIT" || line == "XUPDATE") {
        quit = true;
        break;
      }
    }
    if (lines) sc->batches.push_back(lines);
    co_await asio::async_write(*socket, asio::buffer(out), asio::redirect_error(asio::use_awaitable, ec));
    if (ec) co_return;
    if (quit) {
      // As sdpsd does: the reply, then this side closes.
      socket->shutdown(asio::ip::tcp::socket::shutdown_both, ec);
      socket->close(ec);
      co_return;
    }
  }
}

awaitable<void> accept_loop(std::shared_ptr<asio::ip::tcp::acceptor> acceptor, std::shared_ptr<script> sc) {
  for (;;) {
    auto socket = std::make_shared<asio::ip::tcp::socket>(acceptor->get_executor());
    boost::system::error_code ec;
    co_await acceptor->async_accept(*socket, asio::redirect_error(asio::use_awaitable, ec));
    if (ec) co_return;
    asio::co_spawn(acceptor->get_executor(), serve(socket, sc), asio::detached);
  }
}

/// A front end's chain with one remote punt, and the back end it talks to.
struct front_end {
  secret_file secret;
  std::shared_ptr<script> back = std::make_shared<script>();
  harness h;
  std::shared_ptr<asio::ip::tcp::acceptor> acceptor;
  unsigned short port = 0;

  explicit front_end(bool listening = true, const std::string& extra = "") {
    acceptor = std::make_shared<asio::ip::tcp::acceptor>(h.io(), asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    port = acceptor->local_endpoint().port();
    if (listening)
      asio::co_spawn(h.io(), accept_loop(acceptor, back), asio::detached);
    else
      acceptor->close();  // nothing listens there now: connection refused
    h.add<fake_auth>("auth");
    h.add<lock::lock_module>("lock");
    h.add<remote::remote_spool>("finchley", "{backend: 127.0.0.1:" + std::to_string(port) + ", secret: " +
                                                secret.path.string() + ", read_timeout: 400ms, connect_timeout: 400ms" +
                                                extra + "}");
    h.add<merge::merge_module>("merge");
    h.add<commands::commands_module>("commands");
    h.add<extensions::extensions_module>("extensions");
  }
  ~front_end() {
    // End every session (closing its links), then stop listening, so the
    // harness's final run finds nothing left waiting.
    for (auto& s : sessions) h.disconnect(s);
    boost::system::error_code ignored;
    acceptor->close(ignored);
  }
  void add(std::string uidl, std::int64_t arrival, std::string body) {
    back->messages.push_back({std::move(uidl), arrival, std::move(body)});
  }
  std::shared_ptr<fake_session> login(const std::string& user = "sample") {
    h.start();
    auto s = h.connect();
    sessions.push_back(s);
    h.send(s, "USER " + user);
    last_pass = h.send(s, "PASS pw");
    return s;
  }
  std::string last_pass;
  std::vector<std::shared_ptr<fake_session>> sessions;
};

awaitable<int> sleep_for(executor ex, std::chrono::milliseconds how_long) {
  asio::steady_timer timer(ex, how_long);
  co_await timer.async_wait(asio::use_awaitable);
  co_return 0;
}

/// Lets background work (a link ending) run for a while.
void pause(harness& h, std::chrono::milliseconds how_long) {
  h.run(sleep_for(h.io().get_executor(), how_long));
}

awaitable<int> mark_read(std::shared_ptr<maildrop> drop, std::size_t index) {
  co_await drop->mark_read(index);
  co_return 0;
}

bool has_line(const std::vector<std::string>& lines, const std::string& prefix) {
  return std::any_of(lines.begin(), lines.end(), [&](const std::string& l) { return l.starts_with(prefix); });
}

}  // namespace

TEST_CASE("login answers the greeting's challenge with XAUTH+USER+PASS+XLIST in one write") {
  front_end fe;
  fe.add("u1", 10, "Subject: one\r\n\r\nbody one\r\n");
  fe.add("u2", 20, "Subject: two\r\n\r\n.leading dot\r\n..two dots\r\n.\r\nend\r\n");
  SECTION("one round trip after connecting, whatever the maildrop's size") {
    auto s = fe.login("fred+sample");
    CHECK(fe.last_pass.starts_with("+OK fred+sample has 2 messages"));
    REQUIRE(fe.back->received.size() == 4);
    CHECK(fe.back->received[0].starts_with("XAUTH "));
    CHECK(fe.back->received[1] == "USER fred+sample");
    CHECK(fe.back->received[2] == "PASS");
    CHECK(fe.back->received[3] == "XLIST");
    CHECK(fe.back->batches == std::vector<std::size_t>{4});
  }
  SECTION("a greeting without a challenge costs one XAUTH more") {
    fe.back->behaviour = script::mode::plain_greeting;
    fe.login();
    CHECK(fe.last_pass.starts_with("+OK sample has 2 messages"));
    REQUIRE(fe.back->received.size() == 5);
    CHECK(fe.back->received[0] == "XAUTH");
    CHECK(fe.back->batches == std::vector<std::size_t>{1, 4});
  }
}

TEST_CASE("LIST and UIDL need nothing more from the back end; RETR, TOP and *ENV go through") {
  front_end fe;
  fe.add("u1", 10, "Subject: one\r\n\r\nbody one\r\n");
  fe.add("u2", 20, "Subject: two\r\n\r\n.leading dot\r\n..two dots\r\n.\r\nend\r\n");
  auto s = fe.login("fred+sample");
  REQUIRE(fe.back->received.size() == 4);
  CHECK(fe.h.send(s, "LIST") == "+OK 2 messages (" + std::to_string(26 + 50) + " octets)\r\n1 26\r\n2 50\r\n.\r\n");
  CHECK(fe.h.send(s, "UIDL") == "+OK unique-id listing follows\r\n1 u1\r\n2 u2\r\n.\r\n");
  CHECK(fe.back->received.size() == 4);

  // RETR streams through: un-stuffed from the back end, re-stuffed by the core.
  CHECK(fe.h.send(s, "RETR 2") ==
        "+OK 50 octets\r\nSubject: two\r\n\r\n..leading dot\r\n...two dots\r\n..\r\nend\r\n.\r\n");
  CHECK(fe.back->received.back() == "RETR 2");
  // The back end marks the message read as part of RETR: no XREAD follows.
  CHECK_FALSE(has_line(fe.back->received, "XREAD"));
  CHECK(fe.h.send(s, "TOP 1 0") == "+OK top of message follows\r\nSubject: one\r\n\r\n.\r\n");
  CHECK(fe.back->received.back() == "TOP 1 0");
  CHECK(fe.h.send(s, "*ENV 1") ==
        "+OK envelope follows\r\nRD\r\nfinchley\r\nalice@example.com\r\nfred@sample.demon.co.uk\r\n.\r\n");
  CHECK(fe.back->received.back() == "*ENV 1");
}

TEST_CASE("DELE reaches the back end only at QUIT, pipelined with XUPDATE") {
  front_end fe;
  fe.add("u1", 10, "Subject: one\r\n\r\n1\r\n");
  fe.add("u2", 20, "Subject: two\r\n\r\n2\r\n");
  fe.add("u3", 30, "Subject: three\r\n\r\n3\r\n");
  auto s = fe.login();
  CHECK(fe.h.send(s, "DELE 1").starts_with("+OK"));
  CHECK(fe.h.send(s, "DELE 3").starts_with("+OK"));
  CHECK_FALSE(has_line(fe.back->received, "DELE"));
  SECTION("the back end removes them all") {
    CHECK(fe.h.send(s, "QUIT").starts_with("+OK"));
    const std::vector<std::string> tail(fe.back->received.end() - 3, fe.back->received.end());
    CHECK(tail == std::vector<std::string>{"DELE 1", "DELE 3", "XUPDATE"});
    CHECK(fe.back->batches.back() == 3);
    pause(fe.h, std::chrono::milliseconds(200));
    CHECK(fe.back->received.back() == "XUPDATE");  // nothing after it
    CHECK(fe.back->peer_closed == 0);
  }
  SECTION("the back end could not remove one: the client hears how many") {
    fe.back->update_reply = "+OK 1 1";
    CHECK(fe.h.send(s, "QUIT") ==
          "-ERR [SYS/TEMP] 1 of 2 messages marked deleted could not be removed, try again later\r\n");
  }
  SECTION("only the counts are read: a reply without them means nothing was removed") {
    fe.back->update_reply = "-ERR [SYS/TEMP] 0 of 2 messages, or any words at all";
    CHECK(fe.h.send(s, "QUIT") ==
          "-ERR [SYS/TEMP] 2 of 2 messages marked deleted could not be removed, try again later\r\n");
  }
  SECTION("RSET unmarks: no DELE is sent, the link just ends with QUIT") {
    fe.h.send(s, "RSET");
    CHECK(fe.h.send(s, "QUIT").starts_with("+OK"));
    pause(fe.h, std::chrono::milliseconds(200));
    CHECK_FALSE(has_line(fe.back->received, "DELE"));
    CHECK(fe.back->received.back() == "QUIT");
    // The back end closed first: TIME_WAIT is its, not the front end's.
    CHECK(fe.back->peer_closed == 0);
  }
}

std::size_t count_of(const std::vector<std::string>& lines, const std::string& line) {
  return static_cast<std::size_t>(std::count(lines.begin(), lines.end(), line));
}

TEST_CASE("[IN-USE] from the back end is the client's [IN-USE], once in_use_wait has passed") {
  SECTION("retried until in_use_wait passes") {
    front_end fe(true, ", in_use_wait: 300ms");
    fe.back->pass_error = "[IN-USE] maildrop already locked";
    const auto start = std::chrono::steady_clock::now();
    fe.login();
    const auto spent = std::chrono::steady_clock::now() - start;
    CHECK(fe.last_pass == "-ERR [IN-USE] maildrop already locked\r\n");
    CHECK(count_of(fe.back->received, "PASS") >= 3);  // after 0, 10, 30, 70, 150ms ...
    CHECK(spent >= std::chrono::milliseconds(150));
    CHECK(spent < std::chrono::milliseconds(2000));
  }
  SECTION("not retried with in_use_wait: 0") {
    front_end fe(true, ", in_use_wait: 0");
    fe.back->pass_error = "[IN-USE] maildrop already locked";
    fe.login();
    CHECK(fe.last_pass == "-ERR [IN-USE] maildrop already locked\r\n");
    CHECK(count_of(fe.back->received, "PASS") == 1);
  }
  SECTION("only the response code counts, not the words") {
    front_end fe(true, ", in_use_wait: 0");
    fe.back->pass_error = "[SYS/TEMP] not [IN-USE], whatever the words say";
    fe.login();
    // Not in use, so unavailable: the only punt is down.
    CHECK(fe.last_pass.starts_with("-ERR [SYS/TEMP]"));
    CHECK(count_of(fe.back->received, "PASS") == 1);
  }
  SECTION("a lock released a moment later is taken") {
    front_end fe;
    fe.back->pass_error = "[IN-USE] maildrop already locked";
    fe.back->refused_passes = 2;
    fe.add("u1", 10, "Subject: one\r\n\r\n1\r\n");
    fe.login();
    CHECK(fe.last_pass.starts_with("+OK sample has 1 message"));
    CHECK(count_of(fe.back->received, "PASS") == 3);
  }
}

TEST_CASE("another PASS failure leaves the punt out, without retrying") {
  front_end fe;
  fe.back->pass_error = "[SYS/TEMP] your mail cannot be read just now, try again later";
  fe.login();
  CHECK(fe.last_pass.starts_with("-ERR [SYS/TEMP]"));
  CHECK(count_of(fe.back->received, "PASS") == 1);
  CHECK(fe.h.log_of("finchley").contains("PASS refused: [SYS/TEMP]"));
}

TEST_CASE("a back end that does not answer is left out within read_timeout") {
  front_end fe;
  fe.back->behaviour = script::mode::silent;
  const auto start = std::chrono::steady_clock::now();
  fe.login();
  const auto spent = std::chrono::steady_clock::now() - start;
  // The only punt is missing: nothing can be read.
  CHECK(fe.last_pass.starts_with("-ERR [SYS/TEMP]"));
  CHECK(spent >= std::chrono::milliseconds(400));
  CHECK(spent < std::chrono::milliseconds(3000));
  CHECK(fe.h.log_of("finchley").contains("no answer within 400ms"));
}

TEST_CASE("a back end that is not listening is left out at once") {
  front_end fe(false);
  fe.login();
  CHECK(fe.last_pass.starts_with("-ERR [SYS/TEMP]"));
  CHECK(fe.h.log_of("finchley").contains("cannot connect"));
}

TEST_CASE("a back end without the secret is refused, whichever side lacks it") {
  front_end fe;
  fe.add("u1", 10, "Subject: one\r\n\r\n1\r\n");
  SECTION("the back end refuses our proof") {
    fe.back->secret = "some other secret of enough octets";
    fe.login();
    CHECK(fe.last_pass.starts_with("-ERR [SYS/TEMP]"));
    CHECK(fe.h.log_of("finchley").contains("refused this front end's proof"));
  }
  SECTION("the back end's proof is wrong: nothing it says is trusted") {
    fe.back->behaviour = script::mode::wrong_proof;
    fe.login();
    CHECK(fe.last_pass.starts_with("-ERR [SYS/TEMP]"));
    CHECK(fe.h.log_of("finchley").contains("does not hold the front-end secret"));
  }
  SECTION("the back end serves another punt") {
    fe.back->punt = "docklands";
    fe.login();
    CHECK(fe.last_pass.starts_with("-ERR [SYS/TEMP]"));
    CHECK(fe.h.log_of("finchley").contains("serves punt 'docklands', not 'finchley'"));
  }
}

TEST_CASE("a back end dying mid-session: -ERR [SYS/TEMP] for its messages, QUIT reports them not removed") {
  front_end fe;
  fe.add("u1", 10, "Subject: one\r\n\r\n1\r\n");
  fe.add("u2", 20, "Subject: two\r\n\r\n2\r\n");
  fe.back->die_after = 4;  // answers the login, then drops at the next command
  auto s = fe.login();
  REQUIRE(fe.last_pass.starts_with("+OK"));
  CHECK(fe.h.send(s, "STAT") == "+OK 2 " + std::to_string(fe.back->messages[0].body.size() * 2) + "\r\n");
  CHECK(fe.h.send(s, "RETR 1") == "-ERR [SYS/TEMP] message 1 cannot be read just now, try again later\r\n");
  CHECK(fe.back->closed);
  CHECK(fe.h.send(s, "*ENV 2").starts_with("-ERR [SYS/TEMP]"));
  CHECK(fe.h.send(s, "DELE 2").starts_with("+OK"));
  CHECK(fe.h.send(s, "QUIT") ==
        "-ERR [SYS/TEMP] 1 of 1 message marked deleted could not be removed, try again later\r\n");
}

TEST_CASE("mark_read without a RETR sends XREAD") {
  front_end fe;
  fe.add("u1", 10, "Subject: one\r\n\r\n1\r\n");
  auto s = fe.login();
  auto* source = fe.h.services().find<maildrop_source>("finchley");
  REQUIRE(source);
  auto drop = source->current(*s);
  REQUIRE(drop);
  fe.h.run(mark_read(drop, 0));
  CHECK(fe.back->received.back() == "XREAD 1");
  // An unread body is skipped before the next command, so replies stay in step.
  auto body = fe.h.run(drop->retrieve(0, std::nullopt));
  CHECK(fe.h.send(s, "*ENV 1").starts_with("+OK envelope follows\r\nRD"));
}

TEST_CASE("remote_spool settings are checked at start-up") {
  secret_file secret;
  harness h;
  const std::string with_secret = ", secret: " + secret.path.string();
  CHECK_THROWS_AS(h.add<remote::remote_spool>("a", "{secret: " + secret.path.string() + "}"), config_error);
  CHECK_THROWS_AS(h.add<remote::remote_spool>("b", "{backend: nowhere" + with_secret + "}"), config_error);
  CHECK_THROWS_AS(h.add<remote::remote_spool>("c", "{backend: 127.0.0.1:1111}"), config_error);
  CHECK_THROWS_AS(h.add<remote::remote_spool>("d", "{backend: 127.0.0.1:1111, read_timeout: 0" + with_secret + "}"),
                  config_error);
  CHECK_THROWS_AS(h.add<remote::remote_spool>("e", "{backend: 127.0.0.1:1111, colour: blue" + with_secret + "}"),
                  config_error);
  auto& ok = h.add<remote::remote_spool>("f", "{backend: '[::1]:1111', punt: finchley" + with_secret + "}");
  CHECK(ok.punt() == "finchley");
}

TEST_CASE("with two remote punts, both connections open at once; the locks are still taken in order") {
  secret_file secret;
  harness h;
  auto journal = std::make_shared<std::vector<std::string>>();
  std::vector<std::shared_ptr<asio::ip::tcp::acceptor>> acceptors;
  std::vector<std::shared_ptr<script>> backs;
  h.add<fake_auth>("auth");
  h.add<lock::lock_module>("lock");
  // Chain order finchley, docklands; locking (and so connecting) order is by punt name.
  for (const std::string punt : {"finchley", "docklands"}) {
    auto acceptor = std::make_shared<asio::ip::tcp::acceptor>(
        h.io(), asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    auto back = std::make_shared<script>();
    back->punt = punt;
    back->journal = journal;
    back->messages.push_back({"u-" + punt, punt == "finchley" ? 10 : 20, "Subject: " + punt + "\r\n\r\nx\r\n"});
    asio::co_spawn(h.io(), accept_loop(acceptor, back), asio::detached);
    h.add<remote::remote_spool>(punt, "{backend: 127.0.0.1:" + std::to_string(acceptor->local_endpoint().port()) +
                                          ", secret: " + secret.path.string() + "}");
    acceptors.push_back(acceptor);
    backs.push_back(back);
  }
  h.add<merge::merge_module>("merge");
  h.add<commands::commands_module>("commands");
  h.start();
  auto s = h.connect();
  h.send(s, "USER sample");
  CHECK(h.send(s, "PASS pw").starts_with("+OK sample has 2 messages"));
  const auto at = [&](const std::string& event) {
    return std::find(journal->begin(), journal->end(), event) - journal->begin();
  };
  REQUIRE(at("finchley connected") < static_cast<long>(journal->size()));
  // finchley's connection was opened before docklands' login went out ...
  CHECK(at("finchley connected") < at("docklands PASS"));
  // ... and docklands (first by name) was locked first.
  CHECK(at("docklands PASS") < at("finchley PASS"));
  CHECK(h.send(s, "UIDL") == "+OK unique-id listing follows\r\n1 u-finchley\r\n2 u-docklands\r\n.\r\n");
  h.disconnect(s);
  for (auto& a : acceptors) a->close();
}
