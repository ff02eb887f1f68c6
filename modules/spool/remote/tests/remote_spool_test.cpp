// remote_spool in a front end's chain (auth, lock, remote_spool, merge,
// commands, extensions), run through the core's session engine against a
// scripted back end on a real loopback socket: what the client sees, what
// the back end receives, and the faults (silent, refused, dying, wrong
// secret).

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
#include <functional>
#include <map>
#include <set>
#include <thread>

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

/// What the scripted back end does and what it saw. Connections share it;
/// each has its own login (connection_state below).
struct script {
  std::string punt = "finchley";
  std::string secret = secret_text;
  enum class mode { normal, silent, wrong_proof, plain_greeting } behaviour = mode::normal;
  /// CAPA lists XRESET: links are kept (false: a back end from before).
  bool resets = true;
  std::string pass_error;  // PASS answers "-ERR " + this when set ...
  std::size_t refused_passes = SIZE_MAX;  // ... this many times
  struct stored {
    std::string uidl;
    std::int64_t arrival;
    std::string body;  // as RETR sends it, before stuffing
  };
  std::vector<stored> messages;
  std::string update_reply;  // XUPDATE's reply; by default "+OK N 0", N = the DELEs received
  std::size_t die_after = SIZE_MAX;  // commands answered before the connection drops
  /// Replies that answer a PASS wait until this says yes (polled every
  /// 5ms, for at most answer_pass_limit): a back end that waits for
  /// something else to happen first.
  std::function<bool()> answer_pass_when;
  std::chrono::milliseconds answer_pass_limit{2000};
  /// A connection that logged in before closes, unanswered, when it is
  /// sent the next login (a back end restarted just then).
  bool drop_reused = false;
  bool closed = false;
  std::size_t peer_closed = 0;  // connections the front end closed first (EOF read here)
  std::size_t connections = 0;  // accepted so far
  /// Who holds the lock of a login: the connection's number.
  std::map<std::string, std::size_t> locks;
  std::set<std::size_t> read;  // messages RETR sent (their *ENV says RD)

  std::vector<std::string> received;    // every command line, in order
  std::shared_ptr<std::vector<std::string>> journal;  // "PUNT connected", "PUNT VERB", shared by back ends
  std::vector<std::size_t> batches;     // lines per read, in order
  /// The connections open now, to close them from the test.
  std::vector<std::weak_ptr<asio::ip::tcp::socket>> open;

  /// Closes every connection not in the middle of a reply: a restart.
  void restart() {
    for (auto& weak : open)
      if (auto socket = weak.lock()) {
        boost::system::error_code ec;
        socket->close(ec);
      }
    open.clear();
    locks.clear();
  }
};

/// One connection's standing on the scripted back end.
struct connection_state {
  std::size_t number = 0;
  std::string nonce;
  std::string user;
  std::string login;  // logged in as, empty if not
  std::size_t deletes = 0;
  std::size_t logins = 0;
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

void log_out(script& sc, connection_state& l) {
  if (!l.login.empty() && sc.locks[l.login] == l.number) sc.locks.erase(l.login);
  l.login.clear();
  l.deletes = 0;
}

std::string reply_to(script& sc, connection_state& l, const std::string& line) {
  const auto space = line.find(' ');
  const std::string verb = line.substr(0, space);
  const std::string arg = space == std::string::npos ? "" : line.substr(space + 1);
  const auto key = backend_proto::backend_secret::from_contents(sc.secret);
  if (verb == "XAUTH" && arg.empty()) {
    l.nonce = backend_proto::new_nonce();
    return "+OK " + l.nonce + " " + sc.punt + "\r\n";
  }
  if (verb == "XAUTH") {
    const std::string fnonce = arg.substr(0, arg.find(' '));
    const std::string given = arg.substr(arg.find(' ') + 1);
    if (!backend_proto::verify_proof(*key, backend_proto::role::frontend, l.nonce, fnonce, sc.punt, given))
      return "-ERR [AUTH] XAUTH refused\r\n";
    if (sc.behaviour == script::mode::wrong_proof) return "+OK " + std::string(64, '0') + "\r\n";
    return "+OK " + backend_proto::proof(*key, backend_proto::role::backend, l.nonce, fnonce, sc.punt) + "\r\n";
  }
  if (verb == "CAPA") return std::string("+OK capabilities\r\nTOP\r\nUSER\r\nXAUTH\r\n") + (sc.resets ? "XRESET\r\n" : "") + ".\r\n";
  if (verb == "USER") {
    l.user = arg;
    return "+OK send PASS\r\n";
  }
  if (verb == "PASS") {
    if (!l.login.empty()) return "-ERR command not valid in the TRANSACTION state\r\n";
    if (!sc.pass_error.empty() && sc.refused_passes > 0) {
      --sc.refused_passes;
      return "-ERR " + sc.pass_error + "\r\n";
    }
    if (sc.locks.count(l.user)) return "-ERR [IN-USE] maildrop already locked\r\n";
    sc.locks[l.user] = l.number;
    l.login = l.user;
    ++l.logins;
    return "+OK in\r\n";
  }
  if (l.login.empty() && verb != "QUIT") return "-ERR command not valid in the AUTHORIZATION state\r\n";
  if (verb == "XLIST") {
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
    if (verb == "RETR") sc.read.insert(n);
    return "+OK " + std::to_string(body.size()) + " octets\r\n" + stuff(body);
  }
  if (verb == "*ENV" && n >= 1 && n <= sc.messages.size())
    return std::string("+OK envelope follows\r\n") + (sc.read.count(n) ? "RD" : "OK") + "\r\n" + sc.punt + "\r\nalice" + std::to_string(n) + "@example.com\r\nfred@sample.demon.co.uk\r\n.\r\n";
  if (verb == "DELE") ++l.deletes;
  if (verb == "XREAD" || verb == "DELE" || verb == "NOOP") return "+OK\r\n";
  if (verb == "QUIT") return "+OK bye\r\n";
  if (verb == "XRESET" && sc.resets) {
    log_out(sc, l);
    return "+OK reset\r\n";
  }
  if (verb == "XUPDATE") {
    const std::string counts = sc.update_reply.empty() ? "+OK " + std::to_string(l.deletes) + " 0" : sc.update_reply;
    log_out(sc, l);
    return counts + "\r\n";
  }
  return "-ERR no such message\r\n";
}

/// One connection to the scripted back end.
awaitable<void> serve(std::shared_ptr<asio::ip::tcp::socket> socket, std::shared_ptr<script> sc) {
  boost::system::error_code ec;
  connection_state l;
  l.number = ++sc->connections;
  sc->open.push_back(socket);
  if (sc->journal) sc->journal->push_back(sc->punt + " connected");
  if (sc->behaviour == script::mode::silent) {
    // Accept and never answer: a SIGSTOPped back end.
    std::array<char, 1024> sink;
    for (;;) {
      co_await socket->async_read_some(asio::buffer(sink), asio::redirect_error(asio::use_awaitable, ec));
      if (ec) co_return;
    }
  }
  std::string greeting = "+OK scripted back end\r\n";
  if (sc->behaviour != script::mode::plain_greeting) {
    l.nonce = backend_proto::new_nonce();
    greeting = "+OK " + l.nonce + " " + sc->punt + " scripted back end\r\n";
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
      log_out(*sc, l);  // the connection's end releases its lock
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
      const bool relogin = line.starts_with("USER ") && l.logins > 0;
      if (answered++ == sc->die_after || (relogin && sc->drop_reused)) {
        if (relogin) sc->drop_reused = false;
        log_out(*sc, l);
        socket->close(ec);
        sc->closed = true;
        co_return;
      }
      out += reply_to(*sc, l, line);
      if (line == "QUIT" || line == "XUPDATE") {
        quit = true;
        break;
      }
    }
    if (lines) sc->batches.push_back(lines);
    if (sc->answer_pass_when && out.find("+OK in\r\n") != std::string::npos)
      for (auto waited = std::chrono::milliseconds(0); waited < sc->answer_pass_limit && !sc->answer_pass_when();
           waited += std::chrono::milliseconds(5)) {
        asio::steady_timer wait(socket->get_executor(), std::chrono::milliseconds(5));
        co_await wait.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      }
    co_await asio::async_write(*socket, asio::buffer(out), asio::redirect_error(asio::use_awaitable, ec));
    if (ec) co_return;
    if (quit) {
      // As sdpsd does: the reply, then this side closes.
      log_out(*sc, l);
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
    spool = &h.add<remote::remote_spool>("finchley", "{backend: 127.0.0.1:" + std::to_string(port) + ", secret: " +
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
  void start() {
    if (!started) h.start();
    started = true;
  }
  std::shared_ptr<client> login(const std::string& user = "sample") {
    start();
    auto s = h.connect();
    sessions.push_back(s);
    h.send(s, "USER " + user);
    last_pass = h.send(s, "PASS pw");
    return s;
  }
  std::string last_pass;
  std::vector<std::shared_ptr<client>> sessions;
  bool started = false;
  remote::remote_spool* spool = nullptr;
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

/// Lets background work run until `done` (at most 5 s; then the test fails).
void run_until(harness& h, const std::function<bool()>& done) {
  for (int i = 0; i < 500 && !done(); ++i) pause(h, std::chrono::milliseconds(10));
  REQUIRE(done());
}

bool has_line(const std::vector<std::string>& lines, const std::string& prefix) {
  return std::any_of(lines.begin(), lines.end(), [&](const std::string& l) { return l.starts_with(prefix); });
}

}  // namespace

TEST_CASE("login answers the greeting's challenge with XAUTH+CAPA+USER+PASS+XLIST in one write") {
  front_end fe;
  fe.add("u1", 10, "Subject: one\r\n\r\nbody one\r\n");
  fe.add("u2", 20, "Subject: two\r\n\r\n.leading dot\r\n..two dots\r\n.\r\nend\r\n");
  SECTION("one round trip after connecting, whatever the maildrop's size") {
    auto s = fe.login("fred+sample");
    CHECK(fe.last_pass.starts_with("+OK fred+sample has 2 messages"));
    REQUIRE(fe.back->received.size() == 5);
    CHECK(fe.back->received[0].starts_with("XAUTH "));
    CHECK(fe.back->received[1] == "CAPA");
    CHECK(fe.back->received[2] == "USER fred+sample");
    CHECK(fe.back->received[3] == "PASS");
    CHECK(fe.back->received[4] == "XLIST");
    CHECK(fe.back->batches == std::vector<std::size_t>{5});
  }
  SECTION("a greeting without a challenge costs one XAUTH more") {
    fe.back->behaviour = script::mode::plain_greeting;
    fe.login();
    CHECK(fe.last_pass.starts_with("+OK sample has 2 messages"));
    REQUIRE(fe.back->received.size() == 6);
    CHECK(fe.back->received[0] == "XAUTH");
    CHECK(fe.back->batches == std::vector<std::size_t>{1, 5});
  }
}

TEST_CASE("LIST and UIDL need nothing more from the back end; RETR, TOP and *ENV go through") {
  front_end fe;
  fe.add("u1", 10, "Subject: one\r\n\r\nbody one\r\n");
  fe.add("u2", 20, "Subject: two\r\n\r\n.leading dot\r\n..two dots\r\n.\r\nend\r\n");
  auto s = fe.login("fred+sample");
  REQUIRE(fe.back->received.size() == 5);
  CHECK(fe.h.send(s, "LIST") == "+OK 2 messages (" + std::to_string(26 + 50) + " octets)\r\n1 26\r\n2 50\r\n.\r\n");
  CHECK(fe.h.send(s, "UIDL") == "+OK unique-id listing follows\r\n1 u1\r\n2 u2\r\n.\r\n");
  CHECK(fe.back->received.size() == 5);

  // RETR streams through as the back end stuffed it; the core only ends it.
  CHECK(fe.h.send(s, "RETR 2") ==
        "+OK 50 octets\r\nSubject: two\r\n\r\n..leading dot\r\n...two dots\r\n..\r\nend\r\n.\r\n");
  CHECK(fe.back->received.back() == "RETR 2");
  // The back end marks the message read as part of RETR: no XREAD follows.
  CHECK_FALSE(has_line(fe.back->received, "XREAD"));
  CHECK(fe.h.send(s, "TOP 1 0") == "+OK top of message follows\r\nSubject: one\r\n\r\n.\r\n");
  CHECK(fe.back->received.back() == "TOP 1 0");
  CHECK(fe.h.send(s, "*ENV 1") ==
        "+OK envelope follows\r\nOK\r\nfinchley\r\nalice1@example.com\r\nfred@sample.demon.co.uk\r\n.\r\n");
  CHECK(has_line(fe.back->received, "*ENV 1"));
}

TEST_CASE("DELE reaches the back end only at QUIT, pipelined with XUPDATE KEEP") {
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
    CHECK(tail == std::vector<std::string>{"DELE 1", "DELE 3", "XUPDATE KEEP"});
    CHECK(fe.back->batches.back() == 3);
    pause(fe.h, std::chrono::milliseconds(200));
    CHECK(fe.back->received.back() == "XUPDATE KEEP");  // nothing after it: the login is over
    CHECK(fe.back->locks.empty());
    CHECK(fe.back->peer_closed == 0);  // and the link is kept
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
  SECTION("RSET unmarks: no DELE is sent, the login just ends with XRESET") {
    fe.h.send(s, "RSET");
    CHECK(fe.h.send(s, "QUIT").starts_with("+OK"));
    CHECK_FALSE(has_line(fe.back->received, "DELE"));
    CHECK(fe.back->received.back() == "XRESET");
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
  fe.back->die_after = 5;  // answers the login, then drops at the next command
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

TEST_CASE("what retrieve() sends: RETR marks read, TOP does not, a marking TOP goes with XREAD in one write") {
  front_end fe;
  fe.add("u1", 10, "Subject: one\r\n\r\n1\r\n");
  auto s = fe.login();
  REQUIRE(fe.last_pass.starts_with("+OK sample has 1 message"));
  // The session's maildrop (merge's) reads through this punt's.
  const std::shared_ptr<maildrop> drop = s->maildrop();
  REQUIRE(drop);
  const auto sent = [&](retrieval how) {
    const std::size_t before = fe.back->received.size();
    auto body = fe.h.run(drop->retrieve(0, how));
    fe.h.run(drain(std::move(body)));
    return std::vector<std::string>(fe.back->received.begin() + static_cast<std::ptrdiff_t>(before),
                                    fe.back->received.end());
  };
  CHECK(sent(retrieval::top(0)) == std::vector<std::string>{"TOP 1 0"});
  CHECK(sent(retrieval::whole_message()) == std::vector<std::string>{"RETR 1"});
  CHECK(sent(retrieval{std::nullopt, false}) == std::vector<std::string>{"TOP 1 999999999"});
  CHECK(sent(retrieval{0, true}) == std::vector<std::string>{"XREAD 1", "TOP 1 0"});
  CHECK(fe.back->batches.back() == 2);
  // An unread body is skipped before the next command, so replies stay in step.
  auto body = fe.h.run(drop->retrieve(0, retrieval::whole_message()));
  CHECK(fe.h.send(s, "*ENV 1").starts_with("+OK envelope follows\r\nRD\r\nfinchley\r\nalice1@"));
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

namespace {

/// A front end's chain over two remote punts, finchley and docklands (in
/// chain order), each with one message, their back ends sharing a journal.
struct two_punts {
  secret_file secret;
  harness h;
  std::shared_ptr<std::vector<std::string>> journal = std::make_shared<std::vector<std::string>>();
  std::vector<std::shared_ptr<asio::ip::tcp::acceptor>> acceptors;
  std::map<std::string, std::shared_ptr<script>> backs;

  explicit two_punts(const std::string& extra = "") {
    h.add<fake_auth>("auth");
    h.add<lock::lock_module>("lock");
    for (const std::string punt : {"finchley", "docklands"}) {
      auto acceptor = std::make_shared<asio::ip::tcp::acceptor>(
          h.io(), asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
      auto back = std::make_shared<script>();
      back->punt = punt;
      back->journal = journal;
      back->messages.push_back({"u-" + punt, punt == "finchley" ? 10 : 20, "Subject: " + punt + "\r\n\r\nx\r\n"});
      asio::co_spawn(h.io(), accept_loop(acceptor, back), asio::detached);
      h.add<remote::remote_spool>(punt, "{backend: 127.0.0.1:" + std::to_string(acceptor->local_endpoint().port()) +
                                            ", secret: " + secret.path.string() + extra + "}");
      acceptors.push_back(acceptor);
      backs[punt] = back;
    }
    h.add<merge::merge_module>("merge");
    h.add<commands::commands_module>("commands");
    h.start();
  }
  ~two_punts() {
    for (auto& a : acceptors) a->close();
  }
  std::string login(const std::shared_ptr<client>& s) {
    h.send(s, "USER sample");
    return h.send(s, "PASS pw");
  }
};

}  // namespace

TEST_CASE("with two remote punts, both back ends log in side by side") {
  two_punts t(", read_timeout: 1s");
  // Each back end answers PASS only once the other has received its own
  // (or after 3s): logins taken one after another would wait for each
  // other, and the first would fail at read_timeout.
  const auto received_pass = [&t](const std::string& punt) {
    return count_of(t.backs[punt]->received, "PASS") > 0;
  };
  t.backs["finchley"]->answer_pass_when = [&] { return received_pass("docklands"); };
  t.backs["docklands"]->answer_pass_when = [&] { return received_pass("finchley"); };
  t.backs["finchley"]->answer_pass_limit = t.backs["docklands"]->answer_pass_limit = std::chrono::seconds(3);
  auto s = t.h.connect();
  const auto start = std::chrono::steady_clock::now();
  CHECK(t.login(s).starts_with("+OK sample has 2 messages"));
  CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(2));
  CHECK(t.h.send(s, "UIDL") == "+OK unique-id listing follows\r\n1 u-finchley\r\n2 u-docklands\r\n.\r\n");
  t.h.disconnect(s);
}

TEST_CASE("with two remote punts, a punt still in use after in_use_wait is locked again in order") {
  two_punts t(", in_use_wait: 400ms");
  // Another session holds finchley for 500ms: the login ahead retries it
  // until about 310ms and gives up; everything is released (docklands'
  // login reset) and locked again in order, where finchley's retries
  // (from about 310ms to 710ms) find it free.
  auto& finchley = *t.backs["finchley"];
  finchley.locks["sample"] = 999;
  asio::steady_timer release(t.h.io(), std::chrono::milliseconds(500));
  release.async_wait([&finchley](boost::system::error_code) { finchley.locks.erase("sample"); });
  auto s = t.h.connect();
  CHECK(t.login(s).starts_with("+OK sample has 2 messages"));
  CHECK(count_of(t.backs["docklands"]->received, "PASS") == 2);
  CHECK(count_of(t.backs["docklands"]->received, "XRESET") == 1);
  CHECK(count_of(finchley.received, "PASS") >= 4);
  const auto at = [&](const std::string& event, std::size_t from = 0) {
    return std::find(t.journal->begin() + static_cast<long>(from), t.journal->end(), event) - t.journal->begin();
  };
  const auto second_docklands_pass = at("docklands PASS", static_cast<std::size_t>(at("docklands PASS")) + 1);
  CHECK(second_docklands_pass < static_cast<long>(t.journal->size()));
  CHECK(at("docklands XRESET") < second_docklands_pass);
  CHECK(finchley.locks.count("sample") == 1);
  CHECK(finchley.locks.at("sample") != 999);
  t.h.disconnect(s);
}

TEST_CASE("a login prepared ahead that the session leaves untaken is reset on its back end") {
  SECTION("abandoned after it completed") {
    two_punts t;
    // docklands refuses (a session elsewhere holds it, for good):
    // finchley's login, started ahead and made, is not kept.
    t.backs["docklands"]->locks["sample"] = 999;
    auto s = t.h.connect();
    CHECK(t.login(s) == "-ERR [IN-USE] maildrop already locked\r\n");
    run_until(t.h, [&] { return !t.backs["finchley"]->locks.count("sample"); });
    CHECK(count_of(t.backs["finchley"]->received, "XRESET") == 1);
    CHECK(count_of(t.backs["finchley"]->received, "PASS") == 1);
    t.h.disconnect(s);
  }
  SECTION("abandoned while it waited for the back end, which answers later") {
    two_punts t;
    t.backs["docklands"]->locks["sample"] = 999;
    // finchley answers PASS only once the lock module has given up on the
    // first pass (abandoning finchley's login): the login completes
    // abandoned, and its own coroutine resets it.
    t.backs["finchley"]->answer_pass_when = [&t] { return t.h.log_of("lock").contains("locking again"); };
    auto s = t.h.connect();
    CHECK(t.login(s) == "-ERR [IN-USE] maildrop already locked\r\n");
    run_until(t.h, [&] { return count_of(t.backs["finchley"]->received, "XRESET") == 1; });
    CHECK(!t.backs["finchley"]->locks.count("sample"));
    CHECK(count_of(t.backs["finchley"]->received, "PASS") == 1);
    t.h.disconnect(s);
  }
}

TEST_CASE("the probe: XAUTH on a new link, CAPA on the one it keeps") {
  front_end fe;
  fe.back->journal = std::make_shared<std::vector<std::string>>();
  fe.start();
  const auto probe = fe.spool->make_probe(fe.h.io().get_executor());
  REQUIRE(probe);
  punt_health h = fe.h.run(probe->check());
  CHECK(h.up);
  CHECK(h.detail.empty());
  REQUIRE(fe.back->received.size() == 1);  // the greeting's challenge answered, nothing more
  CHECK(fe.back->received[0].starts_with("XAUTH "));
  CHECK(fe.back->locks.empty());  // no login
  h = fe.h.run(probe->check());
  CHECK(h.up);
  CHECK(fe.back->received.back() == "CAPA");
  CHECK(std::count(fe.back->journal->begin(), fe.back->journal->end(), "finchley connected") == 1);
  // The back end ends the kept link (its login_timeout): the next probe
  // connects again, and the punt never looks down.
  fe.back->die_after = fe.back->received.size();
  h = fe.h.run(probe->check());
  CHECK(h.up);
  CHECK(std::count(fe.back->journal->begin(), fe.back->journal->end(), "finchley connected") == 2);
  probe->stop();
  h = fe.h.run(probe->check());
  CHECK_FALSE(h.up);
}

TEST_CASE("the probe finds a back end down: not listening, silent, or without the secret") {
  {
    front_end fe(false);
    fe.start();
    const auto probe = fe.spool->make_probe(fe.h.io().get_executor());
    const punt_health h = fe.h.run(probe->check());
    CHECK_FALSE(h.up);
    CHECK_THAT(h.detail, Catch::Contains("cannot connect"));
  }
  {
    front_end fe;
    fe.back->behaviour = script::mode::silent;
    fe.start();
    const auto probe = fe.spool->make_probe(fe.h.io().get_executor());
    const punt_health h = fe.h.run(probe->check());  // within read_timeout (400ms)
    CHECK_FALSE(h.up);
    CHECK_THAT(h.detail, Catch::Contains("no answer within"));
  }
  {
    front_end fe;
    fe.back->secret = "another secret, of other back ends";
    fe.start();
    const auto probe = fe.spool->make_probe(fe.h.io().get_executor());
    const punt_health h = fe.h.run(probe->check());
    CHECK_FALSE(h.up);
    CHECK_THAT(h.detail, Catch::Contains("refused this front end's proof"));
  }
  {
    front_end fe;
    fe.back->behaviour = script::mode::wrong_proof;
    fe.start();
    const auto probe = fe.spool->make_probe(fe.h.io().get_executor());
    const punt_health h = fe.h.run(probe->check());
    CHECK_FALSE(h.up);
    CHECK_THAT(h.detail, Catch::Contains("does not hold the front-end secret"));
  }
  {
    front_end fe;
    fe.back->punt = "docklands";
    fe.start();
    const auto probe = fe.spool->make_probe(fe.h.io().get_executor());
    const punt_health h = fe.h.run(probe->check());
    CHECK_FALSE(h.up);
    CHECK_THAT(h.detail, Catch::Contains("serves punt 'docklands'"));
  }
}

TEST_CASE("sessions() counts the sessions logged in on the back end") {
  front_end fe;
  CHECK(fe.spool->sessions() == 0);
  auto s = fe.login();
  REQUIRE(fe.last_pass.starts_with("+OK"));
  CHECK(fe.spool->sessions() == 1);
  fe.h.send(s, "QUIT");
  CHECK(fe.spool->sessions() == 0);
}

TEST_CASE("sessions() counts sessions logged in, not the links idle in the pool") {
  front_end fe(true, ", in_use_wait: 0");
  auto first = fe.login("fred+sample");
  REQUIRE(fe.last_pass.starts_with("+OK"));
  auto second = fe.login("jane+sample");
  REQUIRE(fe.last_pass.starts_with("+OK"));
  CHECK(fe.spool->sessions() == 2);
  CHECK(fe.h.send(first, "QUIT").starts_with("+OK"));
  CHECK(fe.spool->sessions() == 1);  // its link is idle in the pool now
  CHECK(fe.back->connections == 2);
  auto third = fe.login("fred+sample");  // on the link the first gave back
  REQUIRE(fe.last_pass.starts_with("+OK"));
  CHECK(fe.back->connections == 2);
  CHECK(fe.spool->sessions() == 2);
  // A session that drops its connection counts no more either.
  fe.h.disconnect(second);
  CHECK(fe.spool->sessions() == 1);
  fe.h.send(third, "QUIT");
  CHECK(fe.spool->sessions() == 0);
}

TEST_CASE("the probe's link is its own: a pool with every link lent does not make the back end look down") {
  front_end fe(true, ", max_links: 1, link_wait: 0");
  auto s = fe.login("fred+sample");
  REQUIRE(fe.last_pass.starts_with("+OK"));
  const auto probe = fe.spool->make_probe(fe.h.io().get_executor());
  const punt_health h = fe.h.run(probe->check());
  CHECK(h.up);
  CHECK(fe.back->connections == 2);
  // The pool is still full: another login finds no link.
  fe.login("jane+sample");
  CHECK(fe.last_pass.starts_with("-ERR [SYS/TEMP]"));  // the only punt
  // After the first session, its link serves the next login (the probe's
  // never does).
  fe.h.send(s, "QUIT");
  fe.login("jane+sample");
  REQUIRE(fe.last_pass.starts_with("+OK"));
  CHECK(fe.back->connections == 2);
  probe->stop();
}

// -- links kept between sessions (link_pool) -----------------------------------------------

TEST_CASE("a link outlives its session: the next login is USER, PASS and XLIST on it, in one write") {
  front_end fe(true, ", in_use_wait: 0");
  fe.add("u1", 10, "Subject: one\r\n\r\n.1\r\n");
  auto first = fe.login();
  REQUIRE(fe.last_pass.starts_with("+OK sample has 1 message"));
  CHECK(fe.h.send(first, "QUIT").starts_with("+OK"));
  // The back end ended the login (and released the lock) before the
  // client heard +OK.
  CHECK(fe.back->received.back() == "XRESET");
  CHECK(fe.back->locks.empty());
  const std::size_t before = fe.back->received.size();
  auto second = fe.login();
  CHECK(fe.last_pass.starts_with("+OK sample has 1 message"));
  CHECK(fe.back->connections == 1);
  const std::vector<std::string> sent(fe.back->received.begin() + static_cast<std::ptrdiff_t>(before),
                                      fe.back->received.end());
  CHECK(sent == std::vector<std::string>{"USER sample", "PASS", "XLIST"});
  CHECK(fe.back->batches.back() == 3);
  CHECK(fe.h.send(second, "RETR 1") == "+OK 20 octets\r\nSubject: one\r\n\r\n..1\r\n.\r\n");
  // Deletions at QUIT: DELE and XUPDATE KEEP; the link is kept all the same.
  CHECK(fe.h.send(second, "DELE 1").starts_with("+OK"));
  CHECK(fe.h.send(second, "QUIT").starts_with("+OK"));
  CHECK(fe.back->received.back() == "XUPDATE KEEP");
  fe.login();
  CHECK(fe.back->connections == 1);
  CHECK(fe.back->peer_closed == 0);
}

TEST_CASE("a client that leaves without QUIT: its login ends on the back end, nothing removed, the next one gets in") {
  front_end fe(true, ", in_use_wait: 0");
  fe.add("u1", 10, "Subject: one\r\n\r\n1\r\n");
  auto first = fe.login();
  REQUIRE(fe.last_pass.starts_with("+OK sample has 1 message"));
  CHECK(fe.h.send(first, "DELE 1").starts_with("+OK"));
  fe.h.disconnect(first);
  run_until(fe.h, [&] { return fe.back->locks.empty(); });
  CHECK(fe.back->received.back() == "XRESET");
  CHECK_FALSE(has_line(fe.back->received, "DELE"));
  fe.login();
  CHECK(fe.last_pass.starts_with("+OK sample has 1 message"));
}

TEST_CASE("a back end restarted between sessions costs no client anything") {
  front_end fe;
  fe.add("u1", 10, "Subject: one\r\n\r\n1\r\n");
  auto first = fe.login();
  CHECK(fe.h.send(first, "QUIT").starts_with("+OK"));
  SECTION("its closed link is seen idle, and not used") {
    fe.back->restart();
    auto second = fe.login();
    CHECK(fe.last_pass.starts_with("+OK sample has 1 message"));
    CHECK(fe.back->connections == 2);
  }
  SECTION("a link that fails at its first answer is replaced, once") {
    fe.back->drop_reused = true;  // open when the login goes out, closed unanswered
    auto second = fe.login();
    CHECK(fe.last_pass.starts_with("+OK sample has 1 message"));
    CHECK(fe.back->connections == 2);
    CHECK(fe.h.log_of("finchley").contains("a kept link failed at once"));
  }
}

TEST_CASE("a back end without XRESET gets a connection per session, and QUIT or XUPDATE as before") {
  front_end fe;
  fe.back->resets = false;
  fe.add("u1", 10, "Subject: one\r\n\r\n1\r\n");
  auto first = fe.login();
  REQUIRE(fe.last_pass.starts_with("+OK sample has 1 message"));
  CHECK(fe.h.send(first, "QUIT").starts_with("+OK"));
  run_until(fe.h, [&] { return fe.back->received.back() == "QUIT"; });
  CHECK_FALSE(has_line(fe.back->received, "XRESET"));
  auto second = fe.login();
  CHECK(fe.last_pass.starts_with("+OK sample has 1 message"));
  CHECK(fe.back->connections == 2);
  CHECK(fe.h.send(second, "DELE 1").starts_with("+OK"));
  CHECK(fe.h.send(second, "QUIT").starts_with("+OK"));
  CHECK(fe.back->received.back() == "XUPDATE");
  CHECK(fe.back->peer_closed == 0);  // the back end closes first
}

TEST_CASE("the pool is bounded: with every link lent, a login waits link_wait, then the punt is unavailable") {
  front_end fe(true, ", max_links: 1, link_wait: 300ms");
  fe.add("u1", 10, "Subject: one\r\n\r\n1\r\n");
  fe.login("fred+sample");
  REQUIRE(fe.last_pass.starts_with("+OK fred+sample has 1 message"));
  const auto start = std::chrono::steady_clock::now();
  fe.login("jane+sample");
  const auto spent = std::chrono::steady_clock::now() - start;
  CHECK(fe.last_pass.starts_with("-ERR [SYS/TEMP]"));  // the only punt
  CHECK(spent >= std::chrono::milliseconds(300));
  CHECK(spent < std::chrono::milliseconds(3000));
  CHECK(fe.h.log_of("finchley").contains("no link free within 300ms (max_links 1"));
  CHECK(fe.back->connections == 1);
}

TEST_CASE("the pool is bounded: a login waiting for a link takes one given back meanwhile") {
  front_end fe(true, ", max_links: 1, link_wait: 10s");
  fe.add("u1", 10, "Subject: one\r\n\r\n1\r\n");
  auto fred = fe.login("fred+sample");
  REQUIRE(fe.last_pass.starts_with("+OK fred+sample has 1 message"));
  auto jane = fe.h.connect();
  fe.sessions.push_back(jane);
  fe.h.send(jane, "USER jane+sample");
  jane->connection().push("PASS pw");                 // waits for fred's link ...
  CHECK(fe.h.send(fred, "QUIT").starts_with("+OK"));  // ... which comes back here
  const std::string replies = fe.h.send(jane, "NOOP");
  CHECK(replies.starts_with("+OK jane+sample has 1 message"));
  CHECK(fe.back->connections == 1);
}

TEST_CASE("idle links close after link_idle while the loop is busy, and at the next login when it is not") {
  front_end fe(true, ", link_idle: 200ms");
  fe.add("u1", 10, "Subject: one\r\n\r\n1\r\n");
  auto fred = fe.login("fred+sample");
  auto jane = fe.login("jane+sample");
  REQUIRE(fe.back->connections == 2);
  CHECK(fe.h.send(fred, "QUIT").starts_with("+OK"));
  // jane's link is busy, fred's idle: the pool's timer closes it (QUIT, and
  // the back end closes first).
  run_until(fe.h, [&] { return count_of(fe.back->received, "QUIT") == 1; });
  CHECK(fe.back->peer_closed == 0);
  CHECK(fe.h.send(jane, "QUIT").starts_with("+OK"));
  // Nothing else going on: no timer holds the loop; the idle link is
  // looked at by the next login, which finds it too old.
  pause(fe.h, std::chrono::milliseconds(400));
  CHECK(count_of(fe.back->received, "QUIT") == 1);
  fe.login("fred+sample");
  CHECK(fe.last_pass.starts_with("+OK fred+sample has 1 message"));
  CHECK(fe.back->connections == 3);
  run_until(fe.h, [&] { return count_of(fe.back->received, "QUIT") == 2; });
}

TEST_CASE("a link whose XAUTH failed is not kept; the next login tries a new one") {
  front_end fe;
  fe.add("u1", 10, "Subject: one\r\n\r\n1\r\n");
  fe.back->secret = "some other secret of enough octets";
  fe.login();
  CHECK(fe.last_pass.starts_with("-ERR [SYS/TEMP]"));
  CHECK(fe.h.log_of("finchley").contains("refused this front end's proof"));
  fe.back->secret = secret_text;
  fe.login();
  CHECK(fe.last_pass.starts_with("+OK sample has 1 message"));
  CHECK(fe.back->connections == 2);
}

TEST_CASE("a link with a body half read when its session ends is closed, not kept") {
  front_end fe;
  fe.add("u1", 10, "Subject: one\r\n\r\n" + std::string(100000, 'x') + "\r\n");
  auto s = fe.login();
  const std::shared_ptr<maildrop> drop = s->maildrop();
  auto body = fe.h.run(drop->retrieve(0, retrieval::whole_message()));
  std::array<char, 1000> some;
  CHECK(fe.h.run(body->read(some)) > 0);
  fe.h.disconnect(s);
  fe.login();
  CHECK(fe.last_pass.starts_with("+OK sample has 1 message"));
  CHECK(fe.back->connections == 2);
}

TEST_CASE("what an ended session handed out cannot reach its link once another session has it") {
  front_end fe;
  fe.add("u1", 10, "Subject: one\r\n\r\n1\r\n");
  auto first = fe.login();
  const std::shared_ptr<maildrop> old = first->maildrop();
  CHECK(fe.h.send(first, "QUIT").starts_with("+OK"));
  auto second = fe.login();
  REQUIRE(fe.back->connections == 1);
  const std::size_t before = fe.back->received.size();
  CHECK_THROWS_AS(fe.h.run(old->envelope(0)), spool_error);
  CHECK(fe.back->received.size() == before);
}

TEST_CASE("RETR passes a long body with stuffed lines on exactly as the back end sent it") {
  front_end fe;
  std::string body = "Subject: dots\r\n\r\n";
  for (int i = 0; i < 6000; ++i) body.append(i % 3 == 0 ? "." : "").append("line ").append(std::to_string(i)).append("\r\n");
  body += ".\r\n..\r\nlast\r\n";
  fe.add("u1", 10, body);
  auto s = fe.login();
  CHECK(fe.h.send(s, "RETR 1") == "+OK " + std::to_string(body.size()) + " octets\r\n" + stuff(body));
  CHECK(fe.h.send(s, "NOOP").starts_with("+OK"));
}

TEST_CASE("*ENV asks for the next envelopes of the punt in the same write; the read flag follows this session's RETRs") {
  front_end fe;
  for (int i = 1; i <= 10; ++i)
    fe.add(std::string("u").append(std::to_string(i)), i,
           std::string("Subject: ").append(std::to_string(i)).append("\r\n\r\nx\r\n"));
  auto s = fe.login();
  CHECK(fe.h.send(s, "*ENV 1") ==
        "+OK envelope follows\r\nOK\r\nfinchley\r\nalice1@example.com\r\nfred@sample.demon.co.uk\r\n.\r\n");
  CHECK(fe.back->batches.back() == 8);
  CHECK(fe.back->received.back() == "*ENV 8");
  const std::size_t asked = fe.back->received.size();
  CHECK(fe.h.send(s, "*ENV 2").starts_with("+OK envelope follows\r\nOK\r\nfinchley\r\nalice2@example.com\r\n"));
  CHECK(fe.back->received.size() == asked);
  // RETR sets the flag; the envelope kept from before says so too.
  CHECK(fe.h.send(s, "RETR 3").starts_with("+OK"));
  CHECK(fe.h.send(s, "*ENV 3").starts_with("+OK envelope follows\r\nRD\r\nfinchley\r\nalice3@example.com\r\n"));
  CHECK(fe.back->received.size() == asked + 1);  // the RETR only
  CHECK(fe.h.send(s, "*ENV 9").starts_with("+OK envelope follows\r\nOK\r\nfinchley\r\nalice9@example.com\r\n"));
  const std::vector<std::string> last(fe.back->received.end() - 2, fe.back->received.end());
  CHECK(last == std::vector<std::string>{"*ENV 9", "*ENV 10"});
}

TEST_CASE("a keepalive due as the session ends sends nothing after the reset") {
  // The loop is kept from running past the keepalive's deadline, so that
  // the client's QUIT and the keepalive are handled in one turn of it:
  // the NOOP must not follow the XRESET onto a link that went back to its
  // pool (a back end refuses it there, and its time limit would hold the
  // loop, and sdpsd's SIGTERM, until it passed).
  front_end fe(true, ", keepalive: 20ms");
  fe.add("u1", 10, "Subject: one\r\n\r\n1\r\n");
  for (int round = 0; round < 5; ++round) {
    auto s = fe.login();
    REQUIRE(fe.last_pass.starts_with("+OK"));
    std::this_thread::sleep_for(std::chrono::milliseconds(60));
    CHECK(fe.h.send(s, "QUIT").starts_with("+OK"));
    pause(fe.h, std::chrono::milliseconds(60));
    const auto& got = fe.back->received;
    const auto reset = std::find(got.rbegin(), got.rend(), "XRESET");
    REQUIRE(reset != got.rend());
    CHECK(std::find(got.rbegin(), reset, "NOOP") == reset);
  }
}
