#pragma once
// The hosts file: one host per line (the format is described in
// modules/auth/README.md and in format() below), read and parsed, written
// atomically, edited under a lock. Nothing here touches an event loop:
// every function is plain blocking code, safe on any thread.

#include "hostdb/record.hpp"

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <sys/types.h>

namespace sdps::hostdb {

/// True if `hosts_file` lists `host` (already normalised). Reads the file;
/// for the delivery agent, which runs once per message. A missing file
/// lists no host (false); a malformed line lists nothing. Throws
/// std::system_error when the file exists but cannot be read, which the
/// caller should treat as a temporary failure, not as "unknown host".
bool host_exists(const std::filesystem::path& hosts_file, std::string_view host);


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
  std::uint32_t mode = 0;   ///< so that a chmod counts as a change
  std::uint32_t owner = 0;  ///< and a chown
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

/// Parses one host line (not blank, not a comment): NAME PREFIXES DIALUP-HASH
/// POP3-HASH. Returns nullopt and sets `why` (which never quotes a hash)
/// when the line is malformed. Duplicates are the caller's business.
std::optional<host_record> parse_line(std::string_view line, std::string& why);

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

/// Throws insecure_file when someone sdps does not trust could change the
/// hosts file `file`: the file or the folder holding it owned by a user
/// other than root and `owner` (the user sdps works as, the config's
/// `user:`; nullopt: this process's effective user), or that folder
/// writable by its group or others without the sticky bit (anyone could
/// rename another file over it). what() names the path, the risk and the
/// chown or chmod to run. A missing file is checked for its folder only;
/// a missing folder passes (the file is missing too).
void check_place(const std::filesystem::path& file, std::optional<uid_t> owner);

/// Reads and parses `file`. A missing file is an empty database
/// (stamp.exists == false). Throws insecure_file for a bad mode
/// (check_mode), std::system_error when the file exists but cannot be read.
load_result load(const std::filesystem::path& file);

/// The file text for `db`: a comment header, then one line per host in
/// name order. parse(format(db)) gives back db.
std::string format(const database& db);

/// The comment header format() starts the file with.
std::string_view format_header();
/// Appends the line of `r` (with its LF) to `out`: what format() writes.
void append_line(std::string& out, const host_record& r);

/// Opens `file` as load() does (a regular file, its mode checked) and
/// calls `each` with every line, LF removed (a CR before it is kept), in
/// file order, reading in pieces so that the whole text is never in
/// memory. Returns the stamp of the version read; a missing file gives
/// `exists == false` and no call. Throws like load().
file_stamp read_lines(const std::filesystem::path& file, const std::function<void(std::string_view line)>& each);

/// Replaces `file` with `text` atomically, as save() does (same mode and
/// owner rules). Callers that read-modify-write must hold an edit_lock.
void save_text(const std::filesystem::path& file, std::string_view text);

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

}  // namespace sdps::hostdb
