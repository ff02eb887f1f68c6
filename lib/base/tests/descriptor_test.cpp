// Owned file descriptors: closed exactly once, by their last owner.

#include "base/descriptor.hpp"

#include <catch2/catch.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <vector>

using sdps::base::unique_fd;

namespace {

bool is_open(int fd) { return ::fcntl(fd, F_GETFD) != -1 || errno != EBADF; }

int open_null() {
  const int fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  REQUIRE(fd >= 0);
  return fd;
}

}  // namespace

TEST_CASE("a unique_fd closes its descriptor when it goes") {
  int raw = -1;
  {
    const unique_fd fd(open_null());
    raw = fd.get();
    CHECK(fd.valid());
    CHECK(is_open(raw));
  }
  CHECK_FALSE(is_open(raw));
  const unique_fd none;
  CHECK_FALSE(none.valid());
  CHECK(none.get() == -1);
}

TEST_CASE("release hands the descriptor over unclosed; reset closes the old one") {
  unique_fd fd(open_null());
  const int raw = fd.release();
  CHECK_FALSE(fd.valid());
  CHECK(is_open(raw));
  fd.reset(raw);
  CHECK(fd.get() == raw);
  const int other = open_null();
  fd.reset(other);
  CHECK_FALSE(is_open(raw));
  CHECK(is_open(other));
  fd.reset();
  CHECK_FALSE(is_open(other));
}

TEST_CASE("moving hands ownership over: one close, by the last owner") {
  unique_fd first(open_null());
  const int raw = first.get();
  unique_fd second(std::move(first));
  CHECK_FALSE(first.valid());
  CHECK(second.get() == raw);
  unique_fd third(open_null());
  const int replaced = third.get();
  third = std::move(second);
  CHECK_FALSE(is_open(replaced));
  CHECK(third.get() == raw);
  std::vector<unique_fd> held;
  held.push_back(std::move(third));
  held.resize(100);  // reallocation moves, never closes
  CHECK(is_open(raw));
  held.clear();
  CHECK_FALSE(is_open(raw));
}

TEST_CASE("close says how closing went and leaves nothing owned") {
  unique_fd fd(open_null());
  const int raw = fd.get();
  CHECK(fd.close() == 0);
  CHECK_FALSE(fd.valid());
  CHECK_FALSE(is_open(raw));
  CHECK(fd.close() == 0);  // nothing left to close
}
