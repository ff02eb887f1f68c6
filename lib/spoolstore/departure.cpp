// Departure records: HOST/gone/UIDL, "WORD TIME_US\n".

#include "spoolstore/departure.hpp"

#include "base/descriptor.hpp"
#include "spoolstore/detail.hpp"
#include "spoolstore/store.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <memory>

namespace sdps::spoolstore {

namespace {

/// A record is one short line; anything longer is not one.
constexpr std::size_t max_record = 64;

std::optional<departure> parse_word(std::string_view word) {
  for (const departure d : {departure::delivered, departure::returned, departure::expired})
    if (word == to_string(d)) return d;
  return std::nullopt;
}

}  // namespace

const char* to_string(departure why) {
  switch (why) {
    case departure::delivered: return "delivered";
    case departure::returned: return "returned";
    case departure::expired: return "expired";
  }
  return "?";
}

bool record_departure(const std::filesystem::path& file, departure why, std::string& error) {
  const auto name = parse_name(file.filename().string());
  if (!name) {
    error = "not a message file name: " + file.string();
    return false;
  }
  const auto host_folder = file.parent_path();
  const auto gone = host_folder / gone_folder;
  try {
    ensure_host_dir(host_folder.parent_path(), host_folder.filename().string(), gone_folder, false);
  } catch (const std::exception& e) {
    error = e.what();
    return false;
  }
  std::string text = to_string(why);
  text += ' ';
  text += std::to_string(now_us());
  text += '\n';
  // Under a dot name first (never a UIDL): a reader sees the whole record
  // or none.
  const auto temporary = gone / ("." + name->uidl + "." + std::to_string(::getpid()));
  base::unique_fd fd(detail::open_retry(temporary.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!fd.valid()) {
    error = "cannot create " + temporary.string() + ": " + std::strerror(errno);
    return false;
  }
  ssize_t written;
  do written = ::write(fd.get(), text.data(), text.size());
  while (written < 0 && errno == EINTR);
  const int write_error = written < 0 ? errno : written != static_cast<ssize_t>(text.size()) ? EIO : 0;
  const int close_error = fd.close();
  if (write_error || close_error || ::rename(temporary.c_str(), (gone / name->uidl).c_str()) != 0) {
    const int code = write_error ? write_error : close_error ? close_error : errno;
    ::unlink(temporary.c_str());
    error = "cannot write " + (gone / name->uidl).string() + ": " + std::strerror(code);
    return false;
  }
  return true;
}

std::optional<departure> recorded_departure(const std::filesystem::path& host_folder, std::string_view uidl) {
  if (uidl.empty() || uidl.find('/') != std::string_view::npos || uidl.front() == '.') return std::nullopt;
  const auto file = host_folder / gone_folder / std::string(uidl);
  base::unique_fd fd(detail::open_retry(file.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (!fd.valid()) return std::nullopt;
  char buffer[max_record];
  ssize_t n;
  do n = ::read(fd.get(), buffer, sizeof buffer);
  while (n < 0 && errno == EINTR);
  if (n <= 0) return std::nullopt;
  const std::string_view text(buffer, static_cast<std::size_t>(n));
  return parse_word(text.substr(0, text.find_first_of(" \n")));
}

std::size_t sweep_departures(const std::filesystem::path& host_folder, std::int64_t max_age_seconds) {
  const auto gone = host_folder / gone_folder;
  if (detail::link_problem(gone)) return 0;
  const std::unique_ptr<DIR, int (*)(DIR*)> dir(::opendir(gone.c_str()), ::closedir);
  if (!dir) return 0;
  const std::time_t limit = std::time(nullptr) - max_age_seconds;
  std::size_t removed = 0;
  while (const dirent* d = ::readdir(dir.get())) {
    const std::string_view name = d->d_name;
    if (name == "." || name == "..") continue;
    struct stat st;
    if (::fstatat(::dirfd(dir.get()), d->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
    if (!S_ISREG(st.st_mode) || st.st_mtime >= limit) continue;
    if (::unlinkat(::dirfd(dir.get()), d->d_name, 0) == 0) ++removed;
  }
  return removed;
}

bool depart(const std::filesystem::path& file, departure why, std::string& error, std::string& note) {
  std::string record_error;
  if (!record_departure(file, why, record_error))
    note = record_error + " (the message's notice, for a POP3 session that listed it, will only say it was removed)";
  return remove_message(file, error);
}

}  // namespace sdps::spoolstore
