// Listing a host's messages: one pass over its folder with getdents64,
// every name parsed in place, sorted by UIDL.

#include "spoolstore/listing.hpp"

#include "base/descriptor.hpp"
#include "spoolstore/detail.hpp"
#include "spoolstore/store.hpp"

#include <dirent.h>
#include <fcntl.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdint>
#include <memory>

namespace sdps::spoolstore {

namespace {

/// Junk entries named in the log per scan; the rest are only counted.
constexpr std::size_t junk_named = 10;

/// What one getdents64 call may fill: small enough that the names are
/// still in the CPU's cache when they are parsed, large enough that a
/// 50,000-message folder takes about eighty calls.
constexpr std::size_t dirent_buffer = 64 * 1024;

/// UIDL order: (arrival, random) orders as the UIDL text does (fixed-width
/// digits); equal UIDLs, which only hand-made copies have, by file name.
bool uidl_before(const listing& l, const listing::message& a, const listing::message& b) {
  if (a.arrival != b.arrival) return a.arrival < b.arrival;
  if (a.random != b.random) return a.random < b.random;
  return std::string_view(l.names).substr(a.name_at, a.name_length) <
         std::string_view(l.names).substr(b.name_at, b.name_length);
}

/// Sorts l.messages by uidl_before. A comparison sort of tens of thousands
/// of random keys spends its time in mispredicted branches: a radix sort
/// on the arrival time (11 bits a pass, as many passes as the times'
/// spread needs) instead, then the runs of equal arrival times, which are
/// short, by comparison.
void sort_by_uidl(listing& l) {
  auto& m = l.messages;
  const auto before = [&l](const listing::message& a, const listing::message& b) { return uidl_before(l, a, b); };
  if (m.size() < 512) {
    std::sort(m.begin(), m.end(), before);
    return;
  }
  const auto [lowest, highest] = std::minmax_element(
      m.begin(), m.end(), [](const listing::message& a, const listing::message& b) { return a.arrival < b.arrival; });
  const std::int64_t base = lowest->arrival;
  const auto spread = static_cast<std::uint64_t>(highest->arrival - base);
  constexpr unsigned bits = 11;
  std::vector<listing::message> scratch(m.size());
  for (unsigned shift = 0; shift < 64 && (spread >> shift) != 0; shift += bits) {
    std::array<std::size_t, (1u << bits) + 1> start{};
    const auto digit = [&](const listing::message& x) {
      return (static_cast<std::uint64_t>(x.arrival - base) >> shift) & ((1u << bits) - 1);
    };
    for (const auto& x : m) ++start[digit(x) + 1];
    for (std::size_t d = 1; d < start.size(); ++d) start[d] += start[d - 1];
    for (const auto& x : m) scratch[start[digit(x)]++] = x;
    m.swap(scratch);
  }
  for (std::size_t i = 0; i < m.size();) {
    std::size_t j = i + 1;
    while (j < m.size() && m[j].arrival == m[i].arrival) ++j;
    if (j - i > 1) std::sort(m.begin() + static_cast<std::ptrdiff_t>(i), m.begin() + static_cast<std::ptrdiff_t>(j), before);
    i = j;
  }
}

}  // namespace

listing list_messages(const std::filesystem::path& root, std::string_view host, std::string_view user,
                      logger* log) {
  const auto folder = host_dir(root, host);
  listing out;
  const base::unique_fd fd(detail::open_retry(folder.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW));
  if (!fd.valid()) {
    const int code = errno;
    if (code == ENOENT) return out;  // no mail has ever come for this host here
    if (code == ELOOP || code == ENOTDIR) detail::refuse_link(folder);
    detail::fail("cannot read spool folder", folder, code);
  }
  const std::string wanted = user.empty() ? std::string() : encode_user(user);
  std::size_t junk = 0;
  auto junk_entry = [&](std::string_view name, const char* why) {
    if (log && junk < junk_named)
      log->warning("spool ", folder.string(), ": ignoring '", printable(name, 80), "' (", why, ")");
    ++junk;
  };
  const auto buffer = std::make_unique_for_overwrite<char[]>(dirent_buffer);
  for (;;) {
    const ssize_t filled = ::getdents64(fd.get(), buffer.get(), dirent_buffer);
    if (filled < 0) {
      if (errno == EINTR) continue;
      detail::fail("cannot read spool folder", folder, errno);
    }
    if (filled == 0) break;
    for (ssize_t at = 0; at < filled;) {
      // The kernel's linux_dirent64 records, which glibc's dirent64 describes.
      const auto* d = reinterpret_cast<const struct dirent64*>(buffer.get() + at);
      at += d->d_reclen;
      const std::string_view name(d->d_name);
      if (name.empty() || name.front() == '.') continue;  // ".", "..", NFS silly-renames, dot files
      if (name == tmp_folder || name == locks_folder || name == gone_folder) continue;
      const auto parsed = parse_name_view(name);
      if (!parsed) {
        junk_entry(name, "not a message file name");
        continue;
      }
      if (d->d_type != DT_REG && d->d_type != DT_UNKNOWN) {
        junk_entry(name, "not a regular file");
        continue;
      }
      if (!wanted.empty() && parsed->user != wanted) continue;
      if (out.names.size() + name.size() > UINT32_MAX) detail::fail("too many messages in spool folder", folder, EOVERFLOW);
      out.messages.push_back({parsed->arrival, parsed->random, parsed->size,
                              static_cast<std::uint32_t>(out.names.size()), static_cast<std::uint32_t>(name.size())});
      out.names.append(name);
    }
  }
  sort_by_uidl(out);
  // A UIDL names one message: a second file claiming it (a hand-made
  // copy) would break UIDL's promise, so only the first one counts.
  std::size_t kept = 0;
  for (std::size_t i = 0; i < out.messages.size(); ++i) {
    const listing::message& m = out.messages[i];
    if (kept > 0 && m.arrival == out.messages[kept - 1].arrival && m.random == out.messages[kept - 1].random) {
      junk_entry(std::string_view(out.names).substr(m.name_at, m.name_length), "duplicate UIDL");
      continue;
    }
    out.messages[kept++] = m;
  }
  out.messages.resize(kept);
  if (log && junk > junk_named)
    log->warning("spool ", folder.string(), ": ignored ", junk - junk_named, " more entries");
  return out;
}

std::vector<entry> scan(const std::filesystem::path& root, std::string_view host, std::string_view user,
                        logger* log) {
  const listing found = list_messages(root, host, user, log);
  std::vector<entry> out;
  out.reserve(found.size());
  for (std::size_t i = 0; i < found.size(); ++i) {
    const std::string_view file = found.file(i);
    out.push_back(entry{*parse_name(file), std::string(file)});
  }
  return out;
}

}  // namespace sdps::spoolstore
