#pragma once
// The host store on a hosts file (store.hpp). Lookups are answered from a
// host_table in memory; a thread of the store's own watches the file
// (inotify on its folder, and a stat every check_interval), parses a new
// version beside the table in force, and swaps it in: no lookup ever
// waits for a re-read. docs/hoststore.md.

#include "hostdb/store.hpp"

namespace sdps::hostdb {

/// The file store. See open_store() for what the constructor throws;
/// `owner` is location::owner (check_place(), at start and at every look
/// at the file).
std::unique_ptr<host_store> open_file_store(const std::filesystem::path& file, store_options options,
                                            std::optional<uid_t> owner = std::nullopt);

/// `sdps host ...` on a hosts file: reads with host_table, edits with
/// edit() (the file's lock, an atomic replace); each operation first
/// refuses a file or folder check_place() refuses.
std::unique_ptr<host_admin> open_file_admin(const std::filesystem::path& file, std::chrono::milliseconds lock_wait,
                                            std::optional<uid_t> owner = std::nullopt);

}  // namespace sdps::hostdb
