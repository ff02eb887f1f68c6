// The switch to the config's user. Switching for real needs root: those
// cases run in a forked child (a process cannot switch back), and are
// skipped for other users.

#include "base/account.hpp"
#include "base/privileges.hpp"

#include <catch2/catch.hpp>

#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <functional>
#include <stdexcept>
#include <string>

using sdps::base::become_user;
using sdps::base::when_unprivileged;

#include <vector>

namespace {

/// Runs `body` in a child process and returns what it wrote to `out`
/// (one short line), or "(crashed)".
std::string in_child(const std::function<std::string()>& body) {
  int pipe_fds[2];
  REQUIRE(::pipe(pipe_fds) == 0);
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    ::close(pipe_fds[0]);
    std::string answer;
    try {
      answer = body();
    } catch (const std::exception& e) {
      answer = std::string("threw: ") + e.what();
    }
    [[maybe_unused]] const auto n = ::write(pipe_fds[1], answer.data(), answer.size());
    ::_exit(0);
  }
  ::close(pipe_fds[1]);
  std::string answer;
  char buffer[512];
  for (ssize_t n; (n = ::read(pipe_fds[0], buffer, sizeof buffer)) > 0;) answer.append(buffer, static_cast<std::size_t>(n));
  ::close(pipe_fds[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  return WIFEXITED(status) ? answer : "(crashed)";
}

std::string message_of(const std::function<void()>& body) {
  try {
    body();
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace

TEST_CASE("no user: nothing to do, whoever runs") {
  CHECK_FALSE(become_user("", when_unprivileged::refuse));
  CHECK_FALSE(become_user("", when_unprivileged::carry_on));
}

TEST_CASE("a user that does not exist is named as the config's") {
  if (::geteuid() != 0) {
    // Not root, an admin's run carries on without looking the user up.
    CHECK_FALSE(become_user("no-such-user-sdps", when_unprivileged::carry_on));
  }
  CHECK(message_of([] { become_user("no-such-user-sdps", when_unprivileged::refuse); }) ==
        "user 'no-such-user-sdps' (the config's 'user:') does not exist");
}

TEST_CASE("root becomes the user for good: groups, group, user, and no way back") {
  if (::geteuid() != 0) {
    WARN("needs root: not run");
    return;
  }
  const auto nobody = sdps::base::find_account("nobody");
  REQUIRE(nobody);
  const std::string answer = in_child([&] {
    if (!become_user("nobody", when_unprivileged::refuse)) return std::string("did not switch");
    gid_t groups[64];
    const int count = ::getgroups(64, groups);
    std::string out = std::to_string(::getuid()) + " " + std::to_string(::geteuid()) + " " +
                      std::to_string(::getgid()) + " " + std::to_string(::getegid());
    for (int i = 0; i < count; ++i)
      if (groups[i] == 0) out += " still in group 0";
    out += ::setuid(0) == 0 ? " setuid(0) works" : "";
    return out;
  });
  const std::string uid = std::to_string(nobody->uid), gid = std::to_string(nobody->gid);
  CHECK(answer == uid + " " + uid + " " + gid + " " + gid);
}

TEST_CASE("root staying root, and a process that already is the user, switch nothing") {
  if (::geteuid() != 0) {
    WARN("needs root: not run");
    return;
  }
  CHECK(in_child([] { return std::to_string(become_user("root", when_unprivileged::refuse)) +
                             std::to_string(::geteuid()); }) == "00");
  const auto nobody = sdps::base::find_account("nobody");
  REQUIRE(nobody);
  // A process that is not root (here: a child that made itself nobody).
  const auto as_nobody = [&](const std::function<std::string()>& body) {
    return in_child([&] {
      if (::setgid(nobody->gid) != 0 || ::setuid(nobody->uid) != 0) return std::string("setup failed");
      return body();
    });
  };
  CHECK(as_nobody([] { return std::to_string(become_user("nobody", when_unprivileged::refuse)); }) == "0");
  CHECK(as_nobody([] { return std::to_string(become_user("root", when_unprivileged::carry_on)); }) == "0");
  CHECK(as_nobody([] { return std::to_string(become_user("root", when_unprivileged::refuse)); }) ==
        "threw: cannot switch to user 'root': not running as root");
}

TEST_CASE("lines_as_user: the work runs in a child that became the user; its lines come back") {
  if (::geteuid() != 0) {
    WARN("needs root: not run");
    return;
  }
  const auto nobody = sdps::base::find_account("nobody");
  REQUIRE(nobody);
  int touched = 0;
  const auto lines = sdps::base::lines_as_user("nobody", [&touched] {
    ++touched;  // the child's copy: the caller never sees it
    return std::vector<std::string>{"uid " + std::to_string(::geteuid()), "two\nlines", ""};
  });
  CHECK(lines == std::vector<std::string>{"uid " + std::to_string(nobody->uid), "two lines", ""});
  CHECK(touched == 0);
  CHECK(::geteuid() == 0);
  // What the child could not do is one line saying so.
  CHECK(sdps::base::lines_as_user("no-such-user-sdps", [] { return std::vector<std::string>{"ran"}; }) ==
        std::vector<std::string>{"cannot check as user 'no-such-user-sdps': user 'no-such-user-sdps' (the config's "
                                 "'user:') does not exist"});
  CHECK(sdps::base::lines_as_user("nobody", []() -> std::vector<std::string> { throw std::runtime_error("boom"); }) ==
        std::vector<std::string>{"cannot check as user 'nobody': boom"});
}
