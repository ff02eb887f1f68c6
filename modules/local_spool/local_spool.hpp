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
  awaitable<std::unique_ptr<body_source>> retrieve(std::size_t index,
                                                   std::optional<std::uint64_t> body_lines) override;
  awaitable<void> mark_read(std::size_t index) override;
  awaitable<sdps::envelope> envelope(std::size_t index) override;
  awaitable<removal_result> remove_deleted() override;

  /// The message file behind message `index` (for tests and logs).
  std::filesystem::path file(std::size_t index) const { return file_text(index); }
  /// The same as one string, built without std::filesystem::path (RETR's path).
  std::string file_text(std::size_t index) const;

 private:
  /// The dummy notice for a message that left the spool, cut for TOP.
  std::string dummy(std::size_t index, std::optional<std::uint64_t> body_lines) const;
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
  /// The file retrieve() opened last, while its body is being sent.
  std::weak_ptr<message_file> retrieved_;
  std::size_t retrieved_index_ = 0;
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
  event_set events() const override { return {}; }

  // sdps::spool
  const std::string& punt() const override { return punt_; }
  /// flock()s the maildrop in the punt's folder (store.hpp: lock_maildrop),
  /// creating the host's folder and locks/ if missing; always `acquired`
  /// without touching files when `locking: false`. The punt folder itself
  /// is created (with its parents) only while it has never been seen since
  /// start-up; one that vanished after makes the punt `unavailable`, never
  /// an empty maildrop (docs/spool.md, "Who creates the folders").
  awaitable<lock_status> lock(session& s) override;
  void unlock(session& s) override;

  // sdps::maildrop_source
  /// Scans ROOT/HOST, on the session's loop when the folder is small
  /// (loop_listing_max), else on the blocking pool; a missing host folder
  /// is an empty maildrop. Throws spool_error if this session does not hold this
  /// punt's lock (unless `locking: false`), if the folder cannot be read,
  /// or (with `locking: false`) if the punt folder vanished after it was
  /// seen.
  awaitable<std::shared_ptr<sdps::maildrop>> open(session& s) override;
  std::shared_ptr<sdps::maildrop> current(session& s) override;

  const std::filesystem::path& root() const { return root_; }

 private:
  struct session_state {
    std::unique_ptr<maildrop_lock> lock;
    std::shared_ptr<local_maildrop> drop;
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
};

}  // namespace sdps::local
