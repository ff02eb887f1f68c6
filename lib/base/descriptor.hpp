#pragma once
/// @file
/// An owned file descriptor: closed once, by whoever owns it last.

#include <utility>

namespace sdps::base {

/// Owns one open file descriptor (a file, a folder, a socket, a lock file)
/// and closes it when destroyed, unless released first. Move-only: one
/// owner at a time. -1 means none.
class unique_fd {
 public:
  unique_fd() noexcept = default;
  /// Takes ownership of `fd` (-1: none).
  explicit unique_fd(int fd) noexcept : fd_(fd) {}
  unique_fd(unique_fd&& other) noexcept : fd_(other.release()) {}
  unique_fd& operator=(unique_fd&& other) noexcept {
    if (this != &other) reset(other.release());
    return *this;
  }
  unique_fd(const unique_fd&) = delete;
  unique_fd& operator=(const unique_fd&) = delete;
  ~unique_fd() { reset(); }

  /// The descriptor, still owned; -1 if none.
  int get() const noexcept { return fd_; }
  bool valid() const noexcept { return fd_ >= 0; }
  /// Gives the descriptor up without closing it; the caller owns it now.
  int release() noexcept { return std::exchange(fd_, -1); }
  /// Closes the descriptor held, if any, and owns `fd` instead.
  void reset(int fd = -1) noexcept;
  /// Closes the descriptor now and says how that went: 0, or the errno of
  /// close(2) (a write's error that only close reports, on some file
  /// systems). Owns nothing afterwards, whatever the result.
  int close() noexcept;

 private:
  int fd_ = -1;
};

}  // namespace sdps::base
