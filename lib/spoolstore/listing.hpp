#pragma once
/// @file
/// Listing a host's messages: one pass over its folder, no file opened.

#include "spoolstore/format.hpp"

#include <sdps/log.hpp>

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

namespace sdps::spoolstore {

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

}  // namespace sdps::spoolstore
