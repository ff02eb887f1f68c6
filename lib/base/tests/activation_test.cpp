// Socket activation as sd_listen_fds(3) defines it, on descriptor 3.

#include "base/activation.hpp"

#include <catch2/catch.hpp>

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <fcntl.h>

using sdps::base::take_activated_sockets;

namespace {

/// Puts a socket on descriptor 3 for the test (what was there is kept
/// aside and put back).
struct on_fd3 {
  explicit on_fd3(bool listening) {
    saved = ::dup(3);
    const int s = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    if (listening) REQUIRE(::listen(s, 1) == 0);
    if (s != 3) {  // descriptor 3 was free: the socket may have got it
      REQUIRE(::dup2(s, 3) == 3);
      ::close(s);
    }
  }
  ~on_fd3() {
    ::close(3);
    if (saved >= 0) {
      ::dup2(saved, 3);
      ::close(saved);
    }
  }
  int saved = -1;
};

void environment(const std::string& pid, const char* fds, const char* names) {
  ::setenv("LISTEN_PID", pid.c_str(), 1);
  ::setenv("LISTEN_FDS", fds, 1);
  if (names)
    ::setenv("LISTEN_FDNAMES", names, 1);
  else
    ::unsetenv("LISTEN_FDNAMES");
}

}  // namespace

TEST_CASE("activation: the sockets of this process, named, and the variables gone") {
  on_fd3 socket(true);
  environment(std::to_string(::getpid()), "1", "lmtp");
  const auto found = take_activated_sockets();
  REQUIRE(found.size() == 1);
  CHECK(found[0].fd == 3);
  CHECK(found[0].name == "lmtp");
  CHECK((::fcntl(3, F_GETFD) & FD_CLOEXEC) != 0);
  CHECK(std::getenv("LISTEN_PID") == nullptr);
  CHECK(std::getenv("LISTEN_FDS") == nullptr);
  CHECK(std::getenv("LISTEN_FDNAMES") == nullptr);
  CHECK(take_activated_sockets().empty());  // taken once
}

TEST_CASE("activation: another process's variables are not ours; bad ones are refused") {
  on_fd3 socket(false);
  environment(std::to_string(::getpid() + 1), "1", nullptr);
  CHECK(take_activated_sockets().empty());
  CHECK(std::getenv("LISTEN_FDS") == nullptr);
  ::unsetenv("LISTEN_PID");
  CHECK(take_activated_sockets().empty());
  environment(std::to_string(::getpid()), "x", nullptr);
  CHECK_THROWS_WITH(take_activated_sockets(), Catch::Contains("LISTEN_FDS"));
  environment(std::to_string(::getpid()), "1", nullptr);
  CHECK_THROWS_WITH(take_activated_sockets(), Catch::Contains("not listening"));
}
