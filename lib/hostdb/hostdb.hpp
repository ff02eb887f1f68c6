#pragma once
// The host database: customer hosts, their dialup addresses and their two
// Argon2id password hashes. Shared by the auth module and the admin tool.
//
// The file format (one host per line) is described in modules/auth/README.md
// and in format() below. Nothing here touches the event loop: every
// function is plain blocking code, safe on any thread.

#include <utility>

#include <boost/asio/ip/address.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace sdps::hostdb {

/// An address prefix: 192.0.2.7, 192.0.2.0/24, 2001:db8::/64.
struct prefix {
  boost::asio::ip::address network;
  unsigned length = 0;
  /// True if `a` is inside (an IPv4-mapped IPv6 address counts as IPv4).
  bool contains(const boost::asio::ip::address& a) const;
  std::string to_string() const;
  /// Parses ADDR or ADDR/LEN; nullopt if malformed.
  ///
  /// The result is canonical: host bits beyond LEN are cleared
  /// (192.0.2.7/24 becomes 192.0.2.0/24), and an IPv4-mapped IPv6 prefix of
  /// length 96 or more becomes the IPv4 prefix it maps (::ffff:192.0.2.7
  /// becomes 192.0.2.7). Scoped addresses (fe80::1%eth0), lengths beyond
  /// the family's width, leading or trailing junk are refused.
  static std::optional<prefix> parse(std::string_view text);
};

struct host_record {
  std::string name;             ///< short, lower case: "sample"
  std::vector<prefix> dialup;   ///< where the dialup password is accepted
  std::string dialup_hash;      ///< crypto_pwhash_str output, or empty (not set)
  std::string pop3_hash;        ///< crypto_pwhash_str output, or empty (not set)

  /// True if `a` (the client's address) is one of the host's dialup addresses.
  bool dialup_from(const boost::asio::ip::address& a) const;
};

/// Turns "Sample", "sample.demon.co.uk" (with `customer_domain`
/// "demon.co.uk") into "sample". Returns empty when the text is not a
/// valid host name (letters, digits, hyphens; 1-63 octets) of that domain.
std::string normalise_host(std::string_view text, std::string_view customer_domain);

/// True if `hosts_file` lists `host` (already normalised). Reads the file;
/// for the delivery agent, which runs once per message. A missing file
/// lists no host (false); a malformed line lists nothing. Throws
/// std::system_error when the file exists but cannot be read, which the
/// caller should treat as a temporary failure, not as "unknown host".
bool host_exists(const std::filesystem::path& hosts_file, std::string_view host);

// ---------------------------------------------------------------------------
// The database in memory, and its file.

/// The hosts, by name (sorted, which is also the order of the file).
class database {
 public:
  using map = std::map<std::string, host_record, std::less<>>;

  /// The host named `name` (normalised), or null.
  const host_record* find(std::string_view name) const;
  host_record* find(std::string_view name);
  /// Adds a host; false (and no change) if one with that name exists.
  bool add(host_record record);
  /// Removes a host; false if there was none.
  bool remove(std::string_view name);
  const map& hosts() const { return hosts_; }
  std::size_t size() const { return hosts_.size(); }

 private:
  map hosts_;
};

/// One malformed line found while reading the file.
struct problem {
  std::size_t line = 0;  ///< 1-based
  std::string message;   ///< what is wrong; never quotes a hash
};

/// Identifies one version of the file cheaply (stat), so the server can
/// notice edits without reading: the editor replaces the file by rename,
/// which changes the inode; a hand edit in place changes mtime or size.
struct file_stamp {
  bool exists = false;
  std::uint64_t device = 0;
  std::uint64_t inode = 0;
  std::uint64_t size = 0;
  std::int64_t mtime_ns = 0;
  std::uint32_t mode = 0;  ///< so that a chmod counts as a change
  bool operator==(const file_stamp&) const = default;
};

/// The stamp of `file` now. A missing file gives `exists == false`.
/// Throws std::system_error when stat fails for another reason.
file_stamp stamp(const std::filesystem::path& file);

/// The outcome of reading the database.
struct load_result {
  database hosts;                 ///< every well-formed line
  std::vector<problem> problems;  ///< every malformed line (skipped)
  file_stamp stamp;               ///< of the version read (exists == false: no file)
};

/// Parses the text of a hosts file. Never throws for bad content: each
/// malformed line (bad name, bad prefix, bad hash, wrong field count,
/// duplicate host) is skipped and reported.
load_result parse(std::string_view text);

/// The hosts file's mode allows what it must not: writing by group or
/// others (anyone could add a hash and read any host's mail), or reading
/// by others (offline guessing). what() names the file and the fix.
class insecure_file : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// Throws insecure_file when `mode` (st_mode of `file`) is writable by
/// group or others or readable by others: 0600 and 0640 pass.
void check_mode(const std::filesystem::path& file, std::uint32_t mode);

/// Reads and parses `file`. A missing file is an empty database
/// (stamp.exists == false). Throws insecure_file for a bad mode
/// (check_mode), std::system_error when the file exists but cannot be read.
load_result load(const std::filesystem::path& file);

/// The file text for `db`: a comment header, then one line per host in
/// name order. parse(format(db)) gives back db.
std::string format(const database& db);

/// "hosts:3: the dialup prefix 'x' is not an address or prefix", for messages.
std::string describe(const std::filesystem::path& file, const problem& p);

/// The file cannot be edited safely because it holds malformed lines:
/// rewriting it would drop them. what() names the file and every line.
class malformed_file : public std::runtime_error {
 public:
  malformed_file(const std::filesystem::path& file, const std::vector<problem>& problems);
};

/// Another editor held the lock for longer than the wait allowed.
class busy : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// Replaces `file` with the text of `db` atomically: writes a temporary
/// file in the same folder, fsyncs it, renames it over `file` and fsyncs
/// the folder. The new file keeps the old one's owner (when run as root)
/// and mode, less any bit check_mode() refuses (so 0600, or 0640 for a
/// service group that reads it); a first file gets mode 0600. Creates
/// the folder if missing.
/// Callers that read-modify-write must hold an edit_lock (see edit()).
/// Throws std::system_error.
void save(const std::filesystem::path& file, const database& db);

/// An exclusive flock on `FILE.lock` beside the database, serialising
/// editors (sdps host ...). Readers (the server) need no lock: they only
/// ever see a whole old or whole new file, thanks to save()'s rename.
class edit_lock {
 public:
  /// Waits up to `wait` for the lock; throws busy after that, or
  /// std::system_error if the lock file cannot be opened.
  explicit edit_lock(const std::filesystem::path& file,
                     std::chrono::milliseconds wait = std::chrono::seconds(30));
  ~edit_lock();
  edit_lock(const edit_lock&) = delete;
  edit_lock& operator=(const edit_lock&) = delete;

 private:
  int fd_ = -1;
};

/// Read-modify-write under the edit lock: loads `file` (throws
/// malformed_file if any line is malformed), calls `change`, and saves the
/// result if `change` returned true. Returns what `change` returned.
bool edit(const std::filesystem::path& file, const std::function<bool(database&)>& change,
          std::chrono::milliseconds wait = std::chrono::seconds(30));

// ---------------------------------------------------------------------------
// Passwords.

/// Argon2id cost, from the top-level config key `password_cost`.
/// `min` is libsodium's minimum (1 pass, 8 KiB): it makes hashes cheap to
/// crack and exists ONLY for tests and benchmarks.
enum class cost { min, interactive, moderate, sensitive };

/// "interactive", "moderate", "sensitive", "min"; nullopt otherwise.
std::optional<cost> parse_cost(std::string_view name);
const char* to_string(cost c);

/// The longest password a client can send: a POP3 command line is at most
/// 512 octets, and "PASS " and CRLF take 7.
constexpr std::size_t max_password = 505;

/// A password in memory: one fixed buffer, wiped with sodium_memzero when
/// destroyed or cleared. Never copied by accident (move-only).
class secret {
 public:
  secret() = default;
  explicit secret(std::string_view text);
  ~secret();
  secret(secret&& other) noexcept;
  secret& operator=(secret&& other) noexcept;
  secret(const secret&) = delete;
  secret& operator=(const secret&) = delete;

  std::string_view view() const { return {data_.get(), size_}; }
  std::size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  /// Wipes and empties.
  void clear();

 private:
  std::unique_ptr<char[]> data_;
  std::size_t size_ = 0;
};

/// Hashes `password` with Argon2id at `c` (crypto_pwhash_str_alg).
/// Throws std::runtime_error if libsodium fails (out of memory).
std::string hash_password(std::string_view password, cost c);

/// True if `hash` is an Argon2id hash string (the shape stored in the
/// file); says nothing about which password it holds.
bool is_hash(std::string_view hash);

/// The Argon2id parameters a hash was made with (its `t=` and `m=`).
struct hash_cost {
  unsigned long long ops = 0;
  std::size_t memory_kib = 0;
  auto operator<=>(const hash_cost&) const = default;
};

/// The parameters in `hash`; nullopt if it is not an Argon2id hash string.
std::optional<hash_cost> cost_of(std::string_view hash);
/// The parameters `hash_password(.., c)` uses.
hash_cost parameters(cost c);
/// Hashes with explicit parameters (for a dummy that costs what a stored
/// hash costs). Throws std::runtime_error if libsodium fails.
std::string hash_password(std::string_view password, hash_cost c);

/// Constant-time (in the password) Argon2id check. False for a wrong
/// password, and for an empty or malformed hash.
bool verify_password(const std::string& hash, std::string_view password);

}  // namespace sdps::hostdb
