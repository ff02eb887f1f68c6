#pragma once
/// @file
/// The spool on disk: listing a host's messages, locking a maildrop,
/// reading, flagging and removing message files. Blocking calls, safe from
/// any thread; no shared state besides the files themselves.
///
/// Layout under a punt's root (docs/spool.md has the full story):
///   ROOT/HOST/UIDL,s=SIZE,u=USER   one file per message and recipient
///   ROOT/HOST/tmp/                 deliveries in progress
///   ROOT/HOST/locks/host           flock: exclusive = host login, shared = user logins;
///                                  and one byte per user (user_lock_byte), write-locked
///                                  with an open file description lock = that user's login

#include "spoolstore/format.hpp"

#include <sdps/log.hpp>

#include <filesystem>
#include <memory>
#include <optional>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace sdps::spoolstore {

/// ROOT/HOST. Throws std::invalid_argument unless valid_host(host).
std::filesystem::path host_dir(const std::filesystem::path& root, std::string_view host);

/// Creates ROOT/HOST, and `sub` inside it, if missing, with an fsync of
/// each parent whose entries changed. A missing ROOT is created with its
/// missing parents when `create_punt`; otherwise it is an error (io_error
/// with code ENOENT): a punt folder that vanished is more likely an
/// unmounted file system than an empty spool. Throws io_error.
void ensure_host_dir(const std::filesystem::path& root, std::string_view host, const char* sub, bool create_punt);

/// fsyncs a folder, so that entries created or removed in it are durable.
/// Throws io_error.
void sync_dir(const std::filesystem::path& dir);

/// One message found by scan().
struct entry {
  file_name name;    ///< what the file name says
  std::string file;  ///< the file name itself, inside ROOT/HOST
};

/// A host's messages as one pass over its folder finds them: every file
/// name in one buffer and a small record per message, so that listing
/// 100,000 messages makes a handful of allocations, not hundreds of
/// thousands. Sorted by UIDL (= arrival order).
struct listing {
  struct message {
    std::int64_t arrival = 0;   ///< name_view::arrival
    std::uint64_t random = 0;   ///< name_view::random
    std::uint64_t size = 0;     ///< octets RETR sends (s=)
    std::uint32_t name_at = 0;  ///< where the file name starts in `names`
    std::uint32_t name_length = 0;
  };
  std::string names;               ///< the file names, back to back
  std::vector<message> messages;   ///< in UIDL order, one per UIDL

  std::size_t size() const { return messages.size(); }
  /// The file name of message `i`, inside ROOT/HOST.
  std::string_view file(std::size_t i) const {
    return std::string_view(names).substr(messages[i].name_at, messages[i].name_length);
  }
  /// Its UIDL: how its file name begins.
  std::string_view uidl(std::size_t i) const { return file(i).substr(0, uidl_length); }

  /// The length of every UIDL (new_uidl()).
  static constexpr std::size_t uidl_length = 34;
};

/// The messages of HOST in ROOT, as scan() (below) finds them: one pass
/// over the folder with getdents64 into a large buffer, no file opened or
/// stat()ed, every name parsed in place, sorted as integers.
listing list_messages(const std::filesystem::path& root, std::string_view host, std::string_view user, logger* log);

/// The messages of HOST in ROOT with one readdir and no file opened,
/// sorted by UIDL (= arrival order). With a non-empty `user` (a local
/// part), only messages whose recipient's local part equals it, ignoring
/// ASCII case. A missing host folder is an empty spool. Entries that are
/// not message names (or not regular files, where the file system says)
/// are skipped and logged to `log` if given (the first few by name, then a
/// count). Throws io_error if the folder exists but cannot be read.
std::vector<entry> scan(const std::filesystem::path& root, std::string_view host, std::string_view user,
                        logger* log);

/// The byte of `locks/host` that a user login write-locks, for a user
/// name as encode_user() gives it: the first 8 octets of its unkeyed
/// BLAKE2b-128 digest (libsodium's crypto_generichash), read
/// little-endian, with the top two bits cleared (0 to 2^62 - 1). Part of
/// the spool format (docs/spool.md, Locks): every process sharing a spool
/// must compute the same byte. Two users with the same byte exclude each
/// other; one user always has one byte.
std::uint64_t user_lock_byte(std::string_view encoded_user);

/// A shared flock (LOCK_SH) on one lock file, held by one open file for
/// every holder in this process (lock_maildrop's user logins share
/// `locks/host` so): the file is closed, and the flock released, when the
/// last holder lets go. Through that same open file its holders write-lock
/// their user bytes (open file description locks, F_OFD_SETLK), which it
/// also records, since the kernel never sets two locks of one open file
/// against each other. Thread-safe.
class shared_lock_file;

/// A held maildrop lock: flocks on open files, or a user's byte of the
/// shared `locks/host`, released by the destructor (or by the process's
/// death).
class maildrop_lock {
 public:
  /// A host login: `host_fd` (locks/host, exclusive), its own open file.
  explicit maildrop_lock(int host_fd) : host_fd_(host_fd) {}
  /// A user login: `host_shared` (locks/host, shared) and, through it, the
  /// user's byte `user_byte` (write-locked; the destructor unlocks it
  /// before letting go of `host_shared`). No open file of its own.
  maildrop_lock(std::shared_ptr<shared_lock_file> host_shared, std::uint64_t user_byte)
      : host_shared_(std::move(host_shared)), user_byte_(user_byte) {}
  /// The no-space fallback: HOST/ itself held exclusively (`folder_fd`),
  /// and locks/host exclusively too when it exists (`host_fd`, or -1).
  maildrop_lock(int folder_fd, int host_fd) : folder_fd_(folder_fd), host_fd_(host_fd) {}
  /// The lock of a host with no folder on this punt: nothing is held, and
  /// the maildrop is empty for the whole session (no_folder()).
  maildrop_lock() : no_folder_(true) {}
  ~maildrop_lock();
  maildrop_lock(const maildrop_lock&) = delete;
  maildrop_lock& operator=(const maildrop_lock&) = delete;

  /// The host had no folder at lock time: list nothing, whatever arrives.
  bool no_folder() const { return no_folder_; }

 private:
  int folder_fd_ = -1;
  int host_fd_ = -1;
  std::shared_ptr<shared_lock_file> host_shared_;
  std::uint64_t user_byte_ = 0;
  bool no_folder_ = false;
};

/// Result of lock_maildrop().
struct lock_attempt {
  enum class outcome { acquired, in_use, failed } result = outcome::failed;
  std::unique_ptr<maildrop_lock> lock;  ///< set when acquired
  std::string error;                    ///< why, when failed
  std::string note;                     ///< acquired in the no-space fallback: why (for the log)
};

/// Locks HOST's maildrop in ROOT without waiting (docs/spool.md, Locks):
/// - a missing HOST/ is created (mode 0700); when that fails for lack of
///   space (ENOSPC, EDQUOT), the maildrop is empty: acquired, nothing
///   created, nothing held (maildrop_lock::no_folder(), note says so);
/// - otherwise HOST/ itself is flocked shared while the locks are taken
///   (so a login holding the whole host in the fallback below excludes
///   this one), then a host login (empty `user`) takes HOST/locks/host
///   exclusively, a user login takes it shared and write-locks the user's
///   byte of it (user_lock_byte of encode_user(user)), creating locks/ and
///   the file on demand; HOST/ is let go once they are held. A held lock
///   costs a host login one open file, and a user login none of its own:
///   all of this process's user logins of a host share one open file;
/// - when locks/ or locks/host cannot be created for lack of space
///   (ENOSPC, EDQUOT), HOST/ is flocked exclusively instead (note says
///   so), and locks/host too if it exists: that excludes every other
///   login of the host, and needs no inode.
/// Two calls conflict as two processes' would, also within one process
/// and across threads (the shared flock on locks/host is counted per
/// holder; the user bytes its open file holds are recorded beside it). A
/// lock file replaced between open and flock is noticed (fstat against
/// stat) and opened afresh. A missing ROOT is created only when
/// `create_punt` (ensure_host_dir's rule).
lock_attempt lock_maildrop(const std::filesystem::path& root, std::string_view host, std::string_view user,
                           bool create_punt = false);

/// An open message file: its envelope, read flag, and the RETR stream.
/// Opening reads the file's first block (envelope header and, for a
/// small message, all of it) in one read; the stream serves what that
/// read brought before reading on.
class message_file {
 public:
  /// Opens `file`. Null if it does not exist (SMTP took it). Throws
  /// io_error if it cannot be read or its envelope header is damaged
  /// (code() EBADMSG).
  static std::unique_ptr<message_file> open(const std::filesystem::path& file);
  /// The same, for a path already in one string (the hot path: no
  /// std::filesystem::path is built).
  static std::unique_ptr<message_file> open(std::string file);
  ~message_file();
  message_file(const message_file&) = delete;
  message_file& operator=(const message_file&) = delete;

  const envelope_header& envelope() const { return envelope_; }
  /// The persistent read flag, as it was when the file was opened (or
  /// set through set_read_flag()).
  bool read_flag() const { return read_; }
  /// Sets the read flag through this open file (no second open), unless
  /// it is set. The file may have left the spool meanwhile: harmless.
  /// Throws io_error.
  void set_read_flag();
  /// Octets RETR sends: Return-Path line + stored message.
  std::uint64_t retr_size() const;

  /// Starts (or restarts) the stream RETR sends, before dot-stuffing: the
  /// Return-Path line, then the stored message; with `body_lines`, only
  /// the header and that many body lines (TOP).
  void rewind(std::optional<std::uint64_t> body_lines);
  /// Fills as much of `buffer` as the stream has left; 0 at the end (known
  /// from the file's size: no read for it). Reads the file piece by piece
  /// (never all of it at once). Throws io_error on a read error.
  std::size_t read(std::span<char> buffer);

 private:
  message_file(int fd, std::string path) : fd_(fd), path_(std::move(path)) {}

  int fd_;
  std::string path_;
  envelope_header envelope_;
  std::uint64_t body_offset_ = 0;
  std::uint64_t file_size_ = 0;
  bool read_ = false;
  /// The file's first octets, as open() read them.
  std::string head_;
  /// The Return-Path line RETR sends first (built once, at open).
  std::string prefix_;
  // stream state
  std::size_t prefix_sent_ = 0;
  std::uint64_t offset_ = 0;  // into the stored message (after the envelope)
  top_filter top_{std::nullopt};
};

/// The read flag of `file`: nullopt if it is gone. Throws io_error.
std::optional<bool> read_flag(const std::filesystem::path& file);
/// Sets the read flag (the owner-execute permission bit) without renaming
/// the file. False if the file is gone. Throws io_error.
bool set_read_flag(const std::filesystem::path& file);

/// Unlinks `file`. True if it is gone now (including when it was already
/// gone); false with `error` set otherwise.
bool remove_message(const std::filesystem::path& file, std::string& error);

/// Removes files in ROOT/HOST/tmp older than `max_age_seconds`: what a
/// crashed delivery left behind (never visible as a message). Best effort;
/// returns how many were removed.
std::size_t sweep_tmp(const std::filesystem::path& host_folder, std::int64_t max_age_seconds);

}  // namespace sdps::spoolstore
