#pragma once
// One version of a hosts file in memory, compact: what the file store
// serves lookups from, and what `sdps host list/export/import` read a big
// file with. docs/hoststore.md: the layout and the memory it takes.

#include "hostdb/file.hpp"
#include "hostdb/password.hpp"
#include "hostdb/record.hpp"

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sdps::hostdb {

/// Memory of its own from the kernel (an anonymous mapping), so that
/// freeing it gives it back at once whatever the allocator's arenas do.
/// Grows by mremap, which moves pages rather than copying them.
class mapped_buffer {
 public:
  mapped_buffer() = default;
  ~mapped_buffer();
  mapped_buffer(mapped_buffer&& other) noexcept;
  mapped_buffer& operator=(mapped_buffer&& other) noexcept;
  mapped_buffer(const mapped_buffer&) = delete;
  mapped_buffer& operator=(const mapped_buffer&) = delete;

  /// Appends `n` octets; throws std::bad_alloc when the kernel refuses.
  void append(const void* data, std::size_t n);
  /// Keeps the first `size` octets (no more than size()) and gives back the rest.
  void truncate(std::size_t size);
  /// Gives back the capacity beyond size().
  void shrink();
  char* data() { return data_; }
  const char* data() const { return data_; }
  std::size_t size() const { return size_; }
  std::size_t capacity() const { return capacity_; }
  /// Drops everything and unmaps.
  void clear();
  /// Makes room for `wanted` octets in all (address space only: pages are
  /// taken when written).
  void reserve(std::size_t wanted);

 private:
  char* data_ = nullptr;
  std::size_t size_ = 0;
  std::size_t capacity_ = 0;
};

/// The hosts of one hosts file, sorted by name, in two buffers: the
/// records packed one after the other, and the records' offsets in name
/// order. About 70% of the file's size (the Argon2id parameter strings
/// that most hashes share are stored once), nothing per host on the heap.
/// Immutable once read; find() and for_each() are safe from any number of
/// threads at once.
class host_table {
 public:
  host_table() = default;
  host_table(host_table&&) noexcept = default;
  host_table& operator=(host_table&&) noexcept = default;

  /// Reads and parses `file` in pieces (never the whole text in memory).
  /// A missing file is an empty table (stamp().exists == false). Each
  /// malformed line (and each later line of a host listed twice) is
  /// skipped and reported in problems(), in line order. Throws like
  /// load(): insecure_file for a bad mode, std::system_error when the
  /// file exists but cannot be read.
  static host_table read(const std::filesystem::path& file);
  /// The same from text in memory (tests, benchmarks).
  static host_table parse(std::string_view text);

  /// The host named `name` (normalised), or nullopt.
  std::optional<host_record> find(std::string_view name) const;
  bool contains(std::string_view name) const;
  std::size_t size() const { return count_; }
  const std::vector<problem>& problems() const { return problems_; }
  const file_stamp& stamp() const { return stamp_; }
  /// Octets held by the table's buffers (what it costs in memory).
  std::size_t memory() const;
  /// Calls `each` for every host, in name order.
  void for_each(const std::function<void(const host_record&)>& each) const;
  /// How many hashes have each Argon2id cost (the auth module's dummy
  /// hash takes the most common one).
  std::map<hash_cost, std::size_t> costs() const;

  /// How a host differs between two versions.
  enum class difference { added, changed, removed };
  /// Calls `each` with the name of every host that is in only one of the
  /// tables or holds another record (hashes, prefixes) in each, in name
  /// order. One walk through both; no copy of either.
  static void differences(const host_table& before, const host_table& after,
                          const std::function<void(std::string_view, difference)>& each);

 private:
  class builder;
  std::string_view name_at(std::uint32_t offset) const;
  host_record decode(std::uint32_t offset) const;
  /// The record at `offset` as its canonical octets (shared heads expanded).
  std::string canonical(std::uint32_t offset) const;
  const std::uint32_t* index() const { return reinterpret_cast<const std::uint32_t*>(index_.data()); }
  std::size_t lower_bound(std::string_view name) const;

  mapped_buffer records_;
  mapped_buffer index_;             ///< uint32_t offsets into records_, by name
  std::vector<std::string> heads_;  ///< shared "$argon2id$v=19$m=..,t=..,p=..$" prefixes
  std::size_t count_ = 0;
  std::vector<problem> problems_;
  file_stamp stamp_;
};

/// The text of a hosts file for `table`: format()'s header and lines.
std::string format(const host_table& table);

}  // namespace sdps::hostdb
