#pragma once
/// @file
/// The spool on disk: a punt's folders (here), listing a host's messages
/// (listing.hpp), locking a maildrop (locks.hpp), reading, flagging and
/// removing message files (message_file.hpp). Including this header
/// includes them all. Blocking calls, safe from any thread; no shared
/// state besides the files themselves (and, for locks, this process's
/// record of the lock files it holds).
///
/// Layout under a punt's root (docs/spool.md has the full story):
///   ROOT/HOST/UIDL,s=SIZE,u=USER   one file per message and recipient
///   ROOT/HOST/tmp/                 deliveries in progress
///   ROOT/HOST/gone/UIDL            why a message left (departure.hpp)
///   ROOT/HOST/locks/host           flock: exclusive = host login, shared = user logins;
///                                  and one byte per user (user_lock_byte), write-locked
///                                  with an open file description lock = that user's login

#include "spoolstore/departure.hpp"
#include "spoolstore/format.hpp"
#include "spoolstore/listing.hpp"
#include "spoolstore/locks.hpp"
#include "spoolstore/message_file.hpp"

#include <cstdint>
#include <filesystem>
#include <string_view>

namespace sdps::spoolstore {

/// ROOT/HOST. Throws std::invalid_argument unless valid_host(host).
std::filesystem::path host_dir(const std::filesystem::path& root, std::string_view host);

/// Creates ROOT/HOST, and `sub` inside it, if missing, with an fsync of
/// each parent whose entries changed. A missing ROOT is created with its
/// missing parents when `create_punt`; otherwise it is an error (io_error
/// with code ENOENT): a punt folder that vanished is more likely an
/// unmounted file system than an empty spool. A HOST or `sub` that is a
/// symbolic link is refused (io_error with code ELOOP, naming the link):
/// the spool never follows one. Throws io_error.
void ensure_host_dir(const std::filesystem::path& root, std::string_view host, const char* sub, bool create_punt);

/// fsyncs a folder, so that entries created or removed in it are durable.
/// Throws io_error.
void sync_dir(const std::filesystem::path& dir);

/// Removes files in ROOT/HOST/tmp older than `max_age_seconds`: what a
/// crashed delivery left behind (never visible as a message). Best effort;
/// returns how many were removed.
std::size_t sweep_tmp(const std::filesystem::path& host_folder, std::int64_t max_age_seconds);

}  // namespace sdps::spoolstore
