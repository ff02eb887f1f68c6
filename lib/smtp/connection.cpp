#include "smtp/connection.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>

namespace sdps::smtp {

namespace {

std::string os_error(const std::string& what, int code) { return what + ": " + std::strerror(code); }

/// Fills `storage` from a numeric endpoint; false if the address is not numeric.
bool to_sockaddr(const endpoint& e, sockaddr_storage& storage, socklen_t& length) {
  std::memset(&storage, 0, sizeof storage);
  auto* v4 = reinterpret_cast<sockaddr_in*>(&storage);
  if (inet_pton(AF_INET, e.address.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(e.port);
    length = sizeof(sockaddr_in);
    return true;
  }
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&storage);
  if (inet_pton(AF_INET6, e.address.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(e.port);
    length = sizeof(sockaddr_in6);
    return true;
  }
  return false;
}

}  // namespace

std::string endpoint::to_string() const {
  return (address.find(':') != std::string::npos ? "[" + address + "]" : address) + ":" + std::to_string(port);
}

endpoint endpoint::parse(std::string_view text, std::uint16_t default_port, bool for_listening) {
  endpoint e;
  std::string_view port_text;
  if (!text.empty() && text.front() == '[') {
    const auto close = text.find(']');
    if (close == std::string_view::npos) throw std::invalid_argument("'" + std::string(text) + "': missing ']'");
    e.address = std::string(text.substr(1, close - 1));
    const auto rest = text.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') throw std::invalid_argument("'" + std::string(text) + "': expected ':' after ']'");
      port_text = rest.substr(1);
    }
  } else {
    const auto colon = text.rfind(':');
    if (colon != std::string_view::npos && text.find(':') == colon) {
      e.address = std::string(text.substr(0, colon));
      port_text = text.substr(colon + 1);
    } else {
      e.address = std::string(text);  // bare IPv4, or bare IPv6 without a port
    }
  }
  if (port_text.empty()) {
    if (default_port == 0) throw std::invalid_argument("'" + std::string(text) + "': a port is required (ADDR:PORT)");
    e.port = default_port;
  } else {
    unsigned value = 0;
    const auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), value);
    if (ec != std::errc() || end != port_text.data() + port_text.size() || (value == 0 && !for_listening) || value > 65535)
      throw std::invalid_argument("'" + std::string(text) + "': bad port");
    e.port = static_cast<std::uint16_t>(value);
  }
  sockaddr_storage storage;
  socklen_t length = 0;
  if (!to_sockaddr(e, storage, length))
    throw std::invalid_argument("'" + std::string(text) + "' is not a numeric address (ADDR:PORT or [ADDR]:PORT)");
  return e;
}

connection::connection(int fd, std::chrono::milliseconds timeout) : fd_(fd), timeout_(timeout) {
  const int flags = ::fcntl(fd_, F_GETFL);
  if (flags >= 0) ::fcntl(fd_, F_SETFL, flags | O_NONBLOCK);
  const int one = 1;
  ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);  // fails harmlessly on non-TCP
}

connection connection::open(const endpoint& to, std::chrono::milliseconds timeout) {
  sockaddr_storage storage;
  socklen_t length = 0;
  if (!to_sockaddr(to, storage, length)) throw network_error(to.address + " is not a numeric address");
  const int fd = ::socket(storage.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) throw network_error(os_error("socket", errno));
  connection c(fd, timeout);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&storage), length) < 0) {
    if (errno != EINPROGRESS) throw network_error(os_error("connect to " + to.to_string(), errno));
    try {
      c.wait(POLLOUT);
    } catch (const network_error&) {
      throw network_error("connect to " + to.to_string() + ": timed out");
    }
    int error = 0;
    socklen_t size = sizeof error;
    if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &size) < 0) error = errno;
    if (error != 0) throw network_error(os_error("connect to " + to.to_string(), error));
  }
  return c;
}

connection::~connection() {
  if (fd_ >= 0) ::close(fd_);
}

connection::connection(connection&& other) noexcept
    : fd_(other.fd_), timeout_(other.timeout_), in_(std::move(other.in_)), in_pos_(other.in_pos_),
      out_(std::move(other.out_)) {
  other.fd_ = -1;
}

void connection::wait(short events) {
  pollfd p{fd_, events, 0};
  for (;;) {
    const int n = ::poll(&p, 1, static_cast<int>(timeout_.count()));
    if (n > 0) return;
    if (n == 0) throw network_error("no answer within " + std::to_string(timeout_.count() / 1000) + "s");
    if (errno != EINTR) throw network_error(os_error("poll", errno));
  }
}

bool connection::fill() {
  if (in_pos_ > 0) {
    in_.erase(0, in_pos_);
    in_pos_ = 0;
  }
  char buffer[16384];
  for (;;) {
    const ssize_t n = ::recv(fd_, buffer, sizeof buffer, 0);
    if (n > 0) {
      in_.append(buffer, static_cast<std::size_t>(n));
      return true;
    }
    if (n == 0) return false;
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      wait(POLLIN);
      continue;
    }
    throw network_error(os_error("receive", errno));
  }
}

std::string connection::read_line(std::size_t max) {
  for (;;) {
    const std::string_view pending(in_.data() + in_pos_, in_.size() - in_pos_);
    const auto lf = pending.substr(0, max).find('\n');
    if (lf != std::string_view::npos || pending.size() >= max) {
      const std::size_t take = lf != std::string_view::npos ? lf + 1 : max;
      std::string line(pending.substr(0, take));
      in_pos_ += take;
      return line;
    }
    if (!fill()) {
      std::string rest(pending);
      in_pos_ = in_.size();
      return rest;
    }
  }
}

void connection::write(std::string_view data) {
  out_.append(data);
  if (out_.size() >= 65536) flush();
}

void connection::flush() {
  std::size_t sent = 0;
  while (sent < out_.size()) {
    const ssize_t n = ::send(fd_, out_.data() + sent, out_.size() - sent, MSG_NOSIGNAL);
    if (n > 0) {
      sent += static_cast<std::size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      wait(POLLOUT);
      continue;
    }
    out_.clear();
    throw network_error(os_error("send", n < 0 ? errno : EPIPE));
  }
  out_.clear();
}

std::string connection::peer() const {
  sockaddr_storage storage;
  socklen_t length = sizeof storage;
  if (::getpeername(fd_, reinterpret_cast<sockaddr*>(&storage), &length) < 0) return "?";
  char text[INET6_ADDRSTRLEN] = "?";
  if (storage.ss_family == AF_INET) {
    const auto* v4 = reinterpret_cast<const sockaddr_in*>(&storage);
    inet_ntop(AF_INET, &v4->sin_addr, text, sizeof text);
    return std::string(text) + ":" + std::to_string(ntohs(v4->sin_port));
  }
  if (storage.ss_family == AF_INET6) {
    const auto* v6 = reinterpret_cast<const sockaddr_in6*>(&storage);
    inet_ntop(AF_INET6, &v6->sin6_addr, text, sizeof text);
    return "[" + std::string(text) + "]:" + std::to_string(ntohs(v6->sin6_port));
  }
  return "local";
}

}  // namespace sdps::smtp
