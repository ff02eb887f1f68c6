// sdps-loadgen: a POP3 load generator that checks every size it receives.
//
// One thread, one epoll set, non-blocking sockets: it takes as little CPU as
// a client can, so the server under test keeps the machine's cores. Every
// workload verifies what the server says: +OK replies, STAT against LIST,
// UIDL and LIST numbering, each RETR's octets (after removing byte-stuffing)
// against LIST's size, the multi-line terminators, and the close after QUIT.
// A reply that breaks any of these is a verification error: the run exits 1.
//
// Workloads (bench/README.md):
//   full     C clients in a loop: USER, PASS, STAT, UIDL, LIST, RETR of
//            every message, QUIT; sessions/s and latency percentiles
//   login    C clients in a loop: USER, PASS, STAT, QUIT
//   retr     one session: RETR of message 1..n in turn for the duration; MB/s
//   bigdrop  sequential sessions: USER, PASS, STAT, UIDL, QUIT; median times
//   idle     N sessions logged in (STAT done) and held; after each step of
//            --steps a HELD line, then it waits for a line on stdin; at EOF
//            it sends QUIT on every held session
//   handshake C clients in a loop: the greeting and QUIT, nothing else (with
//            --tls, one TLS handshake per session: handshakes/s)
//
// With --tls implicit (POP3S) or --tls stls every workload runs over TLS
// (OpenSSL, on the same non-blocking sockets), with or without session
// resumption (--resume on: each client offers the session its last
// handshake gave it, a TLS 1.3 ticket or a TLS 1.2 session). Without --tls
// not one call differs from the plaintext generator's.
//
// Output: human-readable lines beginning with '#', and one machine-readable
// line `RESULT {json}` (for idle, also `HELD {json}` at each step).
// Exit: 0 all verified, 1 a verification error, 2 bad options, 4 other
// failures only (-ERR replies, refused or reset connections, timeouts).

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <fstream>
#include <iostream>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace {

enum class workload { full, login, retr, bigdrop, idle, handshake };

// How a session gets TLS: not at all, before the greeting (POP3S), or by STLS.
enum class tls_mode { none, implicit, stls };

struct options {
  workload kind = workload::full;
  std::string host = "127.0.0.1";
  int port = 0;
  std::vector<std::pair<std::string, std::string>> users;  // user, password
  int clients = 1;
  double seconds = 2.0;
  double warmup = 0.5;
  int runs = 5;
  std::vector<long> steps;  // idle: cumulative session counts
  double timeout = 30.0;
  long expect_messages = -1;
  long give_up = 100;  // idle: stop opening sessions after this many failed
  long sources = 0;  // > 0: client n connects from 127.1.0.0 + 1 + n % sources
  long sessions = 0;  // > 0 (full, login, handshake): exactly this many sessions, then stop
  tls_mode tls = tls_mode::none;
  bool resume = false;        // offer the last session's ticket (or TLS 1.2 session)
  int tls_max = TLS1_3_VERSION;
  std::string ca;             // verify the server's certificate against this CA file
  bool rotate = false;        // each new session takes the next login of the list
};

double now() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

double cpu_seconds() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1e-6;
}

std::optional<long> to_long(std::string_view s) {
  long v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc{} || p != s.data() + s.size() || s.empty()) return std::nullopt;
  return v;
}

std::string shown(std::string_view line) {
  std::string out;
  for (char c : line.substr(0, 120)) out += (c >= 0x20 && c < 0x7f) ? c : '?';
  return out;
}

std::string json_escape(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      out += ' ';
    } else {
      out += c;
    }
  }
  return out;
}

// What a connection waits for next.
enum class step {
  connecting, handshake, greeting, stls, stls_ready, user, pass, stat, uidl, uidl_body, list, list_body, retr, retr_body, quit,
  closing, holding
};

const char* step_name(step s) {
  switch (s) {
    case step::connecting: return "connecting";
    case step::handshake: return "the TLS handshake";
    case step::greeting: return "the greeting";
    case step::stls: case step::stls_ready: return "the STLS reply";
    case step::user: return "the USER reply";
    case step::pass: return "the PASS reply";
    case step::stat: return "the STAT reply";
    case step::uidl: case step::uidl_body: return "the UIDL listing";
    case step::list: case step::list_body: return "the LIST listing";
    case step::retr: case step::retr_body: return "a RETR reply";
    case step::quit: return "the QUIT reply";
    case step::closing: return "the close after QUIT";
    case step::holding: return "nothing (holding)";
  }
  return "?";
}

struct connection {
  int fd = -1;
  SSL* ssl = nullptr;     // TLS: set when the handshake begins; reads and writes go through it
  bool secure = false;    // the handshake has completed
  std::uint32_t generation = 0;
  std::size_t user = 0;
  step at = step::connecting;
  std::vector<char> in;  // received, unparsed: [head, tail)
  std::size_t head = 0, tail = 0;
  std::string out;  // not yet written
  // the maildrop as the server described it
  long count = 0, octets = 0, seen = 0, list_sum = 0;
  std::vector<long> sizes;
  long current = 0;       // message being retrieved
  long body = 0;          // its octets so far, unstuffed
  long wire = 0;          // its octets so far, as sent
  // times
  double started = 0, waiting_since = 0, logged_in = 0, handshake_started = 0, pass_sent = 0;
  bool retr_loop = false;  // the retr workload: RETR again until the deadline
};

enum class outcome { ok, verify, other };

class loadgen {
 public:
  explicit loadgen(options o) : opt_(std::move(o)) {}
  ~loadgen();
  loadgen(const loadgen&) = delete;
  loadgen& operator=(const loadgen&) = delete;
  int run();

 private:
  // TLS (--tls)
  bool make_tls_context();
  void start_tls(std::size_t slot);
  void continue_tls(std::size_t slot);
  void after_greeting(std::size_t slot);
  void login_or_quit(std::size_t slot);
  static int on_new_session(SSL* ssl, SSL_SESSION* session);
  std::string tls_error(SSL* ssl, int result) const;
  std::string tls_json() const;
  std::string tls_human() const;
  long io_read(connection& c, char* into, std::size_t size, bool& again, std::string& error);

  // connections
  std::size_t open(std::size_t slot);
  void close_slot(std::size_t slot);
  void fail(std::size_t slot, outcome kind, const std::string& why);
  void send(std::size_t slot, std::string_view command);
  void flush(std::size_t slot);
  void on_event(std::size_t slot, std::uint32_t events);
  void on_readable(std::size_t slot);
  bool on_line(std::size_t slot, std::string_view line);
  void finished(std::size_t slot);  // EOF after QUIT: a whole session
  void reached_hold(std::size_t slot);
  void start_retr(std::size_t slot);
  void pump(double wait_until);
  void check_timeouts();

  // workloads
  int run_sessions();
  int run_counted_sessions();
  int session_report(double cpu, double seconds);
  int run_retr();
  int run_bigdrop();
  int run_idle();
  int report(const std::string& json, const std::string& human);

  options opt_;
  int epoll_ = -1;
  std::vector<connection> slots_;
  // results
  long sessions_ = 0, messages_ = 0, octets_ = 0, wire_octets_ = 0;
  long verify_errors_ = 0, other_errors_ = 0;
  std::vector<std::string> first_errors_;
  std::vector<double> latencies_;  // whole sessions, seconds
  std::vector<double> login_times_, total_times_;
  std::vector<double> pass_times_;  // PASS sent to its +OK, in the measured window
  std::size_t next_user_ = 0;       // --rotate: the login the next session takes
  double window_start_ = 0, window_end_ = 1e300;
  bool starting_ = true;  // new sessions may start
  long held_ = 0, active_ = 0, quit_ok_ = 0, dropped_ = 0;
  double last_timeout_check_ = 0;
  // TLS
  SSL_CTX* tls_ = nullptr;
  std::vector<SSL_SESSION*> tickets_;  // per slot: the session to offer next (--resume on)
  long handshakes_ = 0, resumed_ = 0;   // completed in the measured window
  std::vector<double> handshake_times_;  // seconds, from the ClientHello to the end
  std::string tls_description_;         // protocol and cipher of the first handshake
};

std::string percentile_ms(std::vector<double> v, double p);

// Which loadgen and slot an SSL belongs to (the new-session callback's way back).
int slot_index = -1;

loadgen::~loadgen() {
  for (auto& c : slots_) {
    if (c.ssl) SSL_free(c.ssl);
  }
  for (SSL_SESSION* s : tickets_) {
    if (s) SSL_SESSION_free(s);
  }
  if (tls_) SSL_CTX_free(tls_);
}

bool loadgen::make_tls_context() {
  tls_ = SSL_CTX_new(TLS_client_method());
  if (!tls_) return false;
  SSL_CTX_set_min_proto_version(tls_, TLS1_2_VERSION);
  SSL_CTX_set_max_proto_version(tls_, opt_.tls_max);
  // A server that closes without close_notify after QUIT has still closed.
  SSL_CTX_set_options(tls_, SSL_OP_IGNORE_UNEXPECTED_EOF);
  // Sessions (tickets) go to on_new_session, which keeps each client's last
  // one; OpenSSL's own client cache is not used.
  SSL_CTX_set_session_cache_mode(tls_, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
  SSL_CTX_sess_set_new_cb(tls_, &loadgen::on_new_session);
  if (!opt_.ca.empty()) {
    if (SSL_CTX_load_verify_locations(tls_, opt_.ca.c_str(), nullptr) != 1) {
      std::cerr << "sdps-loadgen: cannot load the CA file " << opt_.ca << "\n";
      return false;
    }
    SSL_CTX_set_verify(tls_, SSL_VERIFY_PEER, nullptr);
  }
  slot_index = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return slot_index >= 0;
}

int loadgen::on_new_session(SSL* ssl, SSL_SESSION* session) {
  auto* self = static_cast<loadgen*>(SSL_get_app_data(ssl));
  const auto slot = reinterpret_cast<std::uintptr_t>(SSL_get_ex_data(ssl, slot_index));
  if (!self || !self->opt_.resume || slot >= self->tickets_.size()) return 0;
  SSL_SESSION*& kept = self->tickets_[slot];
  if (kept) SSL_SESSION_free(kept);
  kept = session;  // ours now
  return 1;
}

std::string loadgen::tls_error(SSL* ssl, int result) const {
  const int code = SSL_get_error(ssl, result);
  std::string why;
  if (code == SSL_ERROR_SYSCALL) why = errno ? std::strerror(errno) : "connection closed";
  if (const unsigned long e = ERR_get_error()) {
    char text[256];
    ERR_error_string_n(e, text, sizeof text);
    why = text;
  }
  ERR_clear_error();
  if (why.empty()) why = "SSL error " + std::to_string(code);
  return why;
}

// Starts the client side of a handshake on the connected socket.
void loadgen::start_tls(std::size_t slot) {
  connection& c = slots_[slot];
  c.ssl = SSL_new(tls_);
  if (!c.ssl || SSL_set_fd(c.ssl, c.fd) != 1) {
    fail(slot, outcome::other, "cannot make a TLS connection object");
    return;
  }
  SSL_set_app_data(c.ssl, this);
  SSL_set_ex_data(c.ssl, slot_index, reinterpret_cast<void*>(static_cast<std::uintptr_t>(slot)));
  SSL_set_mode(c.ssl, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  if (opt_.resume && tickets_[slot]) SSL_set_session(c.ssl, tickets_[slot]);
  c.at = step::handshake;
  c.handshake_started = c.waiting_since = now();
  continue_tls(slot);
}

void loadgen::continue_tls(std::size_t slot) {
  connection& c = slots_[slot];
  const int r = SSL_connect(c.ssl);
  if (r != 1) {
    const int code = SSL_get_error(c.ssl, r);
    if (code == SSL_ERROR_WANT_READ || code == SSL_ERROR_WANT_WRITE) {
      epoll_event ev{};
      ev.events = code == SSL_ERROR_WANT_READ ? EPOLLIN : EPOLLOUT;
      ev.data.u64 = (static_cast<std::uint64_t>(slot) << 32) | c.generation;
      epoll_ctl(epoll_, EPOLL_CTL_MOD, c.fd, &ev);
      return;
    }
    fail(slot, outcome::other, "TLS handshake: " + tls_error(c.ssl, r));
    return;
  }
  c.secure = true;
  const double t = now();
  if (t >= window_start_ && t < window_end_) {
    ++handshakes_;
    if (SSL_session_reused(c.ssl)) ++resumed_;
    handshake_times_.push_back(t - c.handshake_started);
  }
  if (tls_description_.empty()) tls_description_ = std::string(SSL_get_version(c.ssl)) + " " + SSL_get_cipher_name(c.ssl);
  const auto generation = c.generation;
  if (opt_.tls == tls_mode::implicit) {
    c.at = step::greeting;
    c.waiting_since = t;
  } else {
    login_or_quit(slot);
    if (c.generation != generation || c.fd < 0) return;
  }
  flush(slot);  // EPOLLIN (and EPOLLOUT while output waits) from now on
  // The server's first records may already be in: read what is there.
  if (c.generation == generation && c.fd >= 0) on_readable(slot);
}

// After the greeting (and, with STLS, the handshake): log in, or QUIT at once.
void loadgen::login_or_quit(std::size_t slot) {
  connection& c = slots_[slot];
  const auto& user = opt_.users[c.user].first;
  if (opt_.kind == workload::handshake) {
    c.at = step::quit;
    send(slot, "QUIT");
  } else {
    c.at = step::user;
    send(slot, "USER " + user);
  }
}

void loadgen::after_greeting(std::size_t slot) {
  connection& c = slots_[slot];
  if (opt_.tls == tls_mode::stls && !c.secure) {
    c.at = step::stls;
    send(slot, "STLS");
    return;
  }
  login_or_quit(slot);
}

// One read from the connection: the socket's octets, or TLS's plaintext.
// > 0 octets; 0 the end (EOF, or TLS close_notify); < 0 nothing now
// (`again`) or an error (`error`).
long loadgen::io_read(connection& c, char* into, std::size_t size, bool& again, std::string& error) {
  const int r = SSL_read(c.ssl, into, static_cast<int>(std::min<std::size_t>(size, 1 << 30)));
  if (r > 0) return r;
  const int code = SSL_get_error(c.ssl, r);
  if (code == SSL_ERROR_WANT_READ || code == SSL_ERROR_WANT_WRITE) {
    again = true;
    return -1;
  }
  if (code == SSL_ERROR_ZERO_RETURN) return 0;
  error = "TLS read: " + tls_error(c.ssl, r);
  return -1;
}

std::string loadgen::tls_json() const {
  if (opt_.tls == tls_mode::none) return "";
  std::ostringstream json;
  json.setf(std::ios::fixed);
  json.precision(3);
  json << ",\"tls\":\"" << (opt_.tls == tls_mode::implicit ? "implicit" : "stls") << "\",\"resume\":"
       << (opt_.resume ? "true" : "false") << ",\"handshakes\":" << handshakes_ << ",\"resumed\":" << resumed_
       << ",\"handshake_p50_ms\":" << percentile_ms(handshake_times_, 0.5)
       << ",\"handshake_p99_ms\":" << percentile_ms(handshake_times_, 0.99) << ",\"protocol\":\""
       << json_escape(tls_description_) << "\"";
  return json.str();
}

std::string loadgen::tls_human() const {
  if (opt_.tls == tls_mode::none) return "";
  std::ostringstream human;
  human << "; TLS (" << (opt_.tls == tls_mode::implicit ? "implicit" : "STLS") << ", "
        << (tls_description_.empty() ? "no handshake" : tls_description_) << "): " << handshakes_
        << " handshakes, " << resumed_ << " resumed" << (opt_.resume ? "" : " (resumption off)")
        << ", handshake p50 " << percentile_ms(handshake_times_, 0.5) << " ms";
  return human.str();
}

std::size_t loadgen::open(std::size_t slot) {
  connection& c = slots_[slot];
  const auto generation = c.generation + 1;
  if (c.ssl) SSL_free(c.ssl);
  c = connection{};
  c.generation = generation;
  // Each client its own login (maildrops are locked); with --rotate each
  // session the next one, so that no login repeats before the list ends.
  c.user = opt_.rotate ? next_user_++ % opt_.users.size() : slot % opt_.users.size();
  c.started = c.waiting_since = now();
  c.fd = socket(opt_.host.find(':') != std::string::npos ? AF_INET6 : AF_INET,
                SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (c.fd < 0) {
    fail(slot, outcome::other, std::string("socket: ") + std::strerror(errno));
    return slot;
  }
  int one = 1;
  setsockopt(c.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  sockaddr_storage addr{};
  socklen_t len = 0;
  if (opt_.host.find(':') != std::string::npos) {
    auto* a = reinterpret_cast<sockaddr_in6*>(&addr);
    a->sin6_family = AF_INET6;
    a->sin6_port = htons(static_cast<std::uint16_t>(opt_.port));
    inet_pton(AF_INET6, opt_.host.c_str(), &a->sin6_addr);
    len = sizeof *a;
  } else {
    auto* a = reinterpret_cast<sockaddr_in*>(&addr);
    a->sin_family = AF_INET;
    a->sin_port = htons(static_cast<std::uint16_t>(opt_.port));
    inet_pton(AF_INET, opt_.host.c_str(), &a->sin_addr);
    len = sizeof *a;
  }
  ++active_;
  if (opt_.sources > 0) {  // each client its own loopback address, as customers have
    sockaddr_in from{};
    from.sin_family = AF_INET;
    from.sin_addr.s_addr = htonl(0x7f010000u + 1u + static_cast<std::uint32_t>(static_cast<long>(slot) % opt_.sources));
    if (bind(c.fd, reinterpret_cast<sockaddr*>(&from), sizeof from) < 0) {
      fail(slot, outcome::other, std::string("bind to a source address: ") + std::strerror(errno));
      return slot;
    }
  }
  if (connect(c.fd, reinterpret_cast<sockaddr*>(&addr), len) < 0 && errno != EINPROGRESS) {
    fail(slot, outcome::other, std::string("connect: ") + std::strerror(errno));
    return slot;
  }
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLOUT;
  ev.data.u64 = (static_cast<std::uint64_t>(slot) << 32) | c.generation;
  epoll_ctl(epoll_, EPOLL_CTL_ADD, c.fd, &ev);
  c.in.resize(64 * 1024);
  return slot;
}

void loadgen::close_slot(std::size_t slot) {
  connection& c = slots_[slot];
  if (c.ssl) {
    SSL_free(c.ssl);  // no close_notify: clients rarely send one, and the server has closed or is closing
    c.ssl = nullptr;
    c.secure = false;
  }
  if (c.fd >= 0) {
    epoll_ctl(epoll_, EPOLL_CTL_DEL, c.fd, nullptr);
    ::close(c.fd);
    c.fd = -1;
    --active_;
  }
  ++c.generation;  // events already fetched for it are stale
  std::vector<char>().swap(c.in);
  std::vector<long>().swap(c.sizes);
}

void loadgen::fail(std::size_t slot, outcome kind, const std::string& why) {
  (kind == outcome::verify ? verify_errors_ : other_errors_)++;
  if (first_errors_.size() < 5) {
    first_errors_.push_back((kind == outcome::verify ? "verification: " : "") + why + " (user " +
                            opt_.users[slots_[slot].user].first + ")");
  }
  if (slots_[slot].at == step::holding) {
    --held_;
    ++dropped_;
  }
  close_slot(slot);
}

void loadgen::send(std::size_t slot, std::string_view command) {
  connection& c = slots_[slot];
  c.out.append(command);
  c.out.append("\r\n");
  c.waiting_since = now();
  flush(slot);
}

void loadgen::flush(std::size_t slot) {
  connection& c = slots_[slot];
  while (c.secure && !c.out.empty()) {
    const int n = SSL_write(c.ssl, c.out.data(), static_cast<int>(std::min<std::size_t>(c.out.size(), 1 << 30)));
    if (n <= 0) {
      const int code = SSL_get_error(c.ssl, n);
      if (code == SSL_ERROR_WANT_WRITE || code == SSL_ERROR_WANT_READ) break;
      fail(slot, outcome::other, "TLS write: " + tls_error(c.ssl, n));
      return;
    }
    c.out.erase(0, static_cast<std::size_t>(n));
  }
  while (!c.secure && !c.out.empty()) {
    ssize_t n = ::send(c.fd, c.out.data(), c.out.size(), MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EAGAIN) break;
      fail(slot, outcome::other, std::string("send: ") + std::strerror(errno));
      return;
    }
    c.out.erase(0, static_cast<std::size_t>(n));
  }
  epoll_event ev{};
  ev.events = EPOLLIN | (c.out.empty() ? 0u : static_cast<std::uint32_t>(EPOLLOUT));
  ev.data.u64 = (static_cast<std::uint64_t>(slot) << 32) | c.generation;
  epoll_ctl(epoll_, EPOLL_CTL_MOD, c.fd, &ev);
}

void loadgen::on_event(std::size_t slot, std::uint32_t events) {
  connection& c = slots_[slot];
  if (c.at == step::connecting) {
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0) {
      fail(slot, outcome::other, std::string("connect: ") + std::strerror(err));
      return;
    }
    if (opt_.tls == tls_mode::implicit) {
      start_tls(slot);
      return;
    }
    c.at = step::greeting;
    flush(slot);  // EPOLLIN only from now on
    if (c.fd < 0) return;
  }
  if (c.at == step::handshake) {
    continue_tls(slot);
    return;
  }
  if ((events & EPOLLOUT) && !c.out.empty()) {
    const auto generation = c.generation;
    flush(slot);
    if (c.generation != generation) return;
  }
  if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) on_readable(slot);
}

void loadgen::on_readable(std::size_t slot) {
  connection& c = slots_[slot];
  const auto generation = c.generation;
  for (;;) {
    if (c.in.size() - c.tail < 16 * 1024) {  // make room: compact, then grow
      if (c.head > 0) {
        std::memmove(c.in.data(), c.in.data() + c.head, c.tail - c.head);
        c.tail -= c.head;
        c.head = 0;
      }
      if (c.in.size() - c.tail < 16 * 1024) c.in.resize(std::max<std::size_t>(c.in.size() * 2, 256 * 1024));
    }
    ssize_t n = 0;
    if (c.secure) {
      bool again = false;
      std::string error;
      n = io_read(c, c.in.data() + c.tail, c.in.size() - c.tail, again, error);
      if (n < 0) {
        if (!again) fail(slot, outcome::other, error);
        return;
      }
    } else {
      n = ::read(c.fd, c.in.data() + c.tail, c.in.size() - c.tail);
      if (n < 0) {
        if (errno == EAGAIN) return;
        fail(slot, outcome::other, std::string("read: ") + std::strerror(errno));
        return;
      }
    }
    if (n == 0) {
      if (c.at == step::closing) {
        if (c.tail != c.head) {
          fail(slot, outcome::verify, "data after the QUIT reply: " + shown({c.in.data() + c.head, c.tail - c.head}));
          return;
        }
        finished(slot);
      } else {
        fail(slot, outcome::other, std::string("connection closed by the server while waiting for ") + step_name(c.at));
      }
      return;
    }
    c.tail += static_cast<std::size_t>(n);
    // every complete line
    while (c.head < c.tail) {
      const char* base = c.in.data();
      const char* from = base + c.head;
      const char* end = base + c.tail;
      const char* lf = from;
      for (;;) {
        lf = static_cast<const char*>(std::memchr(lf, '\n', static_cast<std::size_t>(end - lf)));
        if (lf == nullptr || (lf > from && lf[-1] == '\r')) break;
        ++lf;  // a bare LF is part of the line
      }
      if (lf == nullptr) {
        const bool in_body = c.at == step::uidl_body || c.at == step::list_body || c.at == step::retr_body;
        if (c.tail - c.head > (in_body ? std::size_t{64} << 20 : std::size_t{64} << 10)) {
          fail(slot, outcome::verify, "a line without CRLF longer than the limit");
          return;
        }
        break;
      }
      const std::string_view line(from, static_cast<std::size_t>(lf - 1 - from));
      c.head = static_cast<std::size_t>(lf + 1 - base);
      if (!on_line(slot, line) || c.generation != generation) return;
      if (c.at == step::stls_ready) {  // the STLS reply: TLS from the next octet on
        if (c.head != c.tail) {
          fail(slot, outcome::verify, "data after the STLS reply: " + shown({c.in.data() + c.head, c.tail - c.head}));
          return;
        }
        c.head = c.tail = 0;
        start_tls(slot);
        return;
      }
    }
    if (c.head == c.tail) c.head = c.tail = 0;
    if (c.at == step::holding) return;
  }
}

// One line from the server; false when the connection is gone.
bool loadgen::on_line(std::size_t slot, std::string_view line) {
  connection& c = slots_[slot];
  const auto& password = opt_.users[c.user].second;
  auto positive = [&](std::string_view what) {
    if (line.substr(0, 3) == "+OK") return true;
    fail(slot, outcome::other, std::string(what) + " -> " + shown(line));
    return false;
  };
  switch (c.at) {
    case step::connecting:
    case step::holding:
      fail(slot, outcome::verify, "unexpected line: " + shown(line));
      return false;
    case step::greeting:
      if (!positive("greeting")) return false;
      after_greeting(slot);
      return c.fd >= 0;
    case step::stls:
      if (!positive("STLS")) return false;
      c.at = step::stls_ready;
      return true;
    case step::handshake:
    case step::stls_ready:
      fail(slot, outcome::verify, "unexpected line: " + shown(line));
      return false;
    case step::user:
      if (!positive("USER")) return false;
      c.at = step::pass;
      c.pass_sent = now();
      send(slot, "PASS " + password);
      return c.fd >= 0;
    case step::pass:
      if (!positive("PASS")) return false;
      c.logged_in = now();
      if (c.logged_in >= window_start_ && c.logged_in < window_end_) pass_times_.push_back(c.logged_in - c.pass_sent);
      c.at = step::stat;
      send(slot, "STAT");
      return c.fd >= 0;
    case step::stat: {
      if (!positive("STAT")) return false;
      // "+OK nn mm"
      std::string_view rest = line.substr(std::min<std::size_t>(4, line.size()));
      const auto sp = rest.find(' ');
      auto n = to_long(rest.substr(0, sp));
      auto m = sp == std::string_view::npos ? std::nullopt : to_long(rest.substr(sp + 1, rest.find(' ', sp + 1) - sp - 1));
      if (!n || !m || *n < 0 || *m < 0) {
        fail(slot, outcome::verify, "STAT reply is not '+OK count octets': " + shown(line));
        return false;
      }
      if (opt_.expect_messages >= 0 && *n != opt_.expect_messages) {
        fail(slot, outcome::verify, "STAT says " + std::to_string(*n) + " messages, expected " +
                                        std::to_string(opt_.expect_messages));
        return false;
      }
      c.count = *n;
      c.octets = *m;
      switch (opt_.kind) {
        case workload::login:
        case workload::handshake: c.at = step::quit; send(slot, "QUIT"); break;
        case workload::retr: c.at = step::list; send(slot, "LIST"); break;
        case workload::idle: reached_hold(slot); return false;
        case workload::full:
        case workload::bigdrop: c.at = step::uidl; send(slot, "UIDL"); break;
      }
      return c.fd >= 0;
    }
    case step::uidl:
    case step::list:
      if (!positive(c.at == step::uidl ? "UIDL" : "LIST")) return false;
      c.seen = 0;
      c.list_sum = 0;
      if (c.at == step::list) c.sizes.assign(static_cast<std::size_t>(c.count) + 1, 0);
      c.at = c.at == step::uidl ? step::uidl_body : step::list_body;
      return true;
    case step::uidl_body:
    case step::list_body: {
      const bool uidl = c.at == step::uidl_body;
      if (line == ".") {
        if (c.seen != c.count) {
          fail(slot, outcome::verify, std::string(uidl ? "UIDL" : "LIST") + " listed " + std::to_string(c.seen) +
                                          " messages, STAT said " + std::to_string(c.count));
          return false;
        }
        if (!uidl && c.list_sum != c.octets) {
          fail(slot, outcome::verify, "LIST sizes add up to " + std::to_string(c.list_sum) + ", STAT said " +
                                          std::to_string(c.octets));
          return false;
        }
        if (uidl) {
          if (opt_.kind == workload::bigdrop) {
            total_times_.push_back(now() - c.started);
            login_times_.push_back(c.logged_in - c.started);
            c.at = step::quit;
            send(slot, "QUIT");
          } else {
            c.at = step::list;
            send(slot, "LIST");
          }
        } else {
          c.current = 0;
          c.retr_loop = opt_.kind == workload::retr;
          start_retr(slot);
        }
        return c.fd >= 0;
      }
      const auto sp = line.find(' ');
      const auto n = to_long(line.substr(0, sp));
      std::string_view value = sp == std::string_view::npos ? std::string_view{} : line.substr(sp + 1);
      bool good = n && *n == c.seen + 1 && !value.empty() && c.seen < c.count;
      if (good && uidl) {
        good = value.size() <= 70 && std::all_of(value.begin(), value.end(), [](char ch) { return ch > 0x20 && ch < 0x7f; });
      } else if (good) {
        const auto size = to_long(value.substr(0, value.find(' ')));
        good = size && *size >= 0;
        if (good) {
          c.sizes[static_cast<std::size_t>(*n)] = *size;
          c.list_sum += *size;
        }
      }
      if (!good) {
        fail(slot, outcome::verify, std::string(uidl ? "UIDL" : "LIST") + " line " + std::to_string(c.seen + 1) +
                                        " is wrong: " + shown(line));
        return false;
      }
      ++c.seen;
      return true;
    }
    case step::retr:
      if (!positive("RETR " + std::to_string(c.current))) return false;
      c.body = c.wire = 0;
      c.at = step::retr_body;
      return true;
    case step::retr_body:
      if (line == ".") {
        const long expected = c.sizes[static_cast<std::size_t>(c.current)];
        if (c.body != expected) {
          fail(slot, outcome::verify, "RETR " + std::to_string(c.current) + " sent " + std::to_string(c.body) +
                                          " octets, LIST said " + std::to_string(expected));
          return false;
        }
        const double t = now();
        if (t >= window_start_ && t < window_end_) {
          ++messages_;
          octets_ += c.body;
          wire_octets_ += c.wire + 3;
        }
        start_retr(slot);
        return c.fd >= 0;
      }
      c.wire += static_cast<long>(line.size()) + 2;
      c.body += static_cast<long>(line.size()) + 2 - (!line.empty() && line.front() == '.' ? 1 : 0);
      return true;
    case step::quit:
      if (!positive("QUIT")) return false;
      c.at = step::closing;
      return true;
    case step::closing:
      fail(slot, outcome::verify, "a line after the QUIT reply: " + shown(line));
      return false;
  }
  return false;
}

void loadgen::start_retr(std::size_t slot) {
  connection& c = slots_[slot];
  if (c.retr_loop) {
    if (c.count == 0) {
      fail(slot, outcome::other, "the maildrop is empty: nothing to retrieve");
      return;
    }
    if (now() < window_end_) {
      c.current = c.current % c.count + 1;
      c.at = step::retr;
      send(slot, "RETR " + std::to_string(c.current));
      return;
    }
  } else if (c.current < c.count) {
    ++c.current;
    c.at = step::retr;
    send(slot, "RETR " + std::to_string(c.current));
    return;
  }
  c.at = step::quit;
  send(slot, "QUIT");
}

void loadgen::finished(std::size_t slot) {
  const connection& c = slots_[slot];
  // A session ended cleanly stays resumable: OpenSSL marks the session of an
  // SSL freed without a shutdown as not to be resumed.
  if (c.ssl) SSL_set_shutdown(c.ssl, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
  const double t = now();
  if (t >= window_start_ && t < window_end_) {
    ++sessions_;
    latencies_.push_back(t - c.started);
  }
  close_slot(slot);
}

void loadgen::reached_hold(std::size_t slot) {
  connection& c = slots_[slot];
  c.at = step::holding;
  std::vector<char>().swap(c.in);
  c.head = c.tail = 0;
  ++held_;
}

void loadgen::check_timeouts() {
  const double t = now();
  if (t - last_timeout_check_ < 0.25) return;
  last_timeout_check_ = t;
  for (std::size_t i = 0; i < slots_.size(); ++i) {
    const connection& c = slots_[i];
    if (c.fd >= 0 && c.at != step::holding && t - c.waiting_since > opt_.timeout) {
      fail(i, outcome::other, "no reply within " + std::to_string(static_cast<int>(opt_.timeout)) + " s, waiting for " +
                                  step_name(c.at));
    }
  }
}

// Serves events until `wait_until` (one pass of epoll_wait at most).
void loadgen::pump(double wait_until) {
  epoll_event events[256];
  const double left = wait_until - now();
  const int ms = left <= 0 ? 0 : static_cast<int>(std::min(100.0, std::ceil(left * 1000)));
  const int n = epoll_wait(epoll_, events, 256, ms);
  for (int i = 0; i < n; ++i) {
    const auto slot = static_cast<std::size_t>(events[i].data.u64 >> 32);
    const auto generation = static_cast<std::uint32_t>(events[i].data.u64 & 0xffffffffu);
    if (slot < slots_.size() && slots_[slot].generation == generation && slots_[slot].fd >= 0) {
      on_event(slot, events[i].events);
    }
  }
  check_timeouts();
}

std::string percentile_ms(std::vector<double> v, double p) {
  if (v.empty()) return "null";
  std::sort(v.begin(), v.end());
  const auto i = std::min(v.size() - 1, static_cast<std::size_t>(p * static_cast<double>(v.size())));
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3f", 1e3 * v[i]);
  return buf;
}

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const auto n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

int loadgen::report(const std::string& json, const std::string& human) {
  std::ostringstream errors;
  for (std::size_t i = 0; i < first_errors_.size(); ++i) {
    errors << (i ? "," : "") << '"' << json_escape(first_errors_[i]) << '"';
  }
  std::cout << "# " << human << "\n";
  if (verify_errors_ + other_errors_ > 0) {
    std::cout << "# " << verify_errors_ << " verification error(s), " << other_errors_ << " other failure(s)";
    if (!first_errors_.empty()) std::cout << "; first: " << first_errors_.front();
    std::cout << "\n";
  }
  std::cout << "RESULT {" << json << ",\"verify_errors\":" << verify_errors_ << ",\"other_errors\":" << other_errors_
            << ",\"errors\":[" << errors.str() << "]}" << std::endl;
  return verify_errors_ ? 1 : other_errors_ ? 4 : 0;
}

int loadgen::run_sessions() {
  if (opt_.sessions > 0) return run_counted_sessions();
  slots_.resize(static_cast<std::size_t>(opt_.clients));
  const double t0 = now();
  window_start_ = t0 + opt_.warmup;
  window_end_ = window_start_ + opt_.seconds;
  double cpu_start = cpu_seconds();
  bool in_window = false;
  for (std::size_t i = 0; i < slots_.size(); ++i) open(i);
  while (true) {
    const double t = now();
    if (!in_window && t >= window_start_) {
      in_window = true;
      cpu_start = cpu_seconds();
    }
    if (t >= window_end_ && active_ == 0) break;
    pump(t < window_end_ ? std::min(window_end_, t + 0.1) : t + 0.1);
    if (now() < window_end_) {
      for (std::size_t i = 0; i < slots_.size(); ++i) {
        if (slots_[i].fd < 0) open(i);
      }
    }
  }
  return session_report(cpu_seconds() - cpu_start, opt_.seconds);
}

// --sessions N: N sessions from the first connect on, no warm-up; the
// measured time is from then to the last close (for profiles: a known
// amount of work).
int loadgen::run_counted_sessions() {
  slots_.resize(static_cast<std::size_t>(std::min<long>(opt_.clients, opt_.sessions)));
  const double t0 = now();
  const double cpu_start = cpu_seconds();
  window_start_ = t0;
  window_end_ = 1e300;
  long started = 0;
  for (std::size_t i = 0; i < slots_.size(); ++i, ++started) open(i);
  while (active_ > 0) {
    pump(now() + 0.1);
    for (std::size_t i = 0; i < slots_.size() && started < opt_.sessions; ++i) {
      if (slots_[i].fd < 0) {
        open(i);
        ++started;
      }
    }
  }
  return session_report(cpu_seconds() - cpu_start, std::max(1e-6, now() - t0));
}

int loadgen::session_report(double cpu, double seconds) {
  const double rate = static_cast<double>(sessions_) / seconds;
  std::ostringstream json, human;
  json.setf(std::ios::fixed);
  json.precision(3);
  const char* name = opt_.kind == workload::full ? "full" : opt_.kind == workload::login ? "login" : "handshake";
  json << "\"workload\":\"" << name << "\",\"clients\":" << opt_.clients
       << ",\"seconds\":" << seconds << ",\"sessions\":" << sessions_ << ",\"rate\":" << rate
       << ",\"messages\":" << messages_ << ",\"octets\":" << octets_ << ",\"p50_ms\":" << percentile_ms(latencies_, 0.5)
       << ",\"p90_ms\":" << percentile_ms(latencies_, 0.9) << ",\"p99_ms\":" << percentile_ms(latencies_, 0.99)
       << ",\"max_ms\":" << percentile_ms(latencies_, 1.0) << ",\"pass_p50_ms\":" << percentile_ms(pass_times_, 0.5)
       << ",\"pass_p99_ms\":" << percentile_ms(pass_times_, 0.99) << ",\"client_cpu_s\":" << cpu << tls_json();
  human.setf(std::ios::fixed);
  human.precision(1);
  human << (opt_.kind == workload::full    ? "full sessions"
            : opt_.kind == workload::login ? "login+STAT sessions"
                                           : "greeting+QUIT sessions")
        << ", " << opt_.clients
        << " client(s), " << seconds << " s: " << sessions_ << " sessions = " << rate << "/s, latency p50 "
        << percentile_ms(latencies_, 0.5) << " ms, p90 " << percentile_ms(latencies_, 0.9) << " ms, p99 "
        << percentile_ms(latencies_, 0.99) << " ms (PASS alone: p50 " << percentile_ms(pass_times_, 0.5) << " ms, p99 "
        << percentile_ms(pass_times_, 0.99) << " ms); " << messages_ << " messages retrieved and verified; generator CPU "
        << 100 * cpu / seconds << "%" << tls_human();
  return report(json.str(), human.str());
}

int loadgen::run_retr() {
  slots_.resize(1);
  const double t0 = now();
  window_start_ = t0 + opt_.warmup;  // logging in and LIST fall in the warm-up
  window_end_ = window_start_ + opt_.seconds;
  open(0);
  double cpu_start = 0;
  bool in_window = false;
  while (active_ > 0) {
    if (!in_window && now() >= window_start_) {
      in_window = true;
      cpu_start = cpu_seconds();
    }
    pump(now() + 0.1);
  }
  const double cpu = cpu_seconds() - cpu_start;
  const double mbps = static_cast<double>(wire_octets_) / opt_.seconds / 1e6;
  std::ostringstream json, human;
  json.setf(std::ios::fixed);
  json.precision(3);
  json << "\"workload\":\"retr\",\"seconds\":" << opt_.seconds << ",\"messages\":" << messages_
       << ",\"octets\":" << octets_ << ",\"wire_octets\":" << wire_octets_ << ",\"mb_per_s\":" << mbps
       << ",\"client_cpu_s\":" << cpu << tls_json();
  human.setf(std::ios::fixed);
  human.precision(1);
  human << "RETR: " << messages_ << " message(s), " << static_cast<double>(wire_octets_) / 1e6 << " MB in "
        << opt_.seconds << " s = " << mbps << " MB/s (octets as sent, 10^6 per MB), sizes verified; generator CPU "
        << 100 * cpu / opt_.seconds << "%" << tls_human();
  if (messages_ == 0 && verify_errors_ + other_errors_ == 0) {
    fail(0, outcome::other, "no RETR completed within the measured window");
  }
  return report(json.str(), human.str());
}

int loadgen::run_bigdrop() {
  slots_.resize(1);
  for (int run = 0; run <= opt_.runs; ++run) {  // run 0 warms up: not counted
    const auto logins = login_times_.size();
    open(0);
    while (active_ > 0) pump(now() + 0.1);
    if (run == 0 && login_times_.size() > logins) {
      login_times_.pop_back();
      total_times_.pop_back();
    }
    if (verify_errors_ + other_errors_ > 0) break;
  }
  std::ostringstream json, human;
  json.setf(std::ios::fixed);
  json.precision(3);
  const auto count = slots_[0].count;
  json << "\"workload\":\"bigdrop\",\"runs\":" << total_times_.size() << ",\"messages\":" << count
       << ",\"login_ms\":" << 1e3 * median(login_times_) << ",\"total_ms\":" << 1e3 * median(total_times_)
       << ",\"total_min_ms\":" << percentile_ms(total_times_, 0) << ",\"total_max_ms\":" << percentile_ms(total_times_, 1);
  human.setf(std::ios::fixed);
  human.precision(1);
  human << "maildrop of " << count << " messages: login + STAT + UIDL " << 1e3 * median(total_times_)
        << " ms (login " << 1e3 * median(login_times_) << " ms), median of " << total_times_.size() << " runs";
  return report(json.str(), human.str());
}

int loadgen::run_idle() {
  const long target = opt_.steps.empty() ? 0 : opt_.steps.back();
  slots_.resize(static_cast<std::size_t>(target));
  std::size_t next = 0;
  long failed_before = 0;
  for (const long step_target : opt_.steps) {
    const double t0 = now();
    while (true) {
      // keep up to `clients` logins in flight
      const bool giving_up = verify_errors_ + other_errors_ >= opt_.give_up;
      while (!giving_up && static_cast<long>(next) < step_target && active_ - held_ < opt_.clients) open(next++);
      if (active_ == held_ && (giving_up || static_cast<long>(next) >= step_target)) break;
      pump(now() + 0.1);
    }
    const long failed = verify_errors_ + other_errors_ - failed_before;
    std::ostringstream json;
    json.setf(std::ios::fixed);
    json.precision(3);
    json << "\"target\":" << step_target << ",\"held\":" << held_ << ",\"failed\":" << failed
         << ",\"dropped\":" << dropped_ << ",\"gave_up\":"
         << (verify_errors_ + other_errors_ >= opt_.give_up ? "true" : "false") << ",\"seconds\":" << now() - t0;
    std::cout << "# holding " << held_ << " logged-in session(s) (" << step_target << " asked for, " << failed
              << " failed)" << "\n"
              << "HELD {" << json.str() << "}" << std::endl;
    std::string line;
    if (!std::getline(std::cin, line)) break;
  }
  if (!opt_.steps.empty() && std::cin) {
    std::string line;
    while (std::getline(std::cin, line)) {
    }
  }
  // QUIT on every held session; the server must still answer each.
  const long held = held_;
  window_end_ = 1e300;
  for (std::size_t i = 0; i < slots_.size(); ++i) {
    if (slots_[i].fd >= 0 && slots_[i].at == step::holding) {
      slots_[i].in.resize(4096);
      slots_[i].at = step::quit;
      --held_;
      send(i, "QUIT");
    }
  }
  while (active_ > 0) pump(now() + 0.1);
  std::ostringstream json;
  json << "\"workload\":\"idle\",\"target\":" << target << ",\"held\":" << held << ",\"quit_ok\":" << sessions_
       << ",\"dropped\":" << dropped_;
  return report(json.str(), "idle sessions: " + std::to_string(held) + " held of " + std::to_string(target) + ", " +
                                std::to_string(sessions_) + " ended with QUIT");
}

int loadgen::run() {
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  epoll_ = epoll_create1(EPOLL_CLOEXEC);
  if (epoll_ < 0) {
    std::perror("epoll_create1");
    return 4;
  }
  if (opt_.tls != tls_mode::none) {
    if (!make_tls_context()) {
      ERR_print_errors_fp(stderr);
      return 4;
    }
    const long slots = opt_.kind == workload::idle ? (opt_.steps.empty() ? 0 : opt_.steps.back())
                       : opt_.kind == workload::full || opt_.kind == workload::login || opt_.kind == workload::handshake
                           ? opt_.clients
                           : 1;
    tickets_.assign(static_cast<std::size_t>(slots), nullptr);
  }
  switch (opt_.kind) {
    case workload::full:
    case workload::login:
    case workload::handshake: return run_sessions();
    case workload::retr: return run_retr();
    case workload::bigdrop: return run_bigdrop();
    case workload::idle: return run_idle();
  }
  return 2;
}

void usage(std::ostream& out) {
  out << "usage: sdps-loadgen --port PORT --workload full|login|retr|bigdrop|idle|handshake [options]\n"
         "  --host ADDR            server address (127.0.0.1; an IPv6 one such as ::1 works too)\n"
         "  --user NAME:PASSWORD   a login (repeatable); or --users FILE, one 'NAME PASSWORD' a line (the password is the rest of it)\n"
         "  --clients N            concurrent sessions (full, login; logins in flight for idle) [1]\n"
         "  --seconds S            measured time (full, login, retr) [2]\n"
         "  --warmup S             unmeasured time before it (full, login, retr) [0.5]\n"
         "  --runs N               measured sessions (bigdrop), after one unmeasured [5]\n"
         "  --steps N[,N...]       idle: hold N sessions, report, wait for a stdin line, go on to the next N\n"
         "  --give-up N            idle: open no more sessions after N failed ones [100]\n"
         "  --expect-messages N    STAT must report N messages\n"
         "  --timeout S            longest wait for a reply [30]\n"
         "  --sources N            client n connects from 127.1.0.0 + 1 + (n mod N): N client addresses\n"
         "                         (per-address limits see N customers); IPv4 loopback only\n"
         "  --sessions N           full, login, handshake: exactly N sessions, no warm-up; timed from the\n"
         "                         first connect to the last close (for profiles)\n"
         "  --tls none|implicit|stls  TLS before the greeting (POP3S) or after STLS [none]\n"
         "  --resume on|off        TLS: each client offers the session (ticket) its last handshake gave it [off]\n"
         "  --tls-max 1.2|1.3      TLS: the highest version offered [1.3]\n"
         "  --ca FILE              TLS: verify the server's certificate against this CA [no verification]\n"
         "  --rotate on|off        each new session takes the next login of the list (full, login): with more\n"
         "                         logins than sessions none repeats, so a server's auth cache is always cold [off]\n"
         "Client n (session n for idle) uses login n modulo the number of logins given, unless --rotate.\n"
         "Exit: 0 verified, 1 a verification error, 2 bad options, 4 other failures (-ERR replies,\n"
         "refused connections, timeouts).\n";
}

std::optional<options> parse(int argc, char** argv) {
  options o;
  bool have_kind = false;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      usage(std::cout);
      std::exit(0);
    }
    if (i + 1 >= argc) {
      std::cerr << "sdps-loadgen: " << arg << " needs a value (or is unknown)\n";
      return std::nullopt;
    }
    const std::string value = argv[++i];
    auto number = [&](double lo) -> std::optional<double> {
      char* end = nullptr;
      const double v = std::strtod(value.c_str(), &end);
      if (value.empty() || *end != '\0' || !(v >= lo)) {
        std::cerr << "sdps-loadgen: " << arg << " takes a number >= " << lo << ", not '" << value << "'\n";
        return std::nullopt;
      }
      return v;
    };
    std::optional<double> v;
    if (arg == "--workload") {
      const std::pair<const char*, workload> kinds[] = {{"full", workload::full}, {"login", workload::login},
                                                        {"retr", workload::retr}, {"bigdrop", workload::bigdrop},
                                                        {"idle", workload::idle}, {"handshake", workload::handshake}};
      have_kind = false;
      for (const auto& [name, kind] : kinds) {
        if (value == name) {
          o.kind = kind;
          have_kind = true;
        }
      }
      if (!have_kind) {
        std::cerr << "sdps-loadgen: unknown workload '" << value << "'\n";
        return std::nullopt;
      }
    } else if (arg == "--host") {
      o.host = value;
      in6_addr a6{};
      in_addr a4{};
      if (inet_pton(AF_INET6, value.c_str(), &a6) != 1 && inet_pton(AF_INET, value.c_str(), &a4) != 1) {
        std::cerr << "sdps-loadgen: --host takes a numeric address, not '" << value << "'\n";
        return std::nullopt;
      }
    } else if (arg == "--port") {
      if (!(v = number(1)) || *v > 65535) return std::nullopt;
      o.port = static_cast<int>(*v);
    } else if (arg == "--user") {
      const auto colon = value.find(':');
      if (colon == std::string::npos || colon == 0) {
        std::cerr << "sdps-loadgen: --user takes NAME:PASSWORD\n";
        return std::nullopt;
      }
      o.users.emplace_back(value.substr(0, colon), value.substr(colon + 1));
    } else if (arg == "--users") {
      std::ifstream in(value);
      if (!in) {
        std::cerr << "sdps-loadgen: cannot read " << value << "\n";
        return std::nullopt;
      }
      std::string line;
      while (std::getline(in, line)) {  // NAME, one space, PASSWORD: the rest of the line
        if (!line.empty() && line.back() == '\r') line.pop_back();
        const auto sp = line.find(' ');
        if (line.empty()) continue;
        if (sp == std::string::npos || sp == 0) {
          std::cerr << "sdps-loadgen: " << value << ": a line is not 'NAME PASSWORD'\n";
          return std::nullopt;
        }
        o.users.emplace_back(line.substr(0, sp), line.substr(sp + 1));
      }
    } else if (arg == "--clients") {
      if (!(v = number(1))) return std::nullopt;
      o.clients = static_cast<int>(*v);
    } else if (arg == "--seconds") {
      if (!(v = number(0.01))) return std::nullopt;
      o.seconds = *v;
    } else if (arg == "--warmup") {
      if (!(v = number(0))) return std::nullopt;
      o.warmup = *v;
    } else if (arg == "--runs") {
      if (!(v = number(1))) return std::nullopt;
      o.runs = static_cast<int>(*v);
    } else if (arg == "--timeout") {
      if (!(v = number(0.1))) return std::nullopt;
      o.timeout = *v;
    } else if (arg == "--expect-messages") {
      if (!(v = number(0))) return std::nullopt;
      o.expect_messages = static_cast<long>(*v);
    } else if (arg == "--give-up") {
      if (!(v = number(1))) return std::nullopt;
      o.give_up = static_cast<long>(*v);
    } else if (arg == "--sources") {
      if (!(v = number(1)) || *v > 16777214) return std::nullopt;
      o.sources = static_cast<long>(*v);
    } else if (arg == "--sessions") {
      if (!(v = number(1))) return std::nullopt;
      o.sessions = static_cast<long>(*v);
    } else if (arg == "--tls") {
      if (value == "none") o.tls = tls_mode::none;
      else if (value == "implicit") o.tls = tls_mode::implicit;
      else if (value == "stls") o.tls = tls_mode::stls;
      else {
        std::cerr << "sdps-loadgen: --tls takes none, implicit or stls\n";
        return std::nullopt;
      }
    } else if (arg == "--rotate") {
      if (value != "on" && value != "off") {
        std::cerr << "sdps-loadgen: --rotate takes on or off\n";
        return std::nullopt;
      }
      o.rotate = value == "on";
    } else if (arg == "--resume") {
      if (value != "on" && value != "off") {
        std::cerr << "sdps-loadgen: --resume takes on or off\n";
        return std::nullopt;
      }
      o.resume = value == "on";
    } else if (arg == "--tls-max") {
      if (value != "1.2" && value != "1.3") {
        std::cerr << "sdps-loadgen: --tls-max takes 1.2 or 1.3\n";
        return std::nullopt;
      }
      o.tls_max = value == "1.2" ? TLS1_2_VERSION : TLS1_3_VERSION;
    } else if (arg == "--ca") {
      o.ca = value;
    } else if (arg == "--steps") {
      std::stringstream in(value);
      std::string item;
      while (std::getline(in, item, ',')) {
        const auto n = to_long(item);
        if (!n || *n < 1 || (!o.steps.empty() && *n <= o.steps.back())) {
          std::cerr << "sdps-loadgen: --steps takes increasing positive counts, e.g. 5000,10000\n";
          return std::nullopt;
        }
        o.steps.push_back(*n);
      }
    } else {
      std::cerr << "sdps-loadgen: unknown option " << arg << "\n";
      return std::nullopt;
    }
  }
  if (!have_kind || o.port == 0 || o.users.empty()) {
    std::cerr << "sdps-loadgen: --workload, --port and at least one --user (or --users) are required\n";
    return std::nullopt;
  }
  if (o.sources > 0 && (o.host.rfind("127.", 0) != 0)) {
    std::cerr << "sdps-loadgen: --sources needs an IPv4 loopback --host (127.x.y.z)\n";
    return std::nullopt;
  }
  if (o.kind == workload::idle && o.steps.empty()) {
    std::cerr << "sdps-loadgen: the idle workload needs --steps\n";
    return std::nullopt;
  }
  return o;
}

}  // namespace

int main(int argc, char** argv) {
  auto o = parse(argc, argv);
  if (!o) {
    usage(std::cerr);
    return 2;
  }
  loadgen g(std::move(*o));
  return g.run();
}
