#include "spoolstore/store.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <stdexcept>

namespace sdps::spoolstore {

namespace {

/// Junk entries named in the log per scan; the rest are only counted.
constexpr std::size_t junk_named = 10;

[[noreturn]] void fail(const std::string& what, const std::filesystem::path& path, int code) {
  throw io_error(what + " " + path.string() + ": " + std::strerror(code), code);
}

class dir_handle {
 public:
  explicit dir_handle(DIR* d) : dir_(d) {}
  ~dir_handle() {
    if (dir_) ::closedir(dir_);
  }
  dir_handle(const dir_handle&) = delete;
  dir_handle& operator=(const dir_handle&) = delete;
  DIR* get() const { return dir_; }

 private:
  DIR* dir_;
};

int open_retry(const char* path, int flags, mode_t mode = 0) {
  int fd;
  do fd = ::open(path, flags, mode);
  while (fd < 0 && errno == EINTR);
  return fd;
}

// Creates `dir`; true if it was created now, false if it existed.
bool make_dir(const std::filesystem::path& dir) {
  if (::mkdir(dir.c_str(), 0700) == 0) return true;
  if (errno == EEXIST) return false;
  fail("cannot create folder", dir, errno);
}

}  // namespace

std::filesystem::path host_dir(const std::filesystem::path& root, std::string_view host) {
  if (!valid_host(host)) throw std::invalid_argument("not a valid host name: '" + printable(host, 70) + "'");
  return root / std::string(host);
}

void sync_dir(const std::filesystem::path& dir) {
  const int fd = open_retry(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) fail("cannot open folder", dir, errno);
  const int rc = ::fsync(fd);
  const int code = errno;
  ::close(fd);
  // Some file systems cannot fsync a folder; they make no promise to break.
  if (rc != 0 && code != EINVAL && code != EROFS) fail("cannot sync folder", dir, code);
}

void ensure_host_dir(const std::filesystem::path& root, std::string_view host, const char* sub, bool create_punt) {
  const auto folder = host_dir(root, host);
  struct stat st;
  if (::stat(root.c_str(), &st) != 0) {
    if (errno != ENOENT) fail("cannot reach punt folder", root, errno);
    // Not created behind the caller's back: a punt folder that vanished is
    // more likely an unmounted file system than an empty spool.
    if (!create_punt) fail("punt folder is missing:", root, ENOENT);
    std::error_code ec;
    std::filesystem::create_directories(root, ec);
    if (ec) fail("cannot create punt folder", root, ec.value());
    try {
      sync_dir(root.parent_path().empty() ? std::filesystem::path(".") : root.parent_path());
    } catch (const io_error&) {
      // The punt's parent may belong to someone else; the folders below
      // are what must be durable.
    }
  }
  if (make_dir(folder)) sync_dir(root);
  if (sub && make_dir(folder / sub)) sync_dir(folder);
}

std::vector<entry> scan(const std::filesystem::path& root, std::string_view host, std::string_view user,
                        logger* log) {
  const auto folder = host_dir(root, host);
  std::vector<entry> out;
  dir_handle dir(::opendir(folder.c_str()));
  if (!dir.get()) {
    if (errno == ENOENT) return out;  // no mail has ever come for this host here
    fail("cannot read spool folder", folder, errno);
  }
  const std::string wanted = user.empty() ? std::string() : encode_user(user);
  std::size_t junk = 0;
  auto junk_entry = [&](std::string_view name, const char* why) {
    if (log && junk < junk_named)
      log->warning("spool ", folder.string(), ": ignoring '", printable(name, 80), "' (", why, ")");
    ++junk;
  };
  for (;;) {
    errno = 0;
    const dirent* d = ::readdir(dir.get());
    if (!d) {
      if (errno != 0) fail("cannot read spool folder", folder, errno);
      break;
    }
    const std::string_view name = d->d_name;
    if (name.empty() || name.front() == '.') continue;  // ".", "..", NFS silly-renames, dot files
    if (name == tmp_folder || name == locks_folder) continue;
    auto parsed = parse_name(name);
    if (!parsed) {
      junk_entry(name, "not a message file name");
      continue;
    }
    if (d->d_type != DT_REG && d->d_type != DT_UNKNOWN) {
      junk_entry(name, "not a regular file");
      continue;
    }
    if (!wanted.empty() && parsed->user != wanted) continue;
    out.push_back(entry{std::move(*parsed), std::string(name)});
  }
  std::sort(out.begin(), out.end(), [](const entry& a, const entry& b) {
    return a.name.uidl != b.name.uidl ? a.name.uidl < b.name.uidl : a.file < b.file;
  });
  // A UIDL names one message: a second file claiming it (a hand-made
  // copy) would break UIDL's promise, so only the first one counts.
  const auto dup = std::unique(out.begin(), out.end(), [&](const entry& a, const entry& b) {
    if (a.name.uidl != b.name.uidl) return false;
    junk_entry(b.file, "duplicate UIDL");
    return true;
  });
  out.erase(dup, out.end());
  if (log && junk > junk_named)
    log->warning("spool ", folder.string(), ": ignored ", junk - junk_named, " more entries");
  return out;
}

maildrop_lock::~maildrop_lock() {
  // Closing the files releases the flocks.
  if (user_fd_ >= 0) ::close(user_fd_);
  if (host_fd_ >= 0) ::close(host_fd_);
}

lock_attempt lock_maildrop(const std::filesystem::path& root, std::string_view host, std::string_view user,
                           bool create_punt) {
  lock_attempt attempt;
  std::filesystem::path locks;
  try {
    ensure_host_dir(root, host, locks_folder, create_punt);
    locks = host_dir(root, host) / locks_folder;
  } catch (const std::exception& e) {
    attempt.error = e.what();
    return attempt;
  }
  auto take = [&](const std::filesystem::path& file, int how, int& fd) -> lock_attempt::outcome {
    fd = open_retry(file.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
      attempt.error = "cannot open lock file " + file.string() + ": " + std::strerror(errno);
      return lock_attempt::outcome::failed;
    }
    int rc;
    do rc = ::flock(fd, how | LOCK_NB);
    while (rc != 0 && errno == EINTR);
    if (rc == 0) return lock_attempt::outcome::acquired;
    const int code = errno;
    ::close(fd);
    fd = -1;
    if (code == EWOULDBLOCK) return lock_attempt::outcome::in_use;
    attempt.error = "cannot lock " + file.string() + ": " + std::strerror(code);
    return lock_attempt::outcome::failed;
  };
  int host_fd = -1, user_fd = -1;
  attempt.result = take(locks / "host", user.empty() ? LOCK_EX : LOCK_SH, host_fd);
  if (attempt.result != lock_attempt::outcome::acquired) return attempt;
  if (!user.empty()) {
    const std::string encoded = encode_user(user);
    if (encoded.size() > 3 * max_local_part) {
      ::close(host_fd);
      attempt.result = lock_attempt::outcome::failed;
      attempt.error = "user name too long for a lock file";
      return attempt;
    }
    attempt.result = take(locks / ("user=" + encoded), LOCK_EX, user_fd);
    if (attempt.result != lock_attempt::outcome::acquired) {
      ::close(host_fd);
      return attempt;
    }
  }
  attempt.lock = std::make_unique<maildrop_lock>(host_fd, user_fd);
  return attempt;
}

std::unique_ptr<message_file> message_file::open(const std::filesystem::path& file) {
  const int fd = open_retry(file.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) {
    if (errno == ENOENT) return nullptr;
    fail("cannot open message", file, errno);
  }
  std::unique_ptr<message_file> m(new message_file(fd, file.string()));
  struct stat st;
  if (::fstat(fd, &st) != 0) fail("cannot stat message", file, errno);
  if (!S_ISREG(st.st_mode)) fail("not a message file:", file, EBADMSG);
  m->file_size_ = static_cast<std::uint64_t>(st.st_size);
  m->read_ = (st.st_mode & S_IXUSR) != 0;
  std::string head(std::min<std::uint64_t>(max_envelope_block, m->file_size_), '\0');
  std::size_t got = 0;
  while (got < head.size()) {
    const ssize_t n = ::pread(fd, head.data() + got, head.size() - got, static_cast<off_t>(got));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) fail("cannot read message", file, errno);
    if (n == 0) break;
    got += static_cast<std::size_t>(n);
  }
  head.resize(got);
  auto parsed = parse_envelope(head);
  if (!parsed) fail("damaged envelope header in", file, EBADMSG);
  m->envelope_ = std::move(parsed->envelope);
  m->body_offset_ = parsed->body_offset;
  m->rewind(std::nullopt);
  return m;
}

message_file::~message_file() { ::close(fd_); }

std::uint64_t message_file::retr_size() const {
  return return_path_line(envelope_.from).size() + (file_size_ - body_offset_);
}

void message_file::rewind(std::optional<std::uint64_t> body_lines) {
  prefix_ = return_path_line(envelope_.from);
  prefix_sent_ = 0;
  offset_ = 0;
  top_ = top_filter(body_lines);
}

std::size_t message_file::read(std::span<char> buffer) {
  if (buffer.empty()) return 0;
  if (prefix_sent_ < prefix_.size()) {
    const std::size_t n = prefix_.copy(buffer.data(), buffer.size(), prefix_sent_);
    prefix_sent_ += n;
    return n;
  }
  if (top_.done()) return 0;
  for (;;) {
    const ssize_t n =
        ::pread(fd_, buffer.data(), buffer.size(), static_cast<off_t>(body_offset_ + offset_));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) fail("cannot read message", path_, errno);
    offset_ += static_cast<std::uint64_t>(n);
    return top_.accept(std::string_view(buffer.data(), static_cast<std::size_t>(n)));
  }
}

std::optional<bool> read_flag(const std::filesystem::path& file) {
  struct stat st;
  if (::lstat(file.c_str(), &st) != 0) {
    if (errno == ENOENT) return std::nullopt;
    fail("cannot stat message", file, errno);
  }
  return (st.st_mode & S_IXUSR) != 0;
}

bool set_read_flag(const std::filesystem::path& file) {
  // Through an open file (O_NOFOLLOW), never a rename: an SMTP delivery
  // that is about to remove the file by name must still find it.
  const int fd = open_retry(file.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) {
    if (errno == ENOENT) return false;
    fail("cannot open message", file, errno);
  }
  struct stat st;
  int rc = ::fstat(fd, &st);
  if (rc == 0 && !(st.st_mode & S_IXUSR)) rc = ::fchmod(fd, (st.st_mode & 07777) | S_IXUSR);
  const int code = errno;
  ::close(fd);
  if (rc != 0) fail("cannot set the read flag of", file, code);
  return true;
}

bool remove_message(const std::filesystem::path& file, std::string& error) {
  if (::unlink(file.c_str()) == 0 || errno == ENOENT) return true;
  error = "cannot remove " + file.string() + ": " + std::strerror(errno);
  return false;
}

std::size_t sweep_tmp(const std::filesystem::path& host_folder, std::int64_t max_age_seconds) {
  const auto tmp = host_folder / tmp_folder;
  dir_handle dir(::opendir(tmp.c_str()));
  if (!dir.get()) return 0;
  const std::time_t limit = std::time(nullptr) - max_age_seconds;
  std::size_t removed = 0;
  while (const dirent* d = ::readdir(dir.get())) {
    if (d->d_name[0] == '.') continue;
    struct stat st;
    if (::fstatat(::dirfd(dir.get()), d->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
    if (!S_ISREG(st.st_mode) || st.st_mtime >= limit) continue;
    if (::unlinkat(::dirfd(dir.get()), d->d_name, 0) == 0) ++removed;
  }
  return removed;
}

}  // namespace sdps::spoolstore
