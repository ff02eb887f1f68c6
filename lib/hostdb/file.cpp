#include "hostdb/file.hpp"

#include "hostdb/password.hpp"

#include "base/descriptor.hpp"

#include <fcntl.h>
#include <pwd.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <map>
#include <optional>
#include <system_error>
#include <thread>
#include <utility>

namespace sdps::hostdb {

namespace {

[[noreturn]] void fail_errno(const std::string& what) { throw std::system_error(errno, std::generic_category(), what); }

std::string read_all(int fd, const std::filesystem::path& file) {
  std::string text;
  std::array<char, 65536> buffer;
  for (;;) {
    const ssize_t n = ::read(fd, buffer.data(), buffer.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      fail_errno("cannot read " + file.string());
    }
    if (n == 0) break;
    text.append(buffer.data(), static_cast<std::size_t>(n));
  }
  return text;
}

void write_all(int fd, std::string_view text, const std::string& what) {
  while (!text.empty()) {
    const ssize_t n = ::write(fd, text.data(), text.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      fail_errno(what);
    }
    text.remove_prefix(static_cast<std::size_t>(n));
  }
}

file_stamp stamp_of(const struct stat& st) {
  file_stamp s;
  s.exists = true;
  s.device = static_cast<std::uint64_t>(st.st_dev);
  s.inode = static_cast<std::uint64_t>(st.st_ino);
  s.size = static_cast<std::uint64_t>(st.st_size);
  s.mtime_ns = static_cast<std::int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
  s.mode = static_cast<std::uint32_t>(st.st_mode);
  s.owner = static_cast<std::uint32_t>(st.st_uid);
  return s;
}

std::vector<std::string_view> split_fields(std::string_view line) {
  std::vector<std::string_view> out;
  std::size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
    if (i == line.size()) break;
    const std::size_t start = i;
    while (i < line.size() && line[i] != ' ' && line[i] != '\t') ++i;
    out.push_back(line.substr(start, i - start));
  }
  return out;
}

}  // namespace

std::optional<host_record> parse_line(std::string_view line, std::string& why) {
  const auto fields = split_fields(line);
  if (fields.size() != 4) {
    why = "expected 4 fields (host, dialup prefixes, dialup hash, POP3 hash), found " +
          std::to_string(fields.size());
    return std::nullopt;
  }
  host_record r;
  r.name = normalise_host(fields[0], "");
  if (r.name.empty()) {
    why = "'" + std::string(fields[0].substr(0, 80)) + "' is not a valid host name (letters, digits, hyphens)";
    return std::nullopt;
  }
  if (fields[1] != "-") {
    std::string_view rest = fields[1];
    for (;;) {
      const auto comma = rest.find(',');
      const std::string_view item = rest.substr(0, comma);
      const auto p = base::address_prefix::parse(item);
      if (!p) {
        why = "the dialup prefix '" + std::string(item.substr(0, 80)) + "' is not an address or prefix";
        return std::nullopt;
      }
      r.dialup.push_back(*p);
      if (comma == std::string_view::npos) break;
      rest.remove_prefix(comma + 1);
    }
  }
  if (fields[2] != "-") {
    if (!is_hash(fields[2])) {
      why = "the dialup password field is neither '-' nor an Argon2id hash";
      return std::nullopt;
    }
    r.dialup_hash = fields[2];
  }
  if (fields[3] != "-") {
    if (!is_hash(fields[3])) {
      why = "the POP3 password field is neither '-' nor an Argon2id hash";
      return std::nullopt;
    }
    r.pop3_hash = fields[3];
  }
  return r;
}

bool host_exists(const std::filesystem::path& hosts_file, std::string_view host) {
  return load(hosts_file).hosts.find(host) != nullptr;
}

// --- the file -------------------------------------------------------------------

load_result parse(std::string_view text) {
  load_result out;
  std::map<std::string, std::size_t, std::less<>> first_seen;
  std::size_t number = 0;
  while (!text.empty()) {
    const auto end = text.find('\n');
    std::string_view line = text.substr(0, end);
    text.remove_prefix(end == std::string_view::npos ? text.size() : end + 1);
    ++number;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    const auto start = line.find_first_not_of(" \t");
    if (start == std::string_view::npos || line[start] == '#') continue;
    std::string why;
    auto record = parse_line(line, why);
    if (!record) {
      out.problems.push_back({number, why});
      continue;
    }
    const auto [seen, fresh] = first_seen.emplace(record->name, number);
    if (!fresh) {
      out.problems.push_back(
          {number, "host '" + record->name + "' is already listed on line " + std::to_string(seen->second)});
      continue;
    }
    out.hosts.add(std::move(*record));
  }
  return out;
}

file_stamp stamp(const std::filesystem::path& file) {
  struct stat st {};
  if (::stat(file.c_str(), &st) != 0) {
    if (errno == ENOENT) return {};
    fail_errno("cannot stat " + file.string());
  }
  return stamp_of(st);
}

void check_mode(const std::filesystem::path& file, std::uint32_t mode) {
  char octal[8];
  std::snprintf(octal, sizeof octal, "%04o", static_cast<unsigned>(mode & 07777));
  if (mode & (S_IWGRP | S_IWOTH))
    throw insecure_file(file.string() + " is writable by " + ((mode & S_IWOTH) ? "others" : "its group") +
                        " (mode " + octal + "): anyone who can write it can read any host's mail; chmod 600 " +
                        file.string() + " (or 640 with the service's group)");
  if (mode & S_IROTH)
    throw insecure_file(file.string() + " is readable by others (mode " + octal +
                        "): password hashes can be guessed offline; chmod 600 " + file.string() +
                        " (or 640 with the service's group)");
}

namespace {

std::string user_name(uid_t uid) {
  passwd entry{};
  passwd* found = nullptr;
  std::array<char, 4096> buffer;
  if (::getpwuid_r(uid, &entry, buffer.data(), buffer.size(), &found) == 0 && found) return entry.pw_name;
  return std::to_string(uid);
}

// "user 'bob' (uid 1000)", or "uid 1000" for a number without a name.
std::string describe_user(uid_t uid) {
  const std::string name = user_name(uid);
  return name == std::to_string(uid) ? "uid " + name : "user '" + name + "' (uid " + std::to_string(uid) + ")";
}

}  // namespace

void check_place(const std::filesystem::path& file, std::optional<uid_t> owner) {
  const uid_t trusted = owner.value_or(::geteuid());
  // Names are looked up only for a message: the user database may be NSS.
  const auto chown = [trusted] { return "chown " + user_name(trusted) + ": "; };
  const auto trusted_owner = [trusted](uid_t uid) { return uid == 0 || uid == trusted; };
  struct stat st {};
  if (::stat(file.c_str(), &st) == 0) {
    if (!trusted_owner(st.st_uid))
      throw insecure_file(file.string() + " is owned by " + describe_user(st.st_uid) +
                          ", who could rewrite it and read any host's mail; run  " + chown() + file.string());
  } else if (errno != ENOENT) {
    fail_errno("cannot stat " + file.string());
  }
  const std::filesystem::path folder = file.has_parent_path() ? file.parent_path() : std::filesystem::path(".");
  struct stat dir {};
  if (::stat(folder.c_str(), &dir) != 0) {
    if (errno == ENOENT) return;
    fail_errno("cannot stat " + folder.string());
  }
  const std::string holds = folder.string() + ", the folder of the host database " + file.string() + ",";
  if (!trusted_owner(dir.st_uid))
    throw insecure_file(holds + " is owned by " + describe_user(dir.st_uid) +
                        ", who could replace the file and read any host's mail; run  " + chown() + folder.string());
  const mode_t writable = dir.st_mode & (S_IWGRP | S_IWOTH);
  if (writable && !(dir.st_mode & S_ISVTX)) {
    char octal[8];
    std::snprintf(octal, sizeof octal, "%04o", static_cast<unsigned>(dir.st_mode & 07777));
    const bool others = writable & S_IWOTH, group = writable & S_IWGRP;
    throw insecure_file(holds + " is writable by " + (others ? (group ? "its group and others" : "others") : "its group") +
                        " (mode " + octal + "): they could replace the file by rename and read any host's mail; run  chmod " +
                        (others ? (group ? "go-w " : "o-w ") : "g-w ") + folder.string());
  }
}

namespace {

// `file` opened for reading, a regular file with a mode only its owner can
// write (check_mode); `st` its stat. No descriptor when it does not exist.
base::unique_fd open_checked(const std::filesystem::path& file, struct stat& st) {
  base::unique_fd fd(::open(file.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) {
    if (errno == ENOENT) return fd;
    fail_errno("cannot open " + file.string());
  }
  if (::fstat(fd.get(), &st) != 0) fail_errno("cannot stat " + file.string());
  if (!S_ISREG(st.st_mode)) throw std::system_error(EINVAL, std::generic_category(), file.string() + " is not a file");
  check_mode(file, static_cast<std::uint32_t>(st.st_mode));
  return fd;
}

}  // namespace

load_result load(const std::filesystem::path& file) {
  struct stat st {};
  const base::unique_fd fd = open_checked(file, st);
  if (!fd.valid()) return {};
  load_result out = parse(read_all(fd.get(), file));
  out.stamp = stamp_of(st);
  return out;
}

std::string_view format_header() {
  return "# sdps host database, written by `sdps host ...` (see modules/auth/README.md).\n"
         "# One host per line: NAME DIALUP-PREFIXES DIALUP-HASH POP3-HASH\n"
         "# (prefixes comma-separated; '-' means none / not set).\n";
}

void append_line(std::string& out, const host_record& r) {
  out += r.name;
  out += ' ';
  if (r.dialup.empty()) out += '-';
  for (std::size_t i = 0; i < r.dialup.size(); ++i) {
    if (i) out += ',';
    out += r.dialup[i].to_string();
  }
  out += ' ';
  out += r.dialup_hash.empty() ? "-" : r.dialup_hash;
  out += ' ';
  out += r.pop3_hash.empty() ? "-" : r.pop3_hash;
  out += '\n';
}

std::string format(const database& db) {
  std::string out(format_header());
  for (const auto& entry : db.hosts()) append_line(out, entry.second);
  return out;
}

file_stamp read_lines(const std::filesystem::path& file, const std::function<void(std::string_view line)>& each) {
  struct stat st {};
  const base::unique_fd guard = open_checked(file, st);
  if (!guard.valid()) return {};
  const int fd = guard.get();
  std::vector<char> buffer(1 << 20);
  std::string partial;  // a line cut by the end of a piece
  for (;;) {
    const ssize_t n = ::read(fd, buffer.data(), buffer.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      fail_errno("cannot read " + file.string());
    }
    if (n == 0) break;
    std::string_view piece(buffer.data(), static_cast<std::size_t>(n));
    for (;;) {
      const auto end = piece.find('\n');
      if (end == std::string_view::npos) {
        partial.append(piece);
        break;
      }
      if (partial.empty()) {
        each(piece.substr(0, end));
      } else {
        partial.append(piece.substr(0, end));
        each(partial);
        partial.clear();
      }
      piece.remove_prefix(end + 1);
    }
  }
  if (!partial.empty()) each(partial);
  return stamp_of(st);
}

std::string describe(const std::filesystem::path& file, const problem& p) {
  return file.string() + ":" + std::to_string(p.line) + ": " + p.message;
}

namespace {
std::string malformed_text(const std::filesystem::path& file, const std::vector<problem>& problems) {
  std::string out = file.string() + " has malformed lines; fix them by hand first:";
  for (const problem& p : problems) out += "\n  " + describe(file, p);
  return out;
}
}  // namespace

malformed_file::malformed_file(const std::filesystem::path& file, const std::vector<problem>& problems)
    : std::runtime_error(malformed_text(file, problems)) {}

void save(const std::filesystem::path& file, const database& db) { save_text(file, format(db)); }

void save_text(const std::filesystem::path& file, std::string_view text) {
  const std::filesystem::path folder = file.has_parent_path() ? file.parent_path() : std::filesystem::path(".");
  std::filesystem::create_directories(folder);

  struct stat old {};
  const bool replacing = ::stat(file.c_str(), &old) == 0;

  std::string temp = (folder / std::string(".").append(file.filename().string()).append(".tmp.XXXXXX")).string();
  const int fd = ::mkostemp(temp.data(), O_CLOEXEC);
  if (fd < 0) fail_errno("cannot create a temporary file in " + folder.string());
  base::unique_fd guard(fd);
  try {
    if (replacing) {
      if (::fchmod(fd, old.st_mode & 07777 & ~static_cast<mode_t>(S_IWGRP | S_IRWXO)) != 0) fail_errno("cannot set the mode of " + temp);
      if (::geteuid() == 0 && ::fchown(fd, old.st_uid, old.st_gid) != 0) fail_errno("cannot set the owner of " + temp);
    } else if (::fchmod(fd, 0600) != 0) {
      fail_errno("cannot set the mode of " + temp);
    }
    write_all(fd, text, "cannot write " + temp);
    if (::fsync(fd) != 0) fail_errno("cannot fsync " + temp);
    if (const int code = guard.close(); code != 0)
      throw std::system_error(code, std::generic_category(), "cannot close " + temp);
    if (::rename(temp.c_str(), file.c_str()) != 0) fail_errno("cannot rename " + temp + " to " + file.string());
  } catch (...) {
    ::unlink(temp.c_str());
    throw;
  }
  // The rename is durable only once the folder is.
  const int dir = ::open(folder.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir < 0) fail_errno("cannot open " + folder.string());
  const base::unique_fd dir_guard(dir);
  if (::fsync(dir) != 0) fail_errno("cannot fsync " + folder.string());
}

edit_lock::edit_lock(const std::filesystem::path& file, std::chrono::milliseconds wait) {
  const std::filesystem::path folder = file.has_parent_path() ? file.parent_path() : std::filesystem::path(".");
  std::filesystem::create_directories(folder);
  const std::string lock_file = file.string() + ".lock";
  fd_ = ::open(lock_file.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0640);
  if (fd_ < 0) fail_errno("cannot open the lock file " + lock_file);
  const auto deadline = std::chrono::steady_clock::now() + wait;
  for (;;) {
    if (::flock(fd_, LOCK_EX | LOCK_NB) == 0) return;
    const int error = errno;
    if (error == EINTR) continue;
    if (error != EWOULDBLOCK) {
      ::close(fd_);
      throw std::system_error(error, std::generic_category(), "cannot lock " + lock_file);
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      ::close(fd_);
      throw busy("another process is editing the host database (it holds " + lock_file + "); try again later");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

edit_lock::~edit_lock() {
  if (fd_ >= 0) ::close(fd_);  // closing releases the flock
}

bool edit(const std::filesystem::path& file, const std::function<bool(database&)>& change,
          std::chrono::milliseconds wait) {
  edit_lock lock(file, wait);
  load_result current = load(file);
  if (!current.problems.empty()) throw malformed_file(file, current.problems);
  if (!change(current.hosts)) return false;
  save(file, current.hosts);
  return true;
}
}  // namespace sdps::hostdb
