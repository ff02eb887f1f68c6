// A punt's folders: host folders, their tmp/, durability of folder
// entries; and what the other files of lib/spoolstore share (detail.hpp).

#include "spoolstore/store.hpp"

#include "base/descriptor.hpp"
#include "spoolstore/detail.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <memory>
#include <stdexcept>

namespace sdps::spoolstore {

namespace detail {

void fail(const std::string& what, const std::string& path, int code) {
  throw io_error(what + " " + path + ": " + std::strerror(code), code);
}

void fail(const std::string& what, const std::filesystem::path& path, int code) { fail(what, path.native(), code); }

int open_retry(const char* path, int flags, mode_t mode) {
  int fd;
  do fd = ::open(path, flags, mode);
  while (fd < 0 && errno == EINTR);
  return fd;
}

bool no_space(int code) { return code == ENOSPC || code == EDQUOT; }

std::optional<std::string> link_problem(const std::filesystem::path& path) {
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0 || !S_ISLNK(st.st_mode)) return std::nullopt;
  std::error_code ec;
  const auto target = std::filesystem::read_symlink(path, ec);
  std::string out = path.string();
  out += " is a symbolic link";
  if (!ec) out.append(" to ").append(target.string());
  out += ": sdps never follows a link inside a punt (a host folder and its tmp/, locks/ and gone/ must be "
         "folders of their own); remove the link";
  return out;
}

void refuse_link(const std::filesystem::path& path) {
  if (auto problem = link_problem(path)) throw io_error(*problem, ELOOP);
}

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

}  // namespace detail

namespace {

// Creates `dir`; true if it was created now, false if it existed.
bool make_dir(const std::filesystem::path& dir) {
  if (::mkdir(dir.c_str(), 0700) == 0) return true;
  if (errno == EEXIST) return false;
  detail::fail("cannot create folder", dir, errno);
}

}  // namespace

std::filesystem::path host_dir(const std::filesystem::path& root, std::string_view host) {
  if (!valid_host(host)) throw std::invalid_argument("not a valid host name: '" + printable(host, 70) + "'");
  return root / std::string(host);
}

void sync_dir(const std::filesystem::path& dir) {
  base::unique_fd fd(detail::open_retry(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd.valid()) detail::fail("cannot open folder", dir, errno);
  const int rc = ::fsync(fd.get());
  const int code = errno;
  fd.reset();
  // Some file systems cannot fsync a folder; they make no promise to break.
  if (rc != 0 && code != EINVAL && code != EROFS) detail::fail("cannot sync folder", dir, code);
}

void ensure_host_dir(const std::filesystem::path& root, std::string_view host, const char* sub, bool create_punt) {
  const auto folder = host_dir(root, host);
  if (detail::reach_punt(root, create_punt)) {
    try {
      sync_dir(root.parent_path().empty() ? std::filesystem::path(".") : root.parent_path());
    } catch (const io_error&) {
      // The punt's parent may belong to someone else; the folders below
      // are what must be durable.
    }
  }
  // What existed already is checked: a link there is refused, never followed.
  if (make_dir(folder))
    sync_dir(root);
  else
    detail::refuse_link(folder);
  if (!sub) return;
  if (make_dir(folder / sub))
    sync_dir(folder);
  else
    detail::refuse_link(folder / sub);
}

std::size_t sweep_tmp(const std::filesystem::path& host_folder, std::int64_t max_age_seconds) {
  const auto tmp = host_folder / tmp_folder;
  const std::unique_ptr<DIR, int (*)(DIR*)> dir(::opendir(tmp.c_str()), ::closedir);
  if (!dir) return 0;
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
