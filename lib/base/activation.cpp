#include "base/activation.hpp"

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cstdlib>
#include <stdexcept>
#include <string_view>

namespace sdps::base {

namespace {

/// sd_listen_fds' first descriptor.
constexpr int first_fd = 3;

bool parse_number(const char* text, long& out) {
  if (!text || !*text) return false;
  const std::string_view view(text);
  const auto result = std::from_chars(view.data(), view.data() + view.size(), out);
  return result.ec == std::errc() && result.ptr == view.data() + view.size();
}

}  // namespace

std::vector<activated_socket> take_activated_sockets() {
  const char* pid_text = std::getenv("LISTEN_PID");
  const char* count_text = std::getenv("LISTEN_FDS");
  const char* names_text = std::getenv("LISTEN_FDNAMES");
  const std::string names = names_text ? names_text : "";
  long pid = 0, count = 0;
  const bool ours = parse_number(pid_text, pid) && pid == static_cast<long>(::getpid());
  const bool counted = parse_number(count_text, count);
  ::unsetenv("LISTEN_PID");
  ::unsetenv("LISTEN_FDS");
  ::unsetenv("LISTEN_FDNAMES");
  if (!pid_text || !ours) return {};  // not for us (a parent's, inherited)
  if (!counted || count < 0 || count > 1024)
    throw std::runtime_error("socket activation: LISTEN_FDS is '" + std::string(count_text ? count_text : "") +
                             "', not a number of descriptors");
  std::vector<std::string> named;
  for (std::size_t at = 0; !names.empty() && at <= names.size();) {
    const auto colon = std::min(names.find(':', at), names.size());
    named.push_back(names.substr(at, colon - at));
    at = colon + 1;
  }
  std::vector<activated_socket> out;
  for (int fd = first_fd; fd < first_fd + count; ++fd) {
    activated_socket s;
    s.fd = fd;
    if (static_cast<std::size_t>(fd - first_fd) < named.size()) s.name = named[static_cast<std::size_t>(fd - first_fd)];
    const int flags = ::fcntl(fd, F_GETFD);
    if (flags < 0) throw std::runtime_error("socket activation: descriptor " + std::to_string(fd) + " is not open");
    ::fcntl(fd, F_SETFD, flags | FD_CLOEXEC);
    int type = 0, listening = 0;
    socklen_t size = sizeof type;
    if (::getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &size) != 0 || type != SOCK_STREAM)
      throw std::runtime_error("socket activation: descriptor " + std::to_string(fd) + " is not a stream socket");
    size = sizeof listening;
    if (::getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &size) != 0 || !listening)
      throw std::runtime_error("socket activation: descriptor " + std::to_string(fd) +
                               " is not listening (the .socket unit needs Accept=no)");
    out.push_back(std::move(s));
  }
  return out;
}

}  // namespace sdps::base
