#pragma once
/// @file
/// local_spool: one punt's spool folder as a module instance. It answers no
/// command; it offers the services `sdps::spool` (locks, for the lock
/// module) and `sdps::maildrop_source` (snapshots, for merge or commands).
/// Settings: README.md beside this file.

#include "spoolstore/store.hpp"

#include <sdps/maildrop.hpp>
#include <sdps/module.hpp>

#include <atomic>
#include <filesystem>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <vector>

namespace sdps::local {

// The spool store library is this module's vocabulary (entry, scan,
// maildrop_lock ...): used unqualified here and in local_spool.cpp.
using namespace sdps::spoolstore;

/// One session's snapshot of one punt: the message files of its login
/// found at open(), in arrival order. All calls on the session's event loop.
class local_maildrop final : public sdps::maildrop {
 public:
  /// `folder` is ROOT/HOST; `files` come from list_messages(). `server`
  /// and `log` must outlive the maildrop (they belong to the module instance).
  local_maildrop(std::string punt, std::filesystem::path folder, const identity& login, listing files,
                 server_context& server, logger& log);

  std::size_t count() const override { return infos_.size(); }
  const message_info& info(std::size_t index) const override { return infos_.at(index); }
  awaitable<std::unique_ptr<body_source>> retrieve(std::size_t index, retrieval how) override;
  awaitable<sdps::envelope> envelope(std::size_t index) override;
  awaitable<removal_result> remove(std::vector<std::size_t> indexes) override;

  /// The message file behind message `index` (for tests and logs).
  std::filesystem::path file(std::size_t index) const { return file_text(index); }
  /// The same as one string, built without std::filesystem::path (RETR's path).
  std::string file_text(std::size_t index) const;

 private:
  /// The dummy notice for a message that left the spool, cut for TOP: the
  /// one this session made first for the message, so its Date and
  /// Message-ID stay the same at every RETR and TOP of it. It says why the
  /// message left when a departure record says so (delivered by SMTP,
  /// expired and returned to its sender, expired), else that it was removed.
  std::string dummy(std::size_t index, std::optional<std::uint64_t> body_lines);
  /// The envelope recipient rebuilt from the file name (for a message gone
  /// before its envelope was read), or empty.
  std::string recipient_from_name(std::size_t index) const;

  std::string punt_;
  std::filesystem::path folder_;
  identity login_;
  std::vector<message_info> infos_;
  listing files_;  // the file names, in the order of infos_
  /// Envelopes and read flags seen while the files were there, so *ENV
  /// still has an answer after SMTP takes a message. By message index;
  /// only messages RETR, TOP or *ENV opened (nothing per message at login).
  std::unordered_map<std::size_t, sdps::envelope> known_;
  /// The dummy notice of each message that left the spool, as first made
  /// (whole), by index.
  std::unordered_map<std::size_t, std::string> notices_;
  server_context& server_;
  logger& log_;
};

/// A host folder whose size (st_size) is at most this is listed on the
/// session's own event loop; a bigger one on the blocking pool. Reading a
/// small folder (a few hundred messages: about 800 on tmpfs, 150 on ext4)
/// costs less than handing the work to another thread and back.
inline constexpr std::uintmax_t loop_listing_max = 16 * 1024;

/// The module instance.
class local_spool final : public sdps::module, public sdps::spool, public sdps::maildrop_source {
 public:
  /// Reads `punt`, `path` and `locking`; provides both services. Throws
  /// config_error when the punt's folder is not configured.
  explicit local_spool(module_config& config);

  // sdps::spool
  const std::string& punt() const override { return punt_; }
  /// flock()s the maildrop in the punt's folder (store.hpp: lock_maildrop),
  /// creating the host's folder and locks/ if missing; always `acquired`
  /// without touching files when `locking: false`. The punt folder itself
  /// is created (with its parents) only while it has never been seen since
  /// start-up; one that vanished after makes the punt `unavailable`, never
  /// an empty maildrop (docs/spool.md, "Who creates the folders").
  awaitable<lock_status> lock(session& s, const identity& who) override;
  void unlock(session& s) override;
  /// A probe of the punt folder, on the blocking pool: up when it is a
  /// folder the process may read, write and search, or when it has never
  /// been seen since start-up (the first login creates it); down when it
  /// is missing after it was seen, or cannot be used (the reason).
  std::unique_ptr<punt_probe> make_probe(executor ex) override;
  /// Sessions holding a maildrop lock on this punt (none with `locking: false`).
  std::size_t sessions() const override { return holders_.value(); }
  /// What make_probe()'s probe finds, looked at now (blocking: a stat and
  /// an access check). Any thread.
  punt_health look_at_folder();

  // sdps::maildrop_source
  /// Scans ROOT/HOST, on the session's loop when the folder is small
  /// (loop_listing_max), else on the blocking pool; a missing host folder
  /// is an empty maildrop. Throws spool_error if this session does not hold this
  /// punt's lock (unless `locking: false`), if the folder cannot be read,
  /// or (with `locking: false`) if the punt folder vanished after it was
  /// seen.
  awaitable<std::shared_ptr<sdps::maildrop>> open(session& s, const identity& who) override;

  const std::filesystem::path& root() const { return root_; }

  /// As the configured user: whether it can write the punt's folder and
  /// its host folders and read their messages (spoolstore::check_access).
  std::vector<std::string> check() const override;

 private:
  struct session_state {
    std::unique_ptr<maildrop_lock> lock;
    session_count::hold held;  // while `lock` is set
  };

  /// Notes that ROOT exists (true) or, if it does not, whether it ever did.
  bool punt_folder_seen();

  std::string punt_;
  std::filesystem::path root_;
  bool locking_;
  server_context& server_;
  logger& log_;
  /// ROOT existed at start-up or has existed since: from then on a missing
  /// ROOT is an unmounted or removed punt, not a new one.
  std::atomic<bool> seen_{false};
  session_count holders_;
  slot_key<session_state> state_;
};

}  // namespace sdps::local
