#include "hostdb/hostdb.hpp"

#include <fcntl.h>
#include <sodium.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <system_error>
#include <thread>
#include <utility>

namespace sdps::hostdb {

namespace {

namespace ip = boost::asio::ip;

char lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

std::string lowered(std::string_view text) {
  std::string out(text);
  for (char& c : out) c = lower(c);
  return out;
}

bool all_digits(std::string_view text) {
  return !text.empty() && std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; });
}

unsigned width(const ip::address& a) { return a.is_v4() ? 32 : 128; }

ip::address_v6::bytes_type masked(ip::address_v6::bytes_type bytes, unsigned length) {
  for (unsigned i = 0; i < bytes.size(); ++i) {
    const unsigned first_bit = i * 8;
    if (length >= first_bit + 8) continue;
    const unsigned keep = length > first_bit ? length - first_bit : 0;
    bytes[i] = static_cast<unsigned char>(bytes[i] & static_cast<unsigned char>(0xff00u >> keep));
  }
  return bytes;
}

std::uint32_t masked(std::uint32_t value, unsigned length) {
  return length == 0 ? 0 : value & (0xffffffffu << (32 - length));
}

// An IPv4-mapped IPv6 address (::ffff:a.b.c.d, what a dual-stack listener
// reports for an IPv4 client) as the IPv4 address it is.
ip::address unmapped(const ip::address& a) {
  if (a.is_v6() && a.to_v6().is_v4_mapped()) return ip::make_address_v4(ip::v4_mapped, a.to_v6());
  return a;
}

ip::address_v6 as_v6(const ip::address& a) {
  return a.is_v6() ? a.to_v6() : ip::make_address_v6(ip::v4_mapped, a.to_v4());
}

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
  return s;
}

class fd_guard {
 public:
  explicit fd_guard(int fd) : fd_(fd) {}
  ~fd_guard() {
    if (fd_ >= 0) ::close(fd_);
  }
  fd_guard(const fd_guard&) = delete;
  fd_guard& operator=(const fd_guard&) = delete;
  int get() const { return fd_; }
  int release() { return std::exchange(fd_, -1); }

 private:
  int fd_;
};

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

// One host line; nullopt and `why` set when malformed.
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
      const auto p = prefix::parse(item);
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

struct cost_params {
  unsigned long long ops;
  std::size_t mem;
};

cost_params params(cost c) {
  switch (c) {
    case cost::min: return {crypto_pwhash_argon2id_OPSLIMIT_MIN, crypto_pwhash_argon2id_MEMLIMIT_MIN};
    case cost::interactive:
      return {crypto_pwhash_argon2id_OPSLIMIT_INTERACTIVE, crypto_pwhash_argon2id_MEMLIMIT_INTERACTIVE};
    case cost::moderate: return {crypto_pwhash_argon2id_OPSLIMIT_MODERATE, crypto_pwhash_argon2id_MEMLIMIT_MODERATE};
    case cost::sensitive:
      return {crypto_pwhash_argon2id_OPSLIMIT_SENSITIVE, crypto_pwhash_argon2id_MEMLIMIT_SENSITIVE};
  }
  throw std::logic_error("unknown password cost");
}

}  // namespace

// --- prefix ---------------------------------------------------------------

std::optional<prefix> prefix::parse(std::string_view text) {
  if (text.empty() || text.size() > 64) return std::nullopt;
  for (char c : text)
    if (!(std::isxdigit(static_cast<unsigned char>(c)) || c == '.' || c == ':' || c == '/')) return std::nullopt;
  const auto slash = text.find('/');
  const std::string address_text(text.substr(0, slash));
  boost::system::error_code ec;
  ip::address address = ip::make_address(address_text, ec);
  if (ec) return std::nullopt;
  unsigned length = width(address);
  if (slash != std::string_view::npos) {
    const std::string_view length_text = text.substr(slash + 1);
    if (!all_digits(length_text) || length_text.size() > 3) return std::nullopt;
    length = static_cast<unsigned>(std::stoul(std::string(length_text)));
    if (length > width(address)) return std::nullopt;
  }
  if (address.is_v6() && address.to_v6().is_v4_mapped() && length >= 96) {
    address = unmapped(address);
    length -= 96;
  }
  prefix p;
  p.length = length;
  if (address.is_v4())
    p.network = ip::address_v4(masked(address.to_v4().to_uint(), length));
  else
    p.network = ip::address_v6(masked(address.to_v6().to_bytes(), length));
  return p;
}

bool prefix::contains(const ip::address& a) const {
  const ip::address client = unmapped(a);
  if (network.is_v4()) {
    if (!client.is_v4()) return false;
    return masked(client.to_v4().to_uint(), length) == network.to_v4().to_uint();
  }
  // An IPv6 network (say ::/0) is compared in IPv6 terms, with an IPv4
  // client seen as its mapped form, so the answer does not depend on
  // whether the listener was IPv4 or dual-stack.
  return masked(as_v6(client).to_bytes(), length) == network.to_v6().to_bytes();
}

std::string prefix::to_string() const {
  std::string out = network.to_string();
  if (length != width(network)) out += "/" + std::to_string(length);
  return out;
}

bool host_record::dialup_from(const ip::address& a) const {
  return std::any_of(dialup.begin(), dialup.end(), [&](const prefix& p) { return p.contains(a); });
}

// --- names ------------------------------------------------------------------

std::string normalise_host(std::string_view text, std::string_view customer_domain) {
  std::string name = lowered(text);
  if (!customer_domain.empty()) {
    const std::string suffix = "." + lowered(customer_domain);
    if (name.size() > suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0)
      name.resize(name.size() - suffix.size());
  }
  if (name.empty() || name.size() > 63 || name.front() == '-' || name.back() == '-') return {};
  for (char c : name)
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) return {};
  return name;
}

bool host_exists(const std::filesystem::path& hosts_file, std::string_view host) {
  return load(hosts_file).hosts.find(host) != nullptr;
}

// --- database -----------------------------------------------------------------

const host_record* database::find(std::string_view name) const {
  const auto it = hosts_.find(name);
  return it == hosts_.end() ? nullptr : &it->second;
}

host_record* database::find(std::string_view name) {
  const auto it = hosts_.find(name);
  return it == hosts_.end() ? nullptr : &it->second;
}

bool database::add(host_record record) {
  std::string name = record.name;
  return hosts_.emplace(std::move(name), std::move(record)).second;
}

bool database::remove(std::string_view name) {
  const auto it = hosts_.find(name);
  if (it == hosts_.end()) return false;
  hosts_.erase(it);
  return true;
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

load_result load(const std::filesystem::path& file) {
  const int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return {};
    fail_errno("cannot open " + file.string());
  }
  fd_guard guard(fd);
  struct stat st {};
  if (::fstat(fd, &st) != 0) fail_errno("cannot stat " + file.string());
  if (!S_ISREG(st.st_mode)) throw std::system_error(EINVAL, std::generic_category(), file.string() + " is not a file");
  check_mode(file, static_cast<std::uint32_t>(st.st_mode));
  load_result out = parse(read_all(fd, file));
  out.stamp = stamp_of(st);
  return out;
}

std::string format(const database& db) {
  std::string out =
      "# sdps host database, written by `sdps host ...` (see modules/auth/README.md).\n"
      "# One host per line: NAME DIALUP-PREFIXES DIALUP-HASH POP3-HASH\n"
      "# (prefixes comma-separated; '-' means none / not set).\n";
  for (const auto& [name, r] : db.hosts()) {
    out += name;
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
  return out;
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

void save(const std::filesystem::path& file, const database& db) {
  const std::filesystem::path folder = file.has_parent_path() ? file.parent_path() : std::filesystem::path(".");
  std::filesystem::create_directories(folder);

  struct stat old {};
  const bool replacing = ::stat(file.c_str(), &old) == 0;

  std::string temp = (folder / ("." + file.filename().string() + ".tmp.XXXXXX")).string();
  const int fd = ::mkostemp(temp.data(), O_CLOEXEC);
  if (fd < 0) fail_errno("cannot create a temporary file in " + folder.string());
  fd_guard guard(fd);
  try {
    if (replacing) {
      if (::fchmod(fd, old.st_mode & 07777 & ~static_cast<mode_t>(S_IWGRP | S_IRWXO)) != 0) fail_errno("cannot set the mode of " + temp);
      if (::geteuid() == 0 && ::fchown(fd, old.st_uid, old.st_gid) != 0) fail_errno("cannot set the owner of " + temp);
    } else if (::fchmod(fd, 0600) != 0) {
      fail_errno("cannot set the mode of " + temp);
    }
    write_all(fd, format(db), "cannot write " + temp);
    if (::fsync(fd) != 0) fail_errno("cannot fsync " + temp);
    if (::close(guard.release()) != 0) fail_errno("cannot close " + temp);
    if (::rename(temp.c_str(), file.c_str()) != 0) fail_errno("cannot rename " + temp + " to " + file.string());
  } catch (...) {
    ::unlink(temp.c_str());
    throw;
  }
  // The rename is durable only once the folder is.
  const int dir = ::open(folder.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir < 0) fail_errno("cannot open " + folder.string());
  fd_guard dir_guard(dir);
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

// --- passwords ------------------------------------------------------------------

std::optional<cost> parse_cost(std::string_view name) {
  if (name == "interactive") return cost::interactive;
  if (name == "moderate") return cost::moderate;
  if (name == "sensitive") return cost::sensitive;
  if (name == "min") return cost::min;
  return std::nullopt;
}

const char* to_string(cost c) {
  switch (c) {
    case cost::min: return "min";
    case cost::interactive: return "interactive";
    case cost::moderate: return "moderate";
    case cost::sensitive: return "sensitive";
  }
  return "?";
}

secret::secret(std::string_view text) : data_(std::make_unique<char[]>(text.size() + 1)), size_(text.size()) {
  std::memcpy(data_.get(), text.data(), text.size());
}

secret::~secret() { clear(); }

secret::secret(secret&& other) noexcept : data_(std::move(other.data_)), size_(std::exchange(other.size_, 0)) {}

secret& secret::operator=(secret&& other) noexcept {
  if (this != &other) {
    clear();
    data_ = std::move(other.data_);
    size_ = std::exchange(other.size_, 0);
  }
  return *this;
}

void secret::clear() {
  if (data_) sodium_memzero(data_.get(), size_ + 1);
  size_ = 0;
}

std::string hash_password(std::string_view password, cost c) {
  const cost_params p = params(c);
  std::array<char, crypto_pwhash_STRBYTES> out{};
  if (crypto_pwhash_str_alg(out.data(), password.data(), password.size(), p.ops, p.mem,
                            crypto_pwhash_ALG_ARGON2ID13) != 0)
    throw std::runtime_error(std::string("Argon2id hashing failed (out of memory?) at cost ") + to_string(c));
  return std::string(out.data());
}

hash_cost parameters(cost c) {
  const cost_params p = params(c);
  return {p.ops, p.mem / 1024};
}

std::optional<hash_cost> cost_of(std::string_view hash) {
  // $argon2id$v=19$m=65536,t=2,p=1$SALT$HASH
  if (!is_hash(hash)) return std::nullopt;
  const auto m = hash.find("$m=");
  if (m == std::string_view::npos) return std::nullopt;
  std::string_view rest = hash.substr(m + 3);
  hash_cost out;
  auto number = [&rest](auto& value) {
    std::size_t i = 0;
    value = 0;
    while (i < rest.size() && rest[i] >= '0' && rest[i] <= '9' && i < 12) value = value * 10 + (rest[i++] - '0');
    rest.remove_prefix(i);
    return i > 0;
  };
  if (!number(out.memory_kib) || rest.substr(0, 3) != ",t=") return std::nullopt;
  rest.remove_prefix(3);
  if (!number(out.ops)) return std::nullopt;
  return out;
}

std::string hash_password(std::string_view password, hash_cost c) {
  std::array<char, crypto_pwhash_STRBYTES> out{};
  if (crypto_pwhash_str_alg(out.data(), password.data(), password.size(), c.ops, c.memory_kib * 1024,
                            crypto_pwhash_ALG_ARGON2ID13) != 0)
    throw std::runtime_error("Argon2id hashing failed (out of memory?) at t=" + std::to_string(c.ops) +
                             ", m=" + std::to_string(c.memory_kib) + " KiB");
  return std::string(out.data());
}

bool is_hash(std::string_view hash) {
  static constexpr std::string_view head = crypto_pwhash_argon2id_STRPREFIX;
  if (hash.size() <= head.size() || hash.size() >= crypto_pwhash_STRBYTES || hash.substr(0, head.size()) != head)
    return false;
  return std::all_of(hash.begin(), hash.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '$' || c == '=' || c == ',' || c == '+' || c == '/';
  });
}

bool verify_password(const std::string& hash, std::string_view password) {
  if (!is_hash(hash)) return false;
  return crypto_pwhash_str_verify(hash.c_str(), password.data(), password.size()) == 0;
}

}  // namespace sdps::hostdb
