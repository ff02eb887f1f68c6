// sdps-bound: the least a POP3 server must do to serve sdps's spool, as a
// yardstick for the benchmarks (bench/README.md). It is not a server to
// run: any password is accepted, nothing is logged, nothing is deleted.
//
//   sdps-bound --port P --punt DIR [--punt DIR...] [--threads N]
//
// What it does per session is what sdpsd must do too, with nothing else:
// the maildrop lock on every punt and one directory pass per punt (the
// spool library's lock_maildrop and list_messages), then, per command, one
// recv and one send; RETR opens, reads and closes the message file
// (message_file) and byte-stuffs it. One epoll loop per thread, each with
// its own SO_REUSEPORT listener, as sdpsd's `threads:`. The load generator
// measures it as it measures sdpsd and Dovecot: the gap between it and
// sdpsd is what sdpsd's modules, coroutines and checks cost.

#include "spoolstore/store.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace {

namespace spool = sdps::spoolstore;

struct message {
  std::size_t punt;
  std::int64_t arrival;
  std::string file;
  std::string uidl;
  std::uint64_t size;
};

struct session {
  int fd;
  std::string in, out;
  std::string user;
  std::vector<std::unique_ptr<spool::maildrop_lock>> locks;
  std::vector<message> drop;
  bool logged_in = false, closing = false, want_out = false;
};

std::vector<std::filesystem::path> punts;

void append_stuffed(std::string& out, std::string_view text) {
  bool line_start = true;
  for (std::size_t i = 0; i < text.size();) {
    if (line_start && text[i] == '.') out += '.';
    const std::size_t nl = text.find('\n', i);
    const std::size_t end = nl == std::string_view::npos ? text.size() : nl + 1;
    out.append(text.substr(i, end - i));
    line_start = nl != std::string_view::npos;
    i = end;
  }
  if (!text.empty() && text.back() != '\n') out += "\r\n";
}

bool login(session& s) {
  for (const auto& root : punts) {
    auto attempt = spool::lock_maildrop(root, s.user, "");
    if (attempt.result != spool::lock_attempt::outcome::acquired) return false;
    s.locks.push_back(std::move(attempt.lock));
  }
  for (std::size_t p = 0; p < punts.size(); ++p) {
    const spool::listing l = spool::list_messages(punts[p], s.user, "", nullptr);
    for (std::size_t i = 0; i < l.size(); ++i)
      s.drop.push_back({p, l.messages[i].arrival, std::string(l.file(i)), std::string(l.uidl(i)), l.messages[i].size});
  }
  std::stable_sort(s.drop.begin(), s.drop.end(), [](const message& a, const message& b) { return a.arrival < b.arrival; });
  return true;
}

std::size_t number(std::string_view arg, const session& s) {
  std::size_t n = 0;
  const auto [p, ec] = std::from_chars(arg.data(), arg.data() + arg.size(), n);
  return ec == std::errc() && n >= 1 && n <= s.drop.size() ? n : 0;
}

void command(session& s, std::string_view line) {
  const std::string_view verb = line.substr(0, line.find(' '));
  const std::string_view arg = line.size() > verb.size() ? line.substr(verb.size() + 1) : std::string_view();
  std::string& out = s.out;
  if (verb == "USER") {
    s.user = arg;
    out += "+OK\r\n";
  } else if (verb == "PASS") {
    if (login(s)) {
      s.logged_in = true;
      out += "+OK\r\n";
    } else {
      out += "-ERR [IN-USE] locked\r\n";
      s.locks.clear();
    }
  } else if (verb == "QUIT") {
    // Unlocked before the reply goes out, as sdpsd does: the client may
    // log in again as soon as it reads it.
    s.locks.clear();
    out += "+OK bye\r\n";
    s.closing = true;
  } else if (!s.logged_in) {
    out += "-ERR log in first\r\n";
  } else if (verb == "STAT") {
    std::uint64_t total = 0;
    for (const auto& m : s.drop) total += m.size;
    out += "+OK " + std::to_string(s.drop.size()) + " " + std::to_string(total) + "\r\n";
  } else if (verb == "UIDL" || verb == "LIST") {
    out += "+OK\r\n";
    for (std::size_t i = 0; i < s.drop.size(); ++i)
      out += std::to_string(i + 1) + " " + (verb == "UIDL" ? s.drop[i].uidl : std::to_string(s.drop[i].size)) + "\r\n";
    out += ".\r\n";
  } else if (verb == "RETR") {
    const std::size_t n = number(arg, s);
    if (!n) {
      out += "-ERR no such message\r\n";
      return;
    }
    const message& m = s.drop[n - 1];
    const auto file = spool::message_file::open(spool::host_dir(punts[m.punt], s.user) / m.file);
    if (!file) {
      out += "-ERR gone\r\n";
      return;
    }
    std::string body(file->retr_size(), '\0');
    std::size_t got = 0;
    while (got < body.size()) {
      const std::size_t k = file->read(std::span<char>(body.data() + got, body.size() - got));
      if (k == 0) break;
      got += k;
    }
    body.resize(got);
    out += "+OK " + std::to_string(got) + " octets\r\n";
    append_stuffed(out, body);
    out += ".\r\n";
  } else {
    out += "-ERR unknown command\r\n";
  }
}

// Sends what is queued; false when the session is over.
bool flush(int ep, session& s) {
  while (!s.out.empty()) {
    const ssize_t n = ::send(s.fd, s.out.data(), s.out.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) {
      if (!s.want_out) {
        epoll_event ev{EPOLLIN | EPOLLOUT | EPOLLET, {.ptr = &s}};
        ::epoll_ctl(ep, EPOLL_CTL_MOD, s.fd, &ev);
        s.want_out = true;
      }
      return true;
    }
    if (n < 0) return false;
    s.out.erase(0, static_cast<std::size_t>(n));
  }
  return !s.closing;
}

void serve(int port) {
  const int lfd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  const int one = 1;
  ::setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  ::setsockopt(lfd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<std::uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(lfd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(lfd, 1024) != 0) {
    std::perror("sdps-bound: bind/listen");
    std::exit(1);
  }
  const int ep = ::epoll_create1(EPOLL_CLOEXEC);
  epoll_event lev{EPOLLIN, {.ptr = nullptr}};
  ::epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &lev);
  std::array<epoll_event, 128> events;
  std::array<char, 16384> buffer;
  for (;;) {
    const int n = ::epoll_wait(ep, events.data(), static_cast<int>(events.size()), -1);
    for (int i = 0; i < n; ++i) {
      if (!events[i].data.ptr) {
        for (;;) {
          const int fd = ::accept4(lfd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
          if (fd < 0) break;
          ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
          auto* s = new session{fd, {}, "+OK sdps-bound ready\r\n", {}, {}, {}};
          epoll_event ev{EPOLLIN | EPOLLET, {.ptr = s}};
          ::epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
          flush(ep, *s);
        }
        continue;
      }
      auto* s = static_cast<session*>(events[i].data.ptr);
      bool alive = true;
      for (;;) {
        const ssize_t got = ::recv(s->fd, buffer.data(), buffer.size(), 0);
        if (got > 0) {
          s->in.append(buffer.data(), static_cast<std::size_t>(got));
          continue;
        }
        if (got < 0 && errno == EAGAIN) break;
        if (got < 0 && errno == EINTR) continue;
        alive = false;
        break;
      }
      std::size_t start = 0;
      for (std::size_t nl; alive && !s->closing && (nl = s->in.find('\n', start)) != std::string::npos; start = nl + 1) {
        std::string_view line(s->in.data() + start, nl - start);
        if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
        command(*s, line);
      }
      s->in.erase(0, start);
      if (alive) alive = flush(ep, *s);
      if (!alive) {
        ::close(s->fd);
        delete s;
      }
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  int port = 0;
  unsigned threads = std::max(1u, std::thread::hardware_concurrency());
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string_view opt = argv[i];
    if (opt == "--port") port = std::atoi(argv[i + 1]);
    else if (opt == "--punt") punts.emplace_back(argv[i + 1]);
    else if (opt == "--threads") threads = static_cast<unsigned>(std::atoi(argv[i + 1]));
    else {
      std::fprintf(stderr, "usage: sdps-bound --port P --punt DIR [--punt DIR...] [--threads N]\n");
      return 2;
    }
  }
  if (port <= 0 || punts.empty() || threads < 1) {
    std::fprintf(stderr, "usage: sdps-bound --port P --punt DIR [--punt DIR...] [--threads N]\n");
    return 2;
  }
  std::vector<std::thread> pool;
  for (unsigned t = 1; t < threads; ++t) pool.emplace_back(serve, port);
  serve(port);
}
