#pragma once
/// @file
/// Locking a maildrop (docs/spool.md, Locks): a host login excludes every
/// other login of the host on the punt, a user login the same user and
/// host logins.

#include "base/descriptor.hpp"

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>

namespace sdps::spoolstore {

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
  /// A host login: `host_file` (locks/host, exclusive), its own open file.
  explicit maildrop_lock(base::unique_fd host_file) : host_file_(std::move(host_file)) {}
  /// A user login: `host_shared` (locks/host, shared) and, through it, the
  /// user's byte `user_byte` (write-locked; the destructor unlocks it
  /// before letting go of `host_shared`). No open file of its own.
  maildrop_lock(std::shared_ptr<shared_lock_file> host_shared, std::uint64_t user_byte)
      : host_shared_(std::move(host_shared)), user_byte_(user_byte) {}
  /// The no-space fallback: HOST/ itself held exclusively (`folder`), and
  /// locks/host exclusively too when it exists (`host_file`, else none).
  maildrop_lock(base::unique_fd folder, base::unique_fd host_file)
      : folder_(std::move(folder)), host_file_(std::move(host_file)) {}
  /// The lock of a host with no folder on this punt: nothing is held, and
  /// the maildrop is empty for the whole session (no_folder()).
  maildrop_lock() : no_folder_(true) {}
  ~maildrop_lock();
  maildrop_lock(const maildrop_lock&) = delete;
  maildrop_lock& operator=(const maildrop_lock&) = delete;

  /// The host had no folder at lock time: list nothing, whatever arrives.
  bool no_folder() const { return no_folder_; }

 private:
  // Destroyed in reverse order: the shared file (its last holder closes
  // it), then locks/host, then HOST/. Closing releases the flocks.
  base::unique_fd folder_;
  base::unique_fd host_file_;
  std::shared_ptr<shared_lock_file> host_shared_;
  std::uint64_t user_byte_ = 0;
  bool no_folder_ = false;
};

/// Result of lock_maildrop().
struct lock_attempt {
  enum class outcome { acquired, in_use, failed } result = outcome::failed;
  std::unique_ptr<maildrop_lock> lock;  ///< set when acquired
  std::string error;                    ///< why, when failed
  std::string note;                     ///< acquired with no folder or in the no-space fallback: why (for the log)
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

}  // namespace sdps::spoolstore
