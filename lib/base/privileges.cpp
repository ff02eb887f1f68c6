#include "base/privileges.hpp"

#include "base/account.hpp"

#include <fcntl.h>
#include <grp.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <string_view>

namespace sdps::base {

bool become_user(const std::string& user, when_unprivileged when_not_root) {
  if (user.empty()) return false;
  const bool root = ::geteuid() == 0;
  if (!root && when_not_root == when_unprivileged::carry_on) return false;
  const auto who = find_account(user);
  if (!who) throw std::runtime_error("user '" + user + "' (the config's 'user:') does not exist");
  if (!root) {
    if (::geteuid() == who->uid) return false;
    throw std::runtime_error("cannot switch to user '" + user + "': not running as root");
  }
  if (who->uid == 0) return false;
  if (::initgroups(who->name.c_str(), who->gid) != 0 || ::setgid(who->gid) != 0 || ::setuid(who->uid) != 0) {
    const int code = errno;
    throw std::runtime_error("cannot switch to user '" + user + "': " + std::strerror(code));
  }
  // A saved set-user-ID left at 0 (a setuid that changed only the
  // effective ID) would let the process become root again.
  if (::setuid(0) == 0) throw std::runtime_error("privileges were not dropped: setuid(0) still works");
  if (::setgid(0) == 0) throw std::runtime_error("privileges were not dropped: setgid(0) still works");
  return true;
}

std::vector<std::string> lines_as_user(const std::string& user,
                                       const std::function<std::vector<std::string>()>& work) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0)
    throw std::runtime_error(std::string("cannot make a pipe: ") + std::strerror(errno));
  const pid_t pid = ::fork();
  if (pid < 0) {
    const int code = errno;
    ::close(fds[0]);
    ::close(fds[1]);
    throw std::runtime_error(std::string("cannot start a process to check as user '") + user + "': " +
                             std::strerror(code));
  }
  if (pid == 0) {
    // The child: one thread (the caller's), a copy of the memory. It
    // writes its lines and leaves without running any destructor or exit
    // handler of the parent's objects.
    ::close(fds[0]);
    std::string out;
    try {
      become_user(user, when_unprivileged::refuse);
      for (std::string line : work()) {
        for (char& c : line)
          if (c == '\n') c = ' ';
        out += line;
        out += '\n';
      }
    } catch (const std::exception& e) {
      out = "cannot check as user '" + user + "': " + e.what() + "\n";
    }
    std::string_view rest = out;
    while (!rest.empty()) {
      const ssize_t n = ::write(fds[1], rest.data(), rest.size());
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) ::_exit(3);
      rest.remove_prefix(static_cast<std::size_t>(n));
    }
    ::_exit(0);
  }
  ::close(fds[1]);
  std::string text;
  char buffer[4096];
  for (;;) {
    const ssize_t n = ::read(fds[0], buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    text.append(buffer, static_cast<std::size_t>(n));
  }
  ::close(fds[0]);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    throw std::runtime_error("the check as user '" + user + "' did not finish (" +
                             (WIFSIGNALED(status) ? std::string("signal ") + std::to_string(WTERMSIG(status))
                                                  : std::string("status ") + std::to_string(WEXITSTATUS(status))) +
                             ")");
  std::vector<std::string> lines;
  std::size_t start = 0;
  for (std::size_t end; (end = text.find('\n', start)) != std::string::npos; start = end + 1)
    lines.push_back(text.substr(start, end - start));
  return lines;
}

}  // namespace sdps::base
