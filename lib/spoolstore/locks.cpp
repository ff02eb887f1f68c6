// Maildrop locks (docs/spool.md, Locks): HOST/ held shared while a login
// takes its locks; locks/host flocked exclusively by a host login, shared
// by user logins, each of which write-locks its own byte of it; HOST/
// exclusively when there is no room for the lock files.

#include "spoolstore/locks.hpp"

#include "spoolstore/detail.hpp"
#include "spoolstore/store.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <map>
#include <mutex>
#include <stdexcept>
#include <unordered_set>

#include <sodium.h>

namespace sdps::spoolstore {

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

// -- the shared lock file ------------------------------------------------------

class shared_lock_file {
 public:
  shared_lock_file(base::unique_fd fd, std::string path) : fd_(std::move(fd)), path_(std::move(path)) {}
  ~shared_lock_file();
  shared_lock_file(const shared_lock_file&) = delete;
  shared_lock_file& operator=(const shared_lock_file&) = delete;
  int fd() const { return fd_.get(); }

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
    do rc = ::fcntl(fd_.get(), F_OFD_SETLK, &range);
    while (rc != 0 && errno == EINTR);
    if (rc == 0) return 0;
    return errno == EAGAIN || errno == EACCES ? EWOULDBLOCK : errno;
  }

  base::unique_fd fd_;
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
  fd_.reset();
  const auto it = table.held.find(path_);
  if (it != table.held.end() && it->second.expired()) table.held.erase(it);
}

maildrop_lock::~maildrop_lock() {
  // The user's byte first: the shared file may close when host_shared_
  // goes, and another holder of it must not find the byte still recorded.
  if (host_shared_) host_shared_->release_user(user_byte_);
}

// -- taking lock files -----------------------------------------------------------

namespace {

using outcome = lock_attempt::outcome;

/// flock(2) without waiting, again after EINTR: 0 or the errno.
int flock_now(int fd, int how) {
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
take_result take_file(const std::filesystem::path& file, int how, base::unique_fd& fd, std::string& error) {
  for (int attempt = 0; attempt < 16; ++attempt) {
    fd.reset(detail::open_retry(file.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600));
    if (!fd.valid()) {
      const int code = errno;
      error = "cannot open lock file " + file.string() + ": " + std::strerror(code);
      return detail::no_space(code) ? take_result::no_space : take_result::failed;
    }
    const int code = flock_now(fd.get(), how);
    if (code == 0 && still_named(fd.get(), file)) return take_result::acquired;
    fd.reset();
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
  base::unique_fd fd;
  const take_result result = take_file(file, LOCK_SH, fd, error);
  if (result != take_result::acquired) return result;
  held = std::make_shared<shared_lock_file>(std::move(fd), key);
  table.held[key] = held;
  return take_result::acquired;
}

// -- one login's lock ------------------------------------------------------------

/// One lock_maildrop() call: HOST/ opened and held shared, then the
/// login's locks taken in it, or, without room for lock files, the whole
/// host. Each step that decides the outcome says so in `attempt_` and
/// returns `decided`; HOST/ replaced meanwhile starts a new round.
class maildrop_login {
 public:
  maildrop_login(const std::filesystem::path& root, std::string_view user, bool create_punt)
      : root_(root), user_(user), create_punt_(create_punt) {}

  lock_attempt lock(std::string_view host) {
    if (!prepare(host)) return std::move(attempt_);
    for (int round = 0; round < max_rounds; ++round)
      if (take() == step::decided) return std::move(attempt_);
    failed("spool folder " + folder_.string() + " keeps being replaced");
    return std::move(attempt_);
  }

 private:
  /// What a step found: carry on with the next; the outcome is decided;
  /// HOST/ was replaced meanwhile (a new round); no space for lock files.
  enum class step { go_on, decided, again, no_room };
  /// Rounds before a HOST/ that keeps being replaced is an error.
  static constexpr int max_rounds = 16;

  bool is_user_login() const { return !user_.empty(); }

  /// The names, the user's byte, the punt folder (made when asked for).
  bool prepare(std::string_view host) {
    try {
      folder_ = host_dir(root_, host);
      locks_ = folder_ / locks_folder;
      if (is_user_login()) {
        encoded_ = encode_user(user_);
        if (encoded_.size() > 3 * max_local_part) throw std::invalid_argument("user name too long");
        user_byte_ = user_lock_byte(encoded_);
      }
      detail::reach_punt(root_, create_punt_);
      return true;
    } catch (const std::exception& e) {
      failed(e.what());
      return false;
    }
  }

  /// One round: HOST/, held shared while the login's own locks are taken,
  /// or the whole host when there is no room for their files.
  step take() {
    base::unique_fd folder;
    if (const step s = open_folder(folder); s != step::go_on) return s;
    if (const step s = hold(folder, LOCK_SH, folder_); s != step::go_on) return s;
    if (!still_named(folder.get(), folder_)) return step::again;
    const step s = take_own_locks();
    if (s == step::no_room) return whole_host(std::move(folder));
    if (s != step::go_on) return s;
    // Held: HOST/ has done its part (it kept a fallback holder out while
    // these were taken, and a fallback starting now meets locks/host); it
    // closes when this round ends.
    attempt_.note.clear();
    if (is_user_login()) return acquired(std::make_unique<maildrop_lock>(std::move(host_shared_), user_byte_));
    return acquired(std::make_unique<maildrop_lock>(std::move(host_file_)));
  }

  /// locks/, locks/host, and for a user login its byte of locks/host.
  step take_own_locks() {
    if (const step s = make_locks_folder(); s != step::go_on) return s;
    if (const step s = take_host_lock(); s != step::go_on) return s;
    return is_user_login() ? take_user_byte() : step::go_on;
  }

  /// Opens HOST/. A host that never had mail here gets its folder, so
  /// that its locks exclude other sessions as any host's do (again: the
  /// next round opens it). Without the space for it there is no mail to
  /// protect either: an empty maildrop with nothing held, so a full disk
  /// never stops this login (mail that arrives meanwhile waits for the
  /// next session, as it would anyway).
  step open_folder(base::unique_fd& folder) {
    folder.reset(detail::open_retry(folder_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW));
    if (folder.valid()) return step::go_on;
    int code = errno;
    // O_NOFOLLOW|O_DIRECTORY on a link says "Not a directory": say what it is.
    if (code == ELOOP || code == ENOTDIR)
      if (auto problem = detail::link_problem(folder_)) return failed(std::move(*problem));
    if (code != ENOENT) return failed("cannot open spool folder " + folder_.string() + ": " + std::strerror(code));
    if (::mkdir(folder_.c_str(), 0700) == 0 || errno == EEXIST) return step::again;
    code = errno;
    if (!detail::no_space(code))
      return failed("cannot create spool folder " + folder_.string() + ": " + std::strerror(code));
    attempt_.note = "no space to create " + folder_.string() + ": an empty maildrop, nothing locked";
    return acquired(std::make_unique<maildrop_lock>());
  }

  /// flocks `fd` (the file `path`) without waiting: in use when someone
  /// holds it.
  step hold(const base::unique_fd& fd, int how, const std::filesystem::path& path) {
    const int code = flock_now(fd.get(), how);
    if (code == 0) return step::go_on;
    if (code == EWOULDBLOCK) return in_use();
    return failed("cannot lock " + path.string() + ": " + std::strerror(code));
  }

  /// HOST/locks/, made if missing; no_room (the note says why) when there
  /// is no space for it.
  step make_locks_folder() {
    if (::mkdir(locks_.c_str(), 0700) == 0) {
      try {
        sync_dir(folder_);
      } catch (const io_error&) {
      }
      return step::go_on;
    }
    const int code = errno;
    if (code == EEXIST) {
      if (auto problem = detail::link_problem(locks_)) return failed(std::move(*problem));
      return step::go_on;
    }
    const std::string why = "cannot create folder " + locks_.string() + ": " + std::strerror(code);
    if (!detail::no_space(code)) return failed(why);
    attempt_.note = why;
    return step::no_room;
  }

  /// locks/host: exclusively for a host login (its own open file), shared
  /// for a user login (this process's one open file of it); no_room (the
  /// note says why) when there is no space to create it.
  step take_host_lock() {
    const auto file = locks_ / "host";
    const take_result taken = is_user_login() ? take_shared(file, host_shared_, attempt_.note)
                                              : take_file(file, LOCK_EX, host_file_, attempt_.note);
    switch (taken) {
      case take_result::acquired: return step::go_on;
      case take_result::in_use: return in_use();
      case take_result::no_space: return step::no_room;
      case take_result::failed: break;
    }
    std::string error = std::move(attempt_.note);
    attempt_.note.clear();
    return failed(std::move(error));
  }

  /// The user's byte of the shared locks/host: no file, no descriptor of
  /// its own.
  step take_user_byte() {
    const int code = host_shared_->take_user(user_byte_);
    if (code == 0) return step::go_on;
    host_shared_.reset();
    if (code == EWOULDBLOCK) return in_use();
    return failed("cannot lock " + (locks_ / "host").string() + " for user " + encoded_ + ": " + std::strerror(code));
  }

  /// No inode to spare: the whole host, exclusively, on HOST/ itself
  /// (every login holds it shared while it takes its locks) and on
  /// locks/host if that exists (every login holds it once it has its
  /// locks). That excludes every login of the host on this punt and no
  /// other.
  step whole_host(base::unique_fd folder) {
    host_file_.reset();
    host_shared_.reset();
    if (const step s = hold(folder, LOCK_EX, folder_); s != step::go_on) return s;
    const auto file = locks_ / "host";
    base::unique_fd host_file(detail::open_retry(file.c_str(), O_RDWR | O_CLOEXEC | O_NOFOLLOW));
    if (host_file.valid()) {
      if (const step s = hold(host_file, LOCK_EX, file); s != step::go_on) return s;
    }
    attempt_.note += "; holding the whole host's folder instead";
    return acquired(std::make_unique<maildrop_lock>(std::move(folder), std::move(host_file)));
  }

  // The three outcomes, recorded in attempt_.
  step acquired(std::unique_ptr<maildrop_lock> lock) {
    attempt_.result = outcome::acquired;
    attempt_.lock = std::move(lock);
    return step::decided;
  }
  /// Another login holds what this one needs.
  step in_use() {
    attempt_.result = outcome::in_use;
    return step::decided;
  }
  step failed(std::string error) {
    attempt_.result = outcome::failed;
    attempt_.error = std::move(error);
    return step::decided;
  }

  const std::filesystem::path& root_;
  const std::string_view user_;
  const bool create_punt_;
  std::filesystem::path folder_;  // ROOT/HOST
  std::filesystem::path locks_;   // ROOT/HOST/locks
  std::string encoded_;           // the user as file names and lock bytes have it
  std::uint64_t user_byte_ = 0;
  base::unique_fd host_file_;                       // locks/host, a host login's
  std::shared_ptr<shared_lock_file> host_shared_;  // locks/host, shared by user logins
  lock_attempt attempt_;
};

}  // namespace

lock_attempt lock_maildrop(const std::filesystem::path& root, std::string_view host, std::string_view user,
                           bool create_punt) {
  return maildrop_login(root, user, create_punt).lock(host);
}

}  // namespace sdps::spoolstore
