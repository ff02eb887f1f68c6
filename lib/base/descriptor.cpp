#include "base/descriptor.hpp"

#include <unistd.h>

#include <cerrno>

namespace sdps::base {

void unique_fd::reset(int fd) noexcept {
  // close(2) is never retried: on Linux the descriptor is gone even when
  // it reports EINTR, and a retry could close one another thread opened.
  if (fd_ >= 0) ::close(fd_);
  fd_ = fd;
}

int unique_fd::close() noexcept {
  if (fd_ < 0) return 0;
  const int rc = ::close(release());
  return rc == 0 ? 0 : errno;
}

}  // namespace sdps::base
