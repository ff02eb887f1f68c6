#include "spoolstore/store.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <unordered_set>

#include <sodium.h>

namespace sdps::spoolstore {

namespace {

/// Junk entries named in the log per scan; the rest are only counted.
constexpr std::size_t junk_named = 10;

[[noreturn]] void fail(const std::string& what, const std::string& path, int code) {
  throw io_error(what + " " + path + ": " + std::strerror(code), code);
}

[[noreturn]] void fail(const std::string& what, const std::filesystem::path& path, int code) {
  fail(what, path.native(), code);
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

namespace {

/// Checks that the punt folder `root` is there, creating it only when
/// `create_punt` says so. True when it was created. Throws io_error.
bool reach_punt(const std::filesystem::path& root, bool create_punt) {
  struct stat st;
  if (::stat(root.c_str(), &st) == 0) return false;
  if (errno != ENOENT) fail("cannot reach punt folder", root, errno);
  // Not created behind the caller's back: a punt folder that vanished is
  // more likely an unmounted file system than an empty spool.
  if (!create_punt) fail("punt folder is missing:", root, ENOENT);
  std::error_code ec;
  std::filesystem::create_directories(root, ec);
  if (ec) fail("cannot create punt folder", root, ec.value());
  return true;
}

}  // namespace

void ensure_host_dir(const std::filesystem::path& root, std::string_view host, const char* sub, bool create_punt) {
  const auto folder = host_dir(root, host);
  if (reach_punt(root, create_punt)) {
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

namespace {

/// What one getdents64 call may fill: small enough that the names are
/// still in the CPU's cache when they are parsed, large enough that a
/// 50,000-message folder takes about eighty calls.
constexpr std::size_t dirent_buffer = 64 * 1024;

/// UIDL order: (arrival, random) orders as the UIDL text does (fixed-width
/// digits); equal UIDLs, which only hand-made copies have, by file name.
bool uidl_before(const listing& l, const listing::message& a, const listing::message& b) {
  if (a.arrival != b.arrival) return a.arrival < b.arrival;
  if (a.random != b.random) return a.random < b.random;
  return std::string_view(l.names).substr(a.name_at, a.name_length) <
         std::string_view(l.names).substr(b.name_at, b.name_length);
}

/// Sorts l.messages by uidl_before. A comparison sort of tens of thousands
/// of random keys spends its time in mispredicted branches: a radix sort
/// on the arrival time (11 bits a pass, as many passes as the times'
/// spread needs) instead, then the runs of equal arrival times, which are
/// short, by comparison.
void sort_by_uidl(listing& l) {
  auto& m = l.messages;
  const auto before = [&l](const listing::message& a, const listing::message& b) { return uidl_before(l, a, b); };
  if (m.size() < 512) {
    std::sort(m.begin(), m.end(), before);
    return;
  }
  const auto [lowest, highest] = std::minmax_element(
      m.begin(), m.end(), [](const listing::message& a, const listing::message& b) { return a.arrival < b.arrival; });
  const std::int64_t base = lowest->arrival;
  const auto spread = static_cast<std::uint64_t>(highest->arrival - base);
  constexpr unsigned bits = 11;
  std::vector<listing::message> scratch(m.size());
  for (unsigned shift = 0; shift < 64 && (spread >> shift) != 0; shift += bits) {
    std::array<std::size_t, (1u << bits) + 1> start{};
    const auto digit = [&](const listing::message& x) {
      return (static_cast<std::uint64_t>(x.arrival - base) >> shift) & ((1u << bits) - 1);
    };
    for (const auto& x : m) ++start[digit(x) + 1];
    for (std::size_t d = 1; d < start.size(); ++d) start[d] += start[d - 1];
    for (const auto& x : m) scratch[start[digit(x)]++] = x;
    m.swap(scratch);
  }
  for (std::size_t i = 0; i < m.size();) {
    std::size_t j = i + 1;
    while (j < m.size() && m[j].arrival == m[i].arrival) ++j;
    if (j - i > 1) std::sort(m.begin() + static_cast<std::ptrdiff_t>(i), m.begin() + static_cast<std::ptrdiff_t>(j), before);
    i = j;
  }
}

class fd_guard {
 public:
  explicit fd_guard(int fd) : fd_(fd) {}
  ~fd_guard() { ::close(fd_); }
  fd_guard(const fd_guard&) = delete;
  fd_guard& operator=(const fd_guard&) = delete;

 private:
  int fd_;
};

}  // namespace

listing list_messages(const std::filesystem::path& root, std::string_view host, std::string_view user,
                      logger* log) {
  const auto folder = host_dir(root, host);
  listing out;
  const int fd = open_retry(folder.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return out;  // no mail has ever come for this host here
    fail("cannot read spool folder", folder, errno);
  }
  const fd_guard closer(fd);
  const std::string wanted = user.empty() ? std::string() : encode_user(user);
  std::size_t junk = 0;
  auto junk_entry = [&](std::string_view name, const char* why) {
    if (log && junk < junk_named)
      log->warning("spool ", folder.string(), ": ignoring '", printable(name, 80), "' (", why, ")");
    ++junk;
  };
  const auto buffer = std::make_unique_for_overwrite<char[]>(dirent_buffer);
  for (;;) {
    const ssize_t filled = ::getdents64(fd, buffer.get(), dirent_buffer);
    if (filled < 0) {
      if (errno == EINTR) continue;
      fail("cannot read spool folder", folder, errno);
    }
    if (filled == 0) break;
    for (ssize_t at = 0; at < filled;) {
      // The kernel's linux_dirent64 records, which glibc's dirent64 describes.
      const auto* d = reinterpret_cast<const struct dirent64*>(buffer.get() + at);
      at += d->d_reclen;
      const std::string_view name(d->d_name);
      if (name.empty() || name.front() == '.') continue;  // ".", "..", NFS silly-renames, dot files
      if (name == tmp_folder || name == locks_folder) continue;
      const auto parsed = parse_name_view(name);
      if (!parsed) {
        junk_entry(name, "not a message file name");
        continue;
      }
      if (d->d_type != DT_REG && d->d_type != DT_UNKNOWN) {
        junk_entry(name, "not a regular file");
        continue;
      }
      if (!wanted.empty() && parsed->user != wanted) continue;
      if (out.names.size() + name.size() > UINT32_MAX) fail("too many messages in spool folder", folder, EOVERFLOW);
      out.messages.push_back({parsed->arrival, parsed->random, parsed->size,
                              static_cast<std::uint32_t>(out.names.size()), static_cast<std::uint32_t>(name.size())});
      out.names.append(name);
    }
  }
  sort_by_uidl(out);
  // A UIDL names one message: a second file claiming it (a hand-made
  // copy) would break UIDL's promise, so only the first one counts.
  std::size_t kept = 0;
  for (std::size_t i = 0; i < out.messages.size(); ++i) {
    const listing::message& m = out.messages[i];
    if (kept > 0 && m.arrival == out.messages[kept - 1].arrival && m.random == out.messages[kept - 1].random) {
      junk_entry(std::string_view(out.names).substr(m.name_at, m.name_length), "duplicate UIDL");
      continue;
    }
    out.messages[kept++] = m;
  }
  out.messages.resize(kept);
  if (log && junk > junk_named)
    log->warning("spool ", folder.string(), ": ignored ", junk - junk_named, " more entries");
  return out;
}

std::vector<entry> scan(const std::filesystem::path& root, std::string_view host, std::string_view user,
                        logger* log) {
  const listing found = list_messages(root, host, user, log);
  std::vector<entry> out;
  out.reserve(found.size());
  for (std::size_t i = 0; i < found.size(); ++i) {
    const std::string_view file = found.file(i);
    out.push_back(entry{*parse_name(file), std::string(file)});
  }
  return out;
}

std::uint64_t user_lock_byte(std::string_view encoded_user) {
  // Unkeyed, so that every process (and version) finds the same byte.
  static const bool sodium_ready = sodium_init() >= 0;
  if (!sodium_ready) throw std::runtime_error("libsodium failed to initialise");
  std::array<unsigned char, crypto_generichash_BYTES_MIN> digest{};
  crypto_generichash(digest.data(), digest.size(), reinterpret_cast<const unsigned char*>(encoded_user.data()),
                     encoded_user.size(), nullptr, 0);
  std::uint64_t byte = 0;
  for (int i = 7; i >= 0; --i) byte = (byte << 8) | digest[static_cast<std::size_t>(i)];
  return byte & ((std::uint64_t{1} << 62) - 1);
}

class shared_lock_file {
 public:
  shared_lock_file(int fd, std::string path) : fd_(fd), path_(std::move(path)) {}
  ~shared_lock_file();
  shared_lock_file(const shared_lock_file&) = delete;
  shared_lock_file& operator=(const shared_lock_file&) = delete;
  int fd() const { return fd_; }

  /// Write-locks `byte` for one user login, without waiting: 0 when held
  /// now; EWOULDBLOCK when a login of this process holds it (recorded
  /// here: the kernel never sets one open file's locks against each
  /// other) or another process does (the kernel says so); else an errno.
  int take_user(std::uint64_t byte);
  /// Unlocks a byte that take_user() took.
  void release_user(std::uint64_t byte);

 private:
  int set_byte(std::uint64_t byte, short type) const {
    struct flock range {};
    range.l_type = type;
    range.l_whence = SEEK_SET;
    range.l_start = static_cast<off_t>(byte);
    range.l_len = 1;
    int rc;
    do rc = ::fcntl(fd_, F_OFD_SETLK, &range);
    while (rc != 0 && errno == EINTR);
    if (rc == 0) return 0;
    return errno == EAGAIN || errno == EACCES ? EWOULDBLOCK : errno;
  }

  int fd_;
  std::string path_;
  std::mutex users_mutex_;
  std::unordered_set<std::uint64_t> users_;  // the bytes this open file holds
};

int shared_lock_file::take_user(std::uint64_t byte) {
  // The record and the kernel's lock change together, under the mutex, so
  // that two threads never both find a byte free.
  std::lock_guard<std::mutex> guard(users_mutex_);
  if (users_.contains(byte)) return EWOULDBLOCK;
  const int code = set_byte(byte, F_WRLCK);
  if (code == 0) users_.insert(byte);
  return code;
}

void shared_lock_file::release_user(std::uint64_t byte) {
  std::lock_guard<std::mutex> guard(users_mutex_);
  // An unlock fails only for a bad descriptor or range, neither of which
  // this file can have; the record goes regardless.
  set_byte(byte, F_UNLCK);
  users_.erase(byte);
}

maildrop_lock::~maildrop_lock() {
  // The user's byte first: the shared file may close below, and another
  // holder of it must not find the byte still recorded.
  if (host_shared_) host_shared_->release_user(user_byte_);
  // Closing the files releases the flocks (a shared one when its last
  // holder in this process lets go).
  host_shared_.reset();
  if (host_fd_ >= 0) ::close(host_fd_);
  if (folder_fd_ >= 0) ::close(folder_fd_);
}

namespace {

/// The shared flocks this process holds, by lock file path: one open file
/// for all the holders of each.
struct shared_locks {
  std::mutex mutex;
  std::map<std::string, std::weak_ptr<shared_lock_file>, std::less<>> held;
};

shared_locks& process_shared_locks() {
  static shared_locks* table = new shared_locks;  // never destroyed: locks may outlive static destruction order
  return *table;
}

}  // namespace

shared_lock_file::~shared_lock_file() {
  auto& table = process_shared_locks();
  std::lock_guard<std::mutex> guard(table.mutex);
  // Closed under the mutex: a holder arriving now either shares this file
  // (before) or opens and flocks its own (after the flock is gone).
  ::close(fd_);
  const auto it = table.held.find(path_);
  if (it != table.held.end() && it->second.expired()) table.held.erase(it);
}

namespace {

bool no_space(int code) { return code == ENOSPC || code == EDQUOT; }

int flock_retry(int fd, int how) {
  int rc;
  do rc = ::flock(fd, how | LOCK_NB);
  while (rc != 0 && errno == EINTR);
  return rc == 0 ? 0 : errno;
}

// True if `fd` is what `path` names now.
bool still_named(int fd, const std::filesystem::path& path) {
  struct stat by_fd, by_name;
  if (::fstat(fd, &by_fd) != 0 || ::lstat(path.c_str(), &by_name) != 0) return false;
  return by_fd.st_dev == by_name.st_dev && by_fd.st_ino == by_name.st_ino;
}

enum class take_result { acquired, in_use, no_space, failed };

// Opens (creating) and flocks `file`; retries while the file it locked is
// no longer the one the name leads to (its holder removed it meanwhile).
take_result take_file(const std::filesystem::path& file, int how, int& fd, std::string& error) {
  for (int attempt = 0; attempt < 16; ++attempt) {
    fd = open_retry(file.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
      const int code = errno;
      error = "cannot open lock file " + file.string() + ": " + std::strerror(code);
      return no_space(code) ? take_result::no_space : take_result::failed;
    }
    const int code = flock_retry(fd, how);
    if (code == 0 && still_named(fd, file)) return take_result::acquired;
    ::close(fd);
    fd = -1;
    if (code == EWOULDBLOCK) return take_result::in_use;
    if (code != 0) {
      error = "cannot lock " + file.string() + ": " + std::strerror(code);
      return take_result::failed;
    }
  }
  error = "lock file " + file.string() + " keeps being replaced";
  return take_result::failed;
}

// Takes `file` shared (LOCK_SH) for one more holder in this process:
// joins the open file that already holds it if there is one (and it is
// still what the name leads to), else opens and flocks it as take_file.
take_result take_shared(const std::filesystem::path& file, std::shared_ptr<shared_lock_file>& held,
                        std::string& error) {
  auto& table = process_shared_locks();
  // Declared before the guard, so that if it is the last holder of a
  // stale file, that file's destructor (which takes the mutex) runs after
  // the guard is gone.
  std::shared_ptr<shared_lock_file> existing;
  std::lock_guard<std::mutex> guard(table.mutex);
  const std::string key = file.string();
  if (const auto it = table.held.find(key); it != table.held.end()) {
    existing = it->second.lock();
    if (existing && still_named(existing->fd(), file)) {
      held = std::move(existing);
      return take_result::acquired;
    }
  }
  int fd = -1;
  const take_result result = take_file(file, LOCK_SH, fd, error);
  if (result != take_result::acquired) return result;
  held = std::make_shared<shared_lock_file>(fd, key);
  table.held[key] = held;
  return take_result::acquired;
}

}  // namespace

lock_attempt lock_maildrop(const std::filesystem::path& root, std::string_view host, std::string_view user,
                           bool create_punt) {
  lock_attempt attempt;
  std::filesystem::path folder;
  std::string encoded;
  std::uint64_t user_byte = 0;
  try {
    folder = host_dir(root, host);
    if (!user.empty()) {
      encoded = encode_user(user);
      if (encoded.size() > 3 * max_local_part) throw std::invalid_argument("user name too long");
      user_byte = user_lock_byte(encoded);
    }
    reach_punt(root, create_punt);
  } catch (const std::exception& e) {
    attempt.error = e.what();
    return attempt;
  }
  using outcome = lock_attempt::outcome;
  for (int round = 0; round < 16; ++round) {
    const int folder_fd = open_retry(folder.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
    if (folder_fd < 0) {
      if (errno == ENOENT) {
        // A host that never had mail here: its folder is made, so that its
        // locks exclude other sessions as any host's do. Without the space
        // for it there is no mail to protect either: an empty maildrop with
        // nothing held, so a full disk never stops this login (mail that
        // arrives meanwhile waits for the next session, as it would anyway).
        if (::mkdir(folder.c_str(), 0700) == 0 || errno == EEXIST) continue;
        const int code = errno;
        if (!no_space(code)) {
          attempt.error = "cannot create spool folder " + folder.string() + ": " + std::strerror(code);
          return attempt;
        }
        attempt.result = outcome::acquired;
        attempt.lock = std::make_unique<maildrop_lock>();
        attempt.note = "no space to create " + folder.string() + ": an empty maildrop, nothing locked";
        return attempt;
      }
      attempt.error = "cannot open spool folder " + folder.string() + ": " + std::strerror(errno);
      return attempt;
    }
    // (Sets the outcome; the caller returns `attempt` itself, which is
    // the function's return slot.)
    auto give_up = [&](outcome o, int host_fd = -1) {
      if (host_fd >= 0) ::close(host_fd);
      ::close(folder_fd);
      attempt.result = o;
    };
    int code = flock_retry(folder_fd, LOCK_SH);
    if (code == EWOULDBLOCK) { give_up(outcome::in_use); return attempt; }
    if (code != 0) {
      attempt.error = "cannot lock " + folder.string() + ": " + std::strerror(code);
      { give_up(outcome::failed); return attempt; }
    }
    if (!still_named(folder_fd, folder)) {  // the folder was replaced meanwhile
      ::close(folder_fd);
      continue;
    }
    // The usual locks, unless there is no room for their files.
    bool fallback = false;
    const auto locks = folder / locks_folder;
    if (::mkdir(locks.c_str(), 0700) == 0) {
      try {
        sync_dir(folder);
      } catch (const io_error&) {
      }
    } else if (errno != EEXIST) {
      if (!no_space(errno)) {
        attempt.error = "cannot create folder " + locks.string() + ": " + std::strerror(errno);
        { give_up(outcome::failed); return attempt; }
      }
      attempt.note = "cannot create folder " + locks.string() + ": " + std::strerror(errno);
      fallback = true;
    }
    int host_fd = -1;
    std::shared_ptr<shared_lock_file> host_shared;
    auto let_go = [&] {
      if (host_fd >= 0) ::close(host_fd);
      host_shared.reset();
      host_fd = -1;
    };
    if (!fallback) {
      const take_result taken = user.empty() ? take_file(locks / "host", LOCK_EX, host_fd, attempt.note)
                                             : take_shared(locks / "host", host_shared, attempt.note);
      switch (taken) {
        case take_result::acquired: break;
        case take_result::in_use: { give_up(outcome::in_use); return attempt; }
        case take_result::no_space: fallback = true; break;
        case take_result::failed: attempt.error = attempt.note; attempt.note.clear(); { give_up(outcome::failed); return attempt; }
      }
    }
    if (!fallback && !user.empty()) {
      // The user's byte of the shared file: no file, no descriptor of its own.
      code = host_shared->take_user(user_byte);
      if (code == EWOULDBLOCK) { let_go(); give_up(outcome::in_use); return attempt; }
      if (code != 0) {
        attempt.error = "cannot lock " + (locks / "host").string() + " for user " + encoded + ": " + std::strerror(code);
        { let_go(); give_up(outcome::failed); return attempt; }
      }
    }
    if (fallback) {
      // No inode to spare: the whole host, exclusively, on HOST/ itself
      // (every login holds it shared while it takes its locks) and on
      // locks/host if that exists (every login holds it once it has its
      // locks). That excludes every login of the host on this punt and no
      // other.
      let_go();
      code = flock_retry(folder_fd, LOCK_EX);
      if (code == EWOULDBLOCK) { give_up(outcome::in_use); return attempt; }
      if (code != 0) {
        attempt.error = "cannot lock " + folder.string() + ": " + std::strerror(code);
        { give_up(outcome::failed); return attempt; }
      }
      const auto host_file = locks / "host";
      host_fd = open_retry(host_file.c_str(), O_RDWR | O_CLOEXEC | O_NOFOLLOW);
      if (host_fd >= 0) {
        code = flock_retry(host_fd, LOCK_EX);
        if (code == EWOULDBLOCK) { let_go(); give_up(outcome::in_use); return attempt; }
        if (code != 0) {
          attempt.error = "cannot lock " + host_file.string() + ": " + std::strerror(code);
          { let_go(); give_up(outcome::failed); return attempt; }
        }
      }
      attempt.note += "; holding the whole host's folder instead";
      attempt.result = outcome::acquired;
      attempt.lock = std::make_unique<maildrop_lock>(folder_fd, host_fd);
      return attempt;
    }
    // Held: HOST/ has done its part (it kept a fallback holder out while
    // these were taken, and a fallback starting now meets locks/host).
    ::close(folder_fd);
    attempt.note.clear();
    attempt.result = outcome::acquired;
    if (user.empty())
      attempt.lock = std::make_unique<maildrop_lock>(host_fd);
    else
      attempt.lock = std::make_unique<maildrop_lock>(std::move(host_shared), user_byte);
    return attempt;
  }
  attempt.error = "spool folder " + folder.string() + " keeps being replaced";
  return attempt;
}

namespace {
/// What open() reads in one go: the envelope header and, for most
/// messages, the whole message.
constexpr std::size_t first_read = 64 * 1024;
}  // namespace

std::unique_ptr<message_file> message_file::open(const std::filesystem::path& file) {
  return open(file.string());
}

std::unique_ptr<message_file> message_file::open(std::string path) {
  const int fd = open_retry(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) {
    if (errno == ENOENT) return nullptr;
    fail("cannot open message", path, errno);
  }
  std::unique_ptr<message_file> m(new message_file(fd, std::move(path)));
  struct stat st;
  if (::fstat(fd, &st) != 0) fail("cannot stat message", m->path_, errno);
  if (!S_ISREG(st.st_mode)) fail("not a message file:", m->path_, EBADMSG);
  m->file_size_ = static_cast<std::uint64_t>(st.st_size);
  m->read_ = (st.st_mode & S_IXUSR) != 0;
  std::string& head = m->head_;
  head.resize(static_cast<std::size_t>(std::min<std::uint64_t>(first_read, m->file_size_)));
  std::size_t got = 0;
  while (got < head.size()) {
    const ssize_t n = ::pread(fd, head.data() + got, head.size() - got, static_cast<off_t>(got));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) fail("cannot read message", m->path_, errno);
    if (n == 0) break;
    got += static_cast<std::size_t>(n);
  }
  head.resize(got);
  auto parsed = parse_envelope(std::string_view(head).substr(0, max_envelope_block));
  if (!parsed) fail("damaged envelope header in", m->path_, EBADMSG);
  m->envelope_ = std::move(parsed->envelope);
  m->body_offset_ = parsed->body_offset;
  // Built once: retr_size() and every rewind() use it.
  m->prefix_ = return_path_line(m->envelope_.from);
  m->rewind(std::nullopt);
  return m;
}

message_file::~message_file() { ::close(fd_); }

void message_file::set_read_flag() {
  if (read_) return;
  struct stat st;
  int rc = ::fstat(fd_, &st);
  if (rc == 0 && !(st.st_mode & S_IXUSR)) rc = ::fchmod(fd_, (st.st_mode & 07777) | S_IXUSR);
  if (rc != 0) fail("cannot set the read flag of", path_, errno);
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
    if (at < head_.size()) {
      // What open() read already.
      n = head_.copy(into, room, static_cast<std::size_t>(at));
    } else {
      ssize_t got;
      do got = ::pread(fd_, into, room, static_cast<off_t>(at));
      while (got < 0 && errno == EINTR);
      if (got < 0) fail("cannot read message", path_, errno);
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
  if (!head_.empty() && body_offset_ + offset_ >= head_.size()) std::string().swap(head_);
  return filled;
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
