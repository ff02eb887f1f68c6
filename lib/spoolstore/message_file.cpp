// A stored message's file: opened with one read of its first block, its
// envelope parsed, streamed as RETR and TOP send it; its read flag.

#include "spoolstore/message_file.hpp"

#include "spoolstore/detail.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace sdps::spoolstore {

namespace {
/// What open() reads in one go: the envelope header and, for most
/// messages, the whole message.
constexpr std::size_t first_read = 64 * 1024;
}  // namespace

std::unique_ptr<message_file> message_file::open(const std::filesystem::path& file) {
  return open(file.string());
}

std::unique_ptr<message_file> message_file::open(std::string path) {
  base::unique_fd fd(detail::open_retry(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (!fd.valid()) {
    if (errno == ENOENT) return nullptr;
    detail::fail("cannot open message", path, errno);
  }
  std::unique_ptr<message_file> m(new message_file(std::move(fd), std::move(path)));
  const int file = m->fd_.get();
  struct stat st;
  if (::fstat(file, &st) != 0) detail::fail("cannot stat message", m->path_, errno);
  if (!S_ISREG(st.st_mode)) detail::fail("not a message file:", m->path_, EBADMSG);
  m->file_size_ = static_cast<std::uint64_t>(st.st_size);
  m->read_ = (st.st_mode & S_IXUSR) != 0;
  const auto wanted = static_cast<std::size_t>(std::min<std::uint64_t>(first_read, m->file_size_));
  m->head_.reset(new char[wanted]);
  std::size_t got = 0;
  while (got < wanted) {
    const ssize_t n = ::pread(file, m->head_.get() + got, wanted - got, static_cast<off_t>(got));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) detail::fail("cannot read message", m->path_, errno);
    if (n == 0) break;
    got += static_cast<std::size_t>(n);
  }
  m->head_size_ = got;
  const std::string_view head(m->head_.get(), got);
  auto parsed = parse_envelope(head.substr(0, max_envelope_block));
  if (!parsed) detail::fail("damaged envelope header in", m->path_, EBADMSG);
  m->envelope_ = std::move(parsed->envelope);
  m->body_offset_ = parsed->body_offset;
  // Built once: retr_size() and every rewind() use it.
  m->prefix_ = return_path_line(m->envelope_.from);
  m->rewind(std::nullopt);
  return m;
}

void message_file::set_read_flag() {
  if (read_) return;
  struct stat st;
  int rc = ::fstat(fd_.get(), &st);
  if (rc == 0 && !(st.st_mode & S_IXUSR)) rc = ::fchmod(fd_.get(), (st.st_mode & 07777) | S_IXUSR);
  if (rc != 0) detail::fail("cannot set the read flag of", path_, errno);
  read_ = true;
}

std::uint64_t message_file::retr_size() const { return prefix_.size() + (file_size_ - body_offset_); }

void message_file::rewind(std::optional<std::uint64_t> body_lines) {
  prefix_sent_ = 0;
  offset_ = 0;
  top_ = top_filter(body_lines);
}

std::size_t message_file::read(std::span<char> buffer) {
  std::size_t filled = 0;
  if (prefix_sent_ < prefix_.size()) {
    const std::size_t n = prefix_.copy(buffer.data(), buffer.size(), prefix_sent_);
    prefix_sent_ += n;
    filled = n;
  }
  const std::uint64_t message_size = file_size_ - body_offset_;
  while (filled < buffer.size() && !top_.done() && offset_ < message_size) {
    char* const into = buffer.data() + filled;
    const std::size_t room = static_cast<std::size_t>(
        std::min<std::uint64_t>(buffer.size() - filled, message_size - offset_));
    std::size_t n = 0;
    const std::uint64_t at = body_offset_ + offset_;
    if (at < head_size_) {
      // What open() read already.
      n = std::min<std::size_t>(room, head_size_ - static_cast<std::size_t>(at));
      std::memcpy(into, head_.get() + at, n);
    } else {
      ssize_t got;
      do got = ::pread(fd_.get(), into, room, static_cast<off_t>(at));
      while (got < 0 && errno == EINTR);
      if (got < 0) detail::fail("cannot read message", path_, errno);
      if (got == 0) {
        // Shorter than it was at open (changed by hand): the end.
        offset_ = message_size;
        break;
      }
      n = static_cast<std::size_t>(got);
    }
    offset_ += n;
    const std::size_t kept = top_.accept(std::string_view(into, n));
    filled += kept;
    if (kept < n) break;
  }
  // The head is not needed once the stream is past it.
  if (head_ && body_offset_ + offset_ >= head_size_) {
    head_.reset();
    head_size_ = 0;
  }
  return filled;
}

std::optional<bool> read_flag(const std::filesystem::path& file) {
  struct stat st;
  if (::lstat(file.c_str(), &st) != 0) {
    if (errno == ENOENT) return std::nullopt;
    detail::fail("cannot stat message", file, errno);
  }
  return (st.st_mode & S_IXUSR) != 0;
}

bool set_read_flag(const std::filesystem::path& file) {
  // Through an open file (O_NOFOLLOW), never a rename: an SMTP delivery
  // that is about to remove the file by name must still find it.
  base::unique_fd fd(detail::open_retry(file.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (!fd.valid()) {
    if (errno == ENOENT) return false;
    detail::fail("cannot open message", file, errno);
  }
  struct stat st;
  int rc = ::fstat(fd.get(), &st);
  if (rc == 0 && !(st.st_mode & S_IXUSR)) rc = ::fchmod(fd.get(), (st.st_mode & 07777) | S_IXUSR);
  const int code = errno;
  fd.reset();
  if (rc != 0) detail::fail("cannot set the read flag of", file, code);
  return true;
}

bool remove_message(const std::filesystem::path& file, std::string& error) {
  if (::unlink(file.c_str()) == 0 || errno == ENOENT) return true;
  error = "cannot remove " + file.string() + ": " + std::strerror(errno);
  return false;
}

}  // namespace sdps::spoolstore
