#pragma once
// The host store: where sdpsd and `sdps host` find the hosts. `hosts:` in
// the config names a hosts file or a PostgreSQL database (libpq URI), and
// both offer the same two faces:
//   host_store  what the server needs at each login: an asynchronous
//               lookup that never blocks an event loop, change
//               notifications, health;
//   host_admin  what the admin tool needs: blocking reads and edits,
//               import and export of the file format, init.
// docs/hoststore.md: threading, the schema, notifications and outages.

#include <sdps/asio.hpp>
#include <sdps/log.hpp>

#include "base/account.hpp"
#include "hostdb/file.hpp"
#include "hostdb/password.hpp"
#include "hostdb/record.hpp"

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <iosfwd>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace sdps::hostdb {

/// Where `hosts:` points.
struct location {
  enum class kind { file, postgresql };
  kind type = kind::file;
  std::filesystem::path file;  ///< kind::file: the path, resolved
  std::string uri;             ///< kind::postgresql: the libpq URI, as written
  /// kind::file: who besides root may own the file and its folder (the
  /// config's `user:`); nullopt: the process's effective user (check_place).
  std::optional<uid_t> owner;
  /// The path or the URI, for messages (the URI never holds a password).
  std::string to_string() const;
};

/// Reads the `hosts:` value. One that starts with `postgresql://` or
/// `postgres://` is a libpq connection URI (checked by libpq's own parser;
/// a password in it is refused: libpq reads it from ~/.pgpass, `passfile=`
/// or PGPASSFILE); anything else is a file path, resolved against `base`
/// (the config file's folder). Throws std::invalid_argument saying what is
/// wrong.
location locate(std::string_view hosts, const std::filesystem::path& base);

// ---------------------------------------------------------------------------
// The server's face.

enum class lookup_status {
  found,        ///< `record` is the host's
  unknown,      ///< the store has no such host
  malformed,    ///< the store has the host but its record is unusable (bad hash
                ///< or prefix, logged with the reason): refuse the host
  unavailable,  ///< the store cannot answer now (database down or slow, file
                ///< unreadable): a temporary failure, -ERR [SYS/TEMP]
};

struct lookup_result {
  lookup_status status = lookup_status::unavailable;
  host_record record;  ///< when found
  std::string detail;  ///< why malformed or unavailable, for the log; never a hash
  /// Answered from a version older than the one the store now knows of
  /// (the hosts file changed and its re-read is under way): a refusal
  /// built on it may be undone by the new version (host_store::catch_up()).
  bool stale = false;
  /// Unavailable because what the store holds can no longer be trusted (a
  /// hosts file that became unreadable or writable by others: anyone may
  /// have changed it), not because it cannot be reached: what a cache
  /// remembers of it must not vouch for a login either (fail closed).
  bool untrusted = false;
};

/// What a change notification says.
struct host_change {
  std::string host;    ///< the host whose record changed, was added or removed
  bool every = false;  ///< every host may have changed (host is empty): a
                       ///< bulk change, or notifications that may have been missed
};

/// How a host_store runs. The callbacks are called on the store's own
/// thread (never an event loop's), one at a time; they must not block
/// for long and must not call back into the store's destructor.
struct store_options {
  /// Where the store logs its state changes, reloads and bad data (required).
  logger* log = nullptr;
  /// Each change of a host (to drop what is cached about it).
  std::function<void(const host_change&)> changed;
  /// Each change of health (up or down), after it was logged; also once
  /// at start with the first state.
  std::function<void(bool up)> health;

  // PostgreSQL
  std::size_t pool_size = 2;  ///< connections for lookups (1 to 64)
  std::chrono::milliseconds connect_timeout{5000};
  std::chrono::milliseconds query_timeout{2000};  ///< a lookup's whole wait, pool queue included
  std::chrono::milliseconds retry_min{200};       ///< reconnect backoff: first wait,
  std::chrono::milliseconds retry_max{5000};      ///< doubling up to this
  std::size_t max_waiting = 1000;                 ///< lookups queued for a connection; more are unavailable

  // File
  /// How often the file is stat()ed besides the inotify watch (which sees
  /// renames and writes in its folder at once; the timer catches what it
  /// cannot: NFS, a symlink's target changing).
  std::chrono::milliseconds check_interval{1000};
  /// A changed file smaller than this (about 10,000 hosts, re-read in a
  /// few milliseconds) is waited for by the lookups that find it changed,
  /// so that the next login sees a change; a bigger one is not (lookup()).
  std::uint64_t wait_for_reread_below = 2u << 20;
  /// Tests only: called on the reader thread after a changed file was
  /// parsed and before its table is swapped in.
  std::function<void()> before_swap;
};

/// The server's view of the hosts. One instance serves every event loop:
/// every member is safe to call from any thread at once.
class host_store {
 public:
  virtual ~host_store() = default;
  /// The record of `host` (normalised: "sample"). Never blocks the caller:
  /// the file store answers from memory, the PostgreSQL store queries on
  /// its own thread; either way the coroutine resumes on the caller's
  /// executor. The name is only ever a query parameter. While the store is
  /// down the answer is `unavailable` at once.
  ///
  /// The file store looks at the file's stamp (one stat) first. When the
  /// file changed and its re-read is under way, the lookup waits for the
  /// re-read (at most query_timeout) if the file is small (under
  /// store_options::wait_for_reread_below: a few milliseconds) or the
  /// host is missing from the version in force (a host just added logs in
  /// at once); otherwise it answers from the version in force, `stale` set.
  virtual awaitable<lookup_result> lookup(std::string host) = 0;
  /// Resumes (on the caller's executor) once the store answers from the
  /// newest version it knows of: at once unless a changed hosts file is
  /// being re-read, then when the re-read is done, or after query_timeout.
  /// For a refusal built on a `stale` answer: look up again afterwards.
  /// The PostgreSQL store always answers from the database: at once.
  virtual awaitable<void> catch_up() = 0;
  /// True while lookups can be answered (the metric sdps_host_store_up).
  virtual bool up() const = 0;
  /// Blocks (the caller's thread: start-up, before serving) until the
  /// store has tried to come up, or `limit` has passed; returns up(). The
  /// file store is up or not from the start; the PostgreSQL store is
  /// decided once every pool connection has been tried once.
  virtual bool wait_ready(std::chrono::milliseconds limit) = 0;
  /// The Argon2id cost most of the stored hashes have, when the store
  /// can tell without work (the file store counts them at each load);
  /// nullopt when it cannot (PostgreSQL) or has no hashes. The auth
  /// module's dummy hash takes it, so that an unknown host costs what a
  /// known one does.
  virtual std::optional<hash_cost> usual_cost() const = 0;
  /// `sdpsd --check` and start-up (the main thread, before serving; may
  /// block up to query_timeout): what stops the store from serving that
  /// will not pass by itself, one line each saying what to do. The file
  /// store: what keeps this process (run as the config's `user:` by
  /// --check) from reading it or writing its folder (check_access). The
  /// PostgreSQL store: a database without the schema, or one that refuses
  /// sdpsd's lookup (grants). A
  /// database that is down or unreachable is no such problem: it may come
  /// back, and the store logs it.
  virtual std::vector<std::string> check(const base::account* user) = 0;
  /// The file's path or the database URI, for logs.
  virtual std::string where() const = 0;
  /// SIGHUP: the file store checks its file now (on its thread; the
  /// caller does not wait), logs "unchanged" when it is, and reads a
  /// version it refused before again; the PostgreSQL store retries a
  /// broken connection now instead of at the end of its backoff.
  virtual void reload() = 0;
};

/// Opens the store `where` names and starts its thread. The file store
/// reads the file before returning: malformed lines are logged and
/// skipped; an unreadable or insecure file throws (std::system_error,
/// insecure_file), which sdpsd reports as a config error. The PostgreSQL
/// store connects in the background: a database that is down at start is
/// a store that is down (logged), not an error. Throws
/// std::invalid_argument for bad options. The store must outlive every
/// lookup in flight: destroy it after the event loops have stopped.
std::unique_ptr<host_store> open_store(const location& where, store_options options);

// ---------------------------------------------------------------------------
// The admin tool's face.

/// The store cannot be reached (database down, refused the login): a
/// temporary failure, EX_TEMPFAIL in the tool. what() says why.
class store_unavailable : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// The store refused an operation (a constraint, a missing schema, a
/// malformed row in the way). what() says why.
class store_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// The host's row cannot be used (a hash that is not an Argon2id string,
/// a prefix that does not parse: written by hand). what() names the host
/// and the field, never a hash.
class malformed_row : public store_error {
 public:
  using store_error::store_error;
};

enum class edit_outcome { changed, unchanged, no_host };

/// What an import did.
struct import_summary {
  std::size_t hosts = 0;  ///< in the file
  std::size_t added = 0;
  std::size_t changed = 0;
  std::size_t removed = 0;
};

/// Which password.
enum class password_kind { dialup, pop3 };

/// Blocking administration of a store, for `sdps host ...` (one thread).
/// Names are normalised by the caller (normalise_host). Every operation
/// throws store_unavailable when the store cannot be reached, and the
/// file store's edits throw busy and malformed_file as edit() does.
class host_admin {
 public:
  virtual ~host_admin() = default;
  /// The file's path or the database URI, for messages.
  virtual std::string where() const = 0;
  /// Creates the schema (idempotent: run again, it changes nothing but
  /// brings the trigger up to date). Returns one line for the admin. A
  /// file store has nothing to create and says so.
  virtual std::string init() = 0;
  /// The host's record; nullopt if there is none. Throws malformed_row
  /// for a row that cannot be used.
  virtual std::optional<host_record> find(std::string_view name) = 0;
  /// Calls `each` for every host, in name order (octet order). Malformed
  /// lines or rows are skipped and returned.
  virtual std::vector<problem> list(const std::function<void(const host_record&)>& each) = 0;
  /// Adds a host; false (and no change) if one with that name exists.
  virtual bool add(const host_record& record) = 0;
  /// Read-modify-write of one host, atomic against other editors:
  /// `change` edits the record and returns whether it changed anything
  /// (false: nothing is written).
  virtual edit_outcome edit(std::string_view name, const std::function<bool(host_record&)>& change) = 0;
  /// Removes a host; false if there was none.
  virtual bool remove(std::string_view name) = 0;
  /// Makes the store hold exactly the hosts of `file` (a hosts file), in
  /// one transaction: all or nothing. A file with malformed lines changes
  /// nothing and throws malformed_file.
  virtual import_summary import_file(const std::filesystem::path& file) = 0;
  /// Writes every host in the file format (format()'s header and lines)
  /// to `out`; returns the malformed rows, which are left out.
  virtual std::vector<problem> export_to(std::ostream& out) = 0;

  /// Sets one password hash (empty: clears it); false if there is no host.
  bool set_password(std::string_view name, password_kind which, const std::string& hash);
  /// Sets the dialup prefixes; false if there is no host.
  bool set_dialup(std::string_view name, const std::vector<prefix>& dialup);
};

/// The admin face of the store `where` names. Connects at once for a
/// database (throws store_unavailable if it cannot); `lock_wait` is how
/// long a file edit waits for another editor's lock.
std::unique_ptr<host_admin> open_admin(const location& where,
                                       std::chrono::milliseconds lock_wait = std::chrono::seconds(30));

// ---------------------------------------------------------------------------
// The mail programs' face.

/// Host look-ups for the programs that take or send mail for customer
/// hosts (`sdps deliver`, `lmtp`, `flush`, `expire`, `spool list`):
/// blocking, one at a time (a mutex: several threads may share one).
/// A hosts file is read at the first look-up and again when its stamp
/// changes; a database is asked through one admin connection, made at
/// the first look-up and again after it failed.
class host_finder {
 public:
  explicit host_finder(location where);
  ~host_finder();
  host_finder(const host_finder&) = delete;
  host_finder& operator=(const host_finder&) = delete;

  /// The record of `host` (normalised): found; unknown; malformed (the
  /// database has a row for it that cannot be used: the host exists, but
  /// its record cannot be read; a hosts file's malformed lines are skipped,
  /// so there it is unknown); or unavailable (the file cannot be read, the
  /// database cannot be reached or refused the query: a temporary failure
  /// for mail). `detail` says why. Never throws for the store's failures.
  lookup_result find(std::string_view host);
  /// The file's path or the database URI, for messages.
  std::string where() const { return where_.to_string(); }

 private:
  class file_version;
  const location where_;
  std::mutex mutex_;  // one look-up at a time
  std::unique_ptr<file_version> file_;
  std::unique_ptr<host_admin> admin_;
};

}  // namespace sdps::hostdb
