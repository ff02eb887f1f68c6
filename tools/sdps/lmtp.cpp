// sdps lmtp: an LMTP server (RFC 2033) for the MTA, beside `sdps deliver`.
// The same checks and the same storage as deliver, one reply per
// recipient. One thread per connection (each copy is fsynced, which
// blocks), at most --max-connections at once. docs/smtp.md explains the
// choice and the Postfix wiring.

#include "admin.hpp"

#include "smtp/client.hpp"
#include "smtp/connection.hpp"
#include "spoolstore/delivery.hpp"
#include "smtp/protocol.hpp"
#include "queue.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sysexits.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <charconv>
#include <condition_variable>
#include <cstring>
#include <iostream>
#include <mutex>
#include <thread>

namespace sdps::admin {

namespace {

const char* lmtp_usage =
    "usage: sdps -c FILE lmtp --listen ADDR:PORT [--listen ...] [--max-connections N] [--timeout DUR]\n"
    "Serves LMTP (RFC 2033) until SIGTERM or SIGINT: the MTA's way into the spool, one reply\n"
    "per recipient. Listens on numeric addresses only ([::1]:24 for IPv6).\n";

constexpr std::size_t max_command_line = 2048;
constexpr std::size_t max_data_piece = 8192;
constexpr std::size_t max_recipients = 1000;

int usage(const std::string& message) {
  std::cerr << "sdps: lmtp: " << message << "\n" << lmtp_usage;
  return EX_USAGE;
}

int stop_pipe[2] = {-1, -1};
extern "C" void on_stop_signal(int) {
  const char c = 1;
  [[maybe_unused]] auto n = ::write(stop_pipe[1], &c, 1);
}

/// An unlinked temporary file holding one DATA payload.
class spool_file {
 public:
  spool_file() {
    std::string path = (std::filesystem::temp_directory_path() / "sdps-lmtp-XXXXXX").string();
    fd_ = ::mkostemp(path.data(), O_CLOEXEC);
    if (fd_ < 0) throw std::runtime_error("temporary file: " + std::string(std::strerror(errno)));
    ::unlink(path.c_str());
  }
  ~spool_file() { ::close(fd_); }
  void write(std::string_view data) {
    while (!data.empty()) {
      const ssize_t n = ::write(fd_, data.data(), data.size());
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) throw std::runtime_error("temporary file: " + std::string(std::strerror(errno)));
      data.remove_prefix(static_cast<std::size_t>(n));
    }
  }
  /// A reader of `prefix` then the file's contents from the start.
  spoolstore::input_reader reader(std::string prefix) {
    auto offset = std::make_shared<off_t>(0);
    auto head = std::make_shared<std::string>(std::move(prefix));
    const int fd = fd_;
    return [fd, offset, head](std::span<char> buffer) -> std::size_t {
      if (!head->empty()) {
        const std::size_t n = head->copy(buffer.data(), buffer.size());
        head->erase(0, n);
        return n;
      }
      for (;;) {
        const ssize_t n = ::pread(fd, buffer.data(), buffer.size(), *offset);
        if (n >= 0) {
          *offset += n;
          return static_cast<std::size_t>(n);
        }
        if (errno != EINTR) throw std::runtime_error("temporary file: " + std::string(std::strerror(errno)));
      }
    };
  }

 private:
  int fd_ = -1;
};

struct server_settings {
  std::chrono::milliseconds timeout{std::chrono::minutes(5)};
  std::uint64_t max_message_size = 0;
};

/// One LMTP conversation, from greeting to QUIT or a dropped connection.
class lmtp_session {
 public:
  lmtp_session(const site& s, const server_settings& settings, smtp::connection c, logger& log)
      : site_(s), settings_(settings), c_(std::move(c)), log_(log), peer_(c_.peer()) {}

  void run() {
    try {
      reply("220 " + site_.server_name + " LMTP sdps ready");
      c_.flush();
      for (;;) {
        std::string line = c_.read_line(max_command_line);
        if (line.empty()) return;
        if (line.back() != '\n') {  // too long: skip the rest of it
          while (!line.empty() && line.back() != '\n') line = c_.read_line(max_command_line);
          reply("500 5.5.2 Line too long");
        } else if (!command(line)) {
          c_.flush();
          return;
        }
        if (c_.buffered() == 0) c_.flush();  // answer once a pipelined batch is read
      }
    } catch (const std::exception& e) {
      log_.info(peer_, ": ", e.what());
    }
  }

 private:
  void reply(const std::string& text) { c_.write(text + "\r\n"); }

  void reset() {
    from_.reset();
    to_.clear();
  }

  /// False when the session ends.
  bool command(const std::string& line) {
    const auto cmd = smtp::parse_command(line);
    if (cmd.verb == "LHLO") {
      if (cmd.argument.empty()) {
        reply("501 5.5.4 LHLO needs a name");
        return true;
      }
      greeted_ = true;
      reset();
      reply("250-" + site_.server_name);
      reply("250-PIPELINING");
      reply("250-ENHANCEDSTATUSCODES");
      reply("250-8BITMIME");
      reply("250-SMTPUTF8");
      reply("250 SIZE " + std::to_string(settings_.max_message_size));
    } else if (cmd.verb == "HELO" || cmd.verb == "EHLO") {
      reply("500 5.5.1 This is LMTP: say LHLO");
    } else if (cmd.verb == "MAIL") {
      mail(cmd.argument);
    } else if (cmd.verb == "RCPT") {
      rcpt(cmd.argument);
    } else if (cmd.verb == "DATA") {
      data();
    } else if (cmd.verb == "RSET") {
      reset();
      reply("250 2.0.0 Ok");
    } else if (cmd.verb == "NOOP") {
      reply("250 2.0.0 Ok");
    } else if (cmd.verb == "VRFY") {
      reply("252 2.5.0 Send some mail, I'll try my best");
    } else if (cmd.verb == "QUIT") {
      reply("221 2.0.0 Bye");
      return false;
    } else {
      reply("500 5.5.2 Command not recognised");
    }
    return true;
  }

  void mail(const std::string& argument) {
    if (!greeted_) return reply("503 5.5.1 Say LHLO first");
    if (from_) return reply("503 5.5.1 Nested MAIL command");
    const auto path = smtp::parse_path(argument, "FROM");
    if (!path) return reply("501 5.5.4 Syntax: MAIL FROM:<address>");
    for (const auto& [key, value] : path->params) {
      if (key == "SIZE") {
        std::uint64_t size = 0;
        if (std::from_chars(value.data(), value.data() + value.size(), size).ec != std::errc())
          return reply("501 5.5.4 Bad SIZE");
        if (size > settings_.max_message_size) return reply("552 5.3.4 Message too big for the spool");
      } else if (key != "BODY" && key != "SMTPUTF8") {
        return reply("555 5.5.4 Unsupported parameter " + printable(key, 40));
      }
    }
    if (!spoolstore::valid_address(path->address)) return reply("553 5.1.7 The sender address is not usable");
    from_ = path->address;
    reply("250 2.1.0 Ok");
  }

  void rcpt(const std::string& argument) {
    if (!from_) return reply("503 5.5.1 Need MAIL first");
    if (to_.size() >= max_recipients) return reply("452 4.5.3 Too many recipients");
    const auto path = smtp::parse_path(argument, "TO");
    if (!path || path->address.empty()) return reply("501 5.5.4 Syntax: RCPT TO:<address>");
    if (!path->params.empty()) return reply("555 5.5.4 Unsupported parameter " + printable(path->params[0].first, 40));
    const auto checked = check_customer_address(site_, path->address);
    if (checked.status == EX_TEMPFAIL) {
      log_.warning(peer_, ": <", printable(path->address, 100), ">: ", checked.error);
      return reply("451 4.3.0 Temporary failure, try again later");
    }
    if (checked.status != EX_OK) return reply("550 5.1.1 <" + printable(path->address, 100) + ">: " + checked.error);
    to_.push_back(checked.recipient);
    reply("250 2.1.5 Ok");
  }

  void data() {
    if (!from_) return reply("503 5.5.1 Need MAIL first");
    if (to_.empty()) return reply("503 5.5.1 Need RCPT first");
    reply("354 End data with <CR><LF>.<CR><LF>");
    c_.flush();

    std::optional<spool_file> file;
    std::string temp_error;
    try {
      file.emplace();
    } catch (const std::exception& e) {
      temp_error = e.what();
    }
    smtp::dot_unstuffer unstuffer;
    std::uint64_t size = 0;
    std::string out;
    for (;;) {  // the message is read to its end whatever happens, to stay in step
      const std::string piece = c_.read_line(max_data_piece);
      if (piece.empty()) throw smtp::network_error("connection lost during DATA");
      out.clear();
      if (unstuffer.feed(piece, out)) break;
      size += out.size();
      if (file && temp_error.empty() && size <= settings_.max_message_size) {
        try {
          file->write(out);
        } catch (const std::exception& e) {
          temp_error = e.what();
        }
      }
    }

    for (const auto& r : to_) {
      if (size > settings_.max_message_size) {
        reply("552 5.3.4 <" + r.address + ">: message too big for the spool");
      } else if (!temp_error.empty()) {
        log_.error(peer_, ": ", temp_error);
        reply("451 4.3.0 <" + r.address + ">: temporary failure, try again later");
      } else {
        store(*file, r);
      }
    }
    c_.flush();
    reset();
  }

  void store(spool_file& file, const spoolstore::recipient& r) {
    // A per-recipient Delivered-To: like Postfix's flags=D, so copies for
    // several users of one host differ (fetchmail multidrop keeps them).
    const std::string delivered_to = "Delivered-To: " + r.address + "\r\n";
    try {
      const auto copies = spoolstore::deliver(shuffled_punts(site_), *from_, {r}, file.reader(delivered_to), &log_);
      log_.info(peer_, ": from=<", printable(*from_, 100), "> to=<", printable(r.address, 100), "> stored ",
                copies.empty() ? std::string("?") : copies.front().uidl + " on " + copies.front().punt);
      reply("250 2.0.0 <" + r.address + "> " + (copies.empty() ? std::string() : copies.front().uidl) + " stored");
    } catch (const spoolstore::delivery_error& e) {
      log_.error(peer_, ": to=<", printable(r.address, 100), ">: ", e.what());
      reply("451 4.3.0 <" + r.address + ">: temporary failure, try again later");
    } catch (const std::invalid_argument& e) {
      reply("554 5.6.0 <" + r.address + ">: " + printable(e.what(), 100));
    }
  }

  const site& site_;
  const server_settings& settings_;
  smtp::connection c_;
  logger& log_;
  std::string peer_;
  bool greeted_ = false;
  std::optional<std::string> from_;
  std::vector<spoolstore::recipient> to_;
};

/// A bound, listening socket for a numeric ADDR:PORT; prints where.
int open_listener(const smtp::endpoint& e, std::string& error) {
  sockaddr_storage storage{};
  socklen_t length = 0;
  auto* v4 = reinterpret_cast<sockaddr_in*>(&storage);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&storage);
  if (inet_pton(AF_INET, e.address.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(e.port);
    length = sizeof *v4;
  } else if (inet_pton(AF_INET6, e.address.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(e.port);
    length = sizeof *v6;
  }
  const int fd = ::socket(storage.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    error = std::strerror(errno);
    return -1;
  }
  const int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (storage.ss_family == AF_INET6) ::setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&storage), length) < 0 || ::listen(fd, 64) < 0) {
    error = std::strerror(errno);
    ::close(fd);
    return -1;
  }
  return fd;
}

std::string local_name(int fd) {
  sockaddr_storage storage{};
  socklen_t length = sizeof storage;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&storage), &length);
  char text[INET6_ADDRSTRLEN] = "?";
  if (storage.ss_family == AF_INET) {
    const auto* v4 = reinterpret_cast<const sockaddr_in*>(&storage);
    inet_ntop(AF_INET, &v4->sin_addr, text, sizeof text);
    return std::string(text) + ":" + std::to_string(ntohs(v4->sin_port));
  }
  const auto* v6 = reinterpret_cast<const sockaddr_in6*>(&storage);
  inet_ntop(AF_INET6, &v6->sin6_addr, text, sizeof text);
  return "[" + std::string(text) + "]:" + std::to_string(ntohs(v6->sin6_port));
}

}  // namespace

int lmtp_main(const site& s, const std::vector<std::string>& args) {
  std::vector<smtp::endpoint> listen;
  server_settings settings;
  settings.max_message_size = s.max_message_size;
  std::size_t max_connections = 20;
  bool verbose = true;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    const bool has_value = i + 1 < args.size();
    if (a == "-h" || a == "--help") {
      std::cout << lmtp_usage;
      return EX_OK;
    } else if (a == "--listen") {
      if (!has_value) return usage("--listen needs ADDR:PORT");
      try {
        listen.push_back(smtp::endpoint::parse(args[++i], 0, true));
      } catch (const std::invalid_argument& e) {
        return usage(std::string("--listen ") + e.what());
      }
    } else if (a == "--max-connections") {
      std::size_t n = 0;
      if (!has_value || std::from_chars(args[i + 1].data(), args[i + 1].data() + args[i + 1].size(), n).ec !=
                            std::errc() || n == 0 || n > 1000)
        return usage("--max-connections needs 1 to 1000");
      max_connections = n;
      ++i;
    } else if (a == "--timeout") {
      const auto t = has_value ? parse_age(args[++i]) : std::nullopt;
      if (!t) return usage("--timeout needs a duration (30s, 5m)");
      settings.timeout = *t;
    } else if (a == "--quiet" || a == "-q") {
      verbose = false;
    } else {
      return usage("unknown argument '" + printable(a, 40) + "'");
    }
  }
  if (listen.empty()) return usage("--listen ADDR:PORT is required");
  if (s.punts.empty()) {
    std::cerr << "sdps: lmtp: " << s.config_file.string() << " names no punts\n";
    return EX_CONFIG;
  }

  command_logger log("lmtp", verbose);
  std::vector<int> listeners;
  for (const auto& e : listen) {
    std::string error;
    const int fd = open_listener(e, error);
    if (fd < 0) {
      log.error("cannot listen on ", e.to_string(), ": ", error);
      for (int l : listeners) ::close(l);
      return EX_UNAVAILABLE;
    }
    listeners.push_back(fd);
    log.info("listening on ", local_name(fd));
  }

  if (::pipe2(stop_pipe, O_CLOEXEC) < 0) return EX_OSERR;
  struct sigaction action {};
  action.sa_handler = on_stop_signal;
  ::sigaction(SIGTERM, &action, nullptr);
  ::sigaction(SIGINT, &action, nullptr);
  ::signal(SIGPIPE, SIG_IGN);

  std::mutex mutex;
  std::condition_variable idle;
  std::size_t active = 0;
  std::vector<pollfd> polls;
  for (int fd : listeners) polls.push_back({fd, POLLIN, 0});
  polls.push_back({stop_pipe[0], POLLIN, 0});
  for (;;) {
    if (::poll(polls.data(), polls.size(), -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (polls.back().revents) break;
    for (std::size_t i = 0; i + 1 < polls.size(); ++i) {
      if (!(polls[i].revents & POLLIN)) continue;
      const int fd = ::accept4(polls[i].fd, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) continue;
      smtp::connection c(fd, settings.timeout);
      {
        std::lock_guard guard(mutex);
        if (active >= max_connections) {
          try {
            c.write("421 4.3.2 Too many connections, try again later\r\n");
            c.flush();
          } catch (...) {
          }
          continue;
        }
        ++active;
      }
      std::thread([&, c = std::move(c)]() mutable {
        lmtp_session(s, settings, std::move(c), log).run();
        std::lock_guard guard(mutex);
        --active;
        idle.notify_all();
      }).detach();
    }
  }
  for (int fd : listeners) ::close(fd);
  log.info("stopping");
  std::unique_lock lock(mutex);
  // Sessions in DATA finish their message; the MTA retries what is cut off.
  if (!idle.wait_for(lock, settings.timeout, [&] { return active == 0; })) {
    log.warning(active, " session(s) still open; leaving");
    std::cerr.flush();
    ::_exit(EX_OK);  // sessions still hold references to this frame
  }
  return EX_OK;
}

}  // namespace sdps::admin
