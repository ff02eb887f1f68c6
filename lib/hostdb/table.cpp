#include "hostdb/table.hpp"

#include <sys/mman.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <new>
#include <stdexcept>
#include <utility>

namespace sdps::hostdb {

// A packed record, in records_ (all integers in host order):
//   u8 name length, the name
//   u16 prefix count, then per prefix: u8 family (4 or 6), u8 length,
//     4 or 16 address octets
//   twice (dialup hash, then POP3 hash): u8 head, u8 tail length, the tail
//     head 0: no hash (the tail is empty); 1..254: the hash is
//     heads_[head - 1] followed by the tail; 255: the tail is the whole hash.
// A hash's head is its text up to the fourth '$' ("$argon2id$v=19$m=65536,
// t=2,p=1$"), which every hash made at one cost shares: storing it once is
// what makes the table smaller than the file.

namespace {

namespace ip = boost::asio::ip;

constexpr std::uint8_t no_hash = 0;
constexpr std::uint8_t literal_hash = 255;
constexpr std::size_t max_heads = 254;
constexpr std::size_t page = 4096;

std::size_t rounded(std::size_t n) { return (n + page - 1) / page * page; }

std::string_view head_of(std::string_view hash) {
  std::size_t at = 0;
  for (int dollars = 0; dollars < 4; ++dollars) {
    at = hash.find('$', at);
    if (at == std::string_view::npos) return {};
    ++at;
  }
  return hash.substr(0, at);
}

std::uint16_t read_u16(const char* p) {
  std::uint16_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

}  // namespace

// --- mapped_buffer ------------------------------------------------------------

mapped_buffer::~mapped_buffer() { clear(); }

mapped_buffer::mapped_buffer(mapped_buffer&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)),
      size_(std::exchange(other.size_, 0)),
      capacity_(std::exchange(other.capacity_, 0)) {}

mapped_buffer& mapped_buffer::operator=(mapped_buffer&& other) noexcept {
  if (this != &other) {
    clear();
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
    capacity_ = std::exchange(other.capacity_, 0);
  }
  return *this;
}

void mapped_buffer::clear() {
  if (data_) ::munmap(data_, capacity_);
  data_ = nullptr;
  size_ = capacity_ = 0;
}

void mapped_buffer::reserve(std::size_t wanted) {
  if (wanted <= capacity_) return;
  const std::size_t grown = rounded(std::max(wanted, capacity_ + capacity_ / 2 + (std::size_t(1) << 20)));
  void* p = data_ ? ::mremap(data_, capacity_, grown, MREMAP_MAYMOVE)
                  : ::mmap(nullptr, grown, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) throw std::bad_alloc();
  data_ = static_cast<char*>(p);
  capacity_ = grown;
}

void mapped_buffer::append(const void* data, std::size_t n) {
  if (n == 0) return;
  reserve(size_ + n);
  std::memcpy(data_ + size_, data, n);
  size_ += n;
}

void mapped_buffer::truncate(std::size_t size) {
  if (size < size_) size_ = size;
  shrink();
}

void mapped_buffer::shrink() {
  if (!data_) return;
  if (size_ == 0) {
    clear();
    return;
  }
  const std::size_t wanted = rounded(size_);
  if (wanted >= capacity_) return;
  void* p = ::mremap(data_, capacity_, wanted, 0);  // shrinking in place never moves
  if (p == MAP_FAILED) return;                      // keeping the capacity is harmless
  capacity_ = wanted;
}

// --- building a table -----------------------------------------------------------

class host_table::builder {
 public:
  void line(std::string_view line) {
    ++number_;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    const auto start = line.find_first_not_of(" \t");
    if (start == std::string_view::npos || line[start] == '#') return;
    std::string why;
    const auto record = parse_line(line, why);
    if (!record) {
      table_.problems_.push_back({number_, std::move(why)});
      return;
    }
    pack(*record);
  }

  void reserve(std::uintmax_t file_size) {
    const auto size = static_cast<std::size_t>(std::min<std::uintmax_t>(file_size, std::uintmax_t(1) << 32));
    table_.records_.reserve(size + (1u << 20));
    // One line is at least ~10 octets; a real one ~220.
    const std::size_t lines = size / 64 + 1024;
    table_.index_.reserve(lines * sizeof(std::uint32_t));
    offsets_.reserve(lines * sizeof(std::uint32_t));
    lines_.reserve(lines * sizeof(std::uint32_t));
  }

  host_table finish(file_stamp stamp) {
    host_table& t = table_;
    t.stamp_ = stamp;
    auto* index = reinterpret_cast<std::uint32_t*>(t.index_.data());
    const std::size_t n = t.index_.size() / sizeof(std::uint32_t);
    // By name, and for one name by offset, which is the order of the lines.
    const auto before = [&t](std::uint32_t a, std::uint32_t b) {
      const auto na = t.name_at(a), nb = t.name_at(b);
      return na < nb || (na == nb && a < b);
    };
    if (!std::is_sorted(index, index + n, before)) std::sort(index, index + n, before);
    // A host listed twice: the first line counts, the later ones are problems.
    std::size_t kept = 0;
    for (std::size_t i = 0; i < n; ++i) {
      if (kept > 0 && t.name_at(index[kept - 1]) == t.name_at(index[i])) {
        t.problems_.push_back({line_of(index[i]), "host '" + std::string(t.name_at(index[i])) +
                                                      "' is already listed on line " +
                                                      std::to_string(line_of(index[kept - 1]))});
        continue;
      }
      index[kept++] = index[i];
    }
    t.count_ = kept;
    t.index_.truncate(kept * sizeof(std::uint32_t));
    t.records_.shrink();
    lines_.clear();
    std::stable_sort(t.problems_.begin(), t.problems_.end(),
                     [](const problem& a, const problem& b) { return a.line < b.line; });
    return std::move(table_);
  }

 private:
  // The line a record came from: records_ and lines_ grow together, so the
  // n-th offset in insertion order is the n-th line number.
  std::size_t line_of(std::uint32_t offset) const {
    const auto* offsets = reinterpret_cast<const std::uint32_t*>(offsets_.data());
    const std::size_t n = offsets_.size() / sizeof(std::uint32_t);
    const auto at = std::lower_bound(offsets, offsets + n, offset) - offsets;
    return reinterpret_cast<const std::uint32_t*>(lines_.data())[at];
  }

  void pack(const host_record& r) {
    mapped_buffer& out = table_.records_;
    if (out.size() > 0xfff00000u)
      throw std::length_error("the hosts file is too large for one table (more than 4 GiB of records)");
    const auto offset = static_cast<std::uint32_t>(out.size());
    const auto name_length = static_cast<std::uint8_t>(r.name.size());  // at most 63 (normalise_host)
    out.append(&name_length, 1);
    out.append(r.name.data(), r.name.size());
    if (r.dialup.size() > 0xffff) throw std::length_error("host " + r.name + " has more than 65535 dialup prefixes");
    const auto count = static_cast<std::uint16_t>(r.dialup.size());
    out.append(&count, sizeof count);
    for (const prefix& p : r.dialup) {
      const std::uint8_t family = p.network().is_v4() ? 4 : 6;
      const auto length = static_cast<std::uint8_t>(p.length());
      out.append(&family, 1);
      out.append(&length, 1);
      if (p.network().is_v4()) {
        const auto bytes = p.network().to_v4().to_bytes();
        out.append(bytes.data(), bytes.size());
      } else {
        const auto bytes = p.network().to_v6().to_bytes();
        out.append(bytes.data(), bytes.size());
      }
    }
    pack_hash(r.dialup_hash);
    pack_hash(r.pop3_hash);
    table_.index_.append(&offset, sizeof offset);
    offsets_.append(&offset, sizeof offset);
    const auto line = static_cast<std::uint32_t>(number_);
    lines_.append(&line, sizeof line);
  }

  void pack_hash(std::string_view hash) {
    mapped_buffer& out = table_.records_;
    std::uint8_t code = no_hash;
    std::string_view tail = hash;
    if (!hash.empty()) {
      code = literal_hash;
      const std::string_view head = head_of(hash);
      if (!head.empty()) {
        const auto known = codes_.find(head);
        if (known != codes_.end()) {
          code = known->second;
        } else if (table_.heads_.size() < max_heads) {
          table_.heads_.emplace_back(head);
          code = static_cast<std::uint8_t>(table_.heads_.size());
          codes_.emplace(std::string(head), code);
        }
        if (code != literal_hash) tail.remove_prefix(head.size());
      }
    }
    const auto length = static_cast<std::uint8_t>(tail.size());  // a hash is < 128 octets (is_hash)
    out.append(&code, 1);
    out.append(&length, 1);
    out.append(tail.data(), tail.size());
  }

  host_table table_;
  mapped_buffer offsets_;  // uint32_t, insertion order (for line_of)
  mapped_buffer lines_;    // uint32_t, the line of each record, insertion order
  std::map<std::string, std::uint8_t, std::less<>> codes_;
  std::size_t number_ = 0;
};

host_table host_table::read(const std::filesystem::path& file) {
  builder b;
  // Room for the whole file at once (pages are only taken when written):
  // no growing, which would take the process's memory map lock again and
  // again while the event loops run.
  std::error_code ec;
  const auto size = std::filesystem::file_size(file, ec);
  if (!ec) b.reserve(size);
  const file_stamp stamp = read_lines(file, [&b](std::string_view line) { b.line(line); });
  return b.finish(stamp);
}

host_table host_table::parse(std::string_view text) {
  builder b;
  while (!text.empty()) {
    const auto end = text.find('\n');
    b.line(text.substr(0, end));
    text.remove_prefix(end == std::string_view::npos ? text.size() : end + 1);
  }
  return b.finish({});
}

// --- reading a table ------------------------------------------------------------

std::string_view host_table::name_at(std::uint32_t offset) const {
  const char* p = records_.data() + offset;
  return {p + 1, static_cast<unsigned char>(p[0])};
}

namespace {

// Walks one packed record.
struct cursor {
  const char* p;
  std::uint8_t byte() { return static_cast<std::uint8_t>(*p++); }
  std::string_view text(std::size_t n) {
    std::string_view out(p, n);
    p += n;
    return out;
  }
};

// Past the prefixes, to the hashes.
void skip_prefixes(cursor& c) {
  const std::uint16_t count = read_u16(c.p);
  c.p += sizeof count;
  for (std::uint16_t i = 0; i < count; ++i) {
    const std::uint8_t family = c.byte();
    c.p += 1 + (family == 4 ? 4 : 16);
  }
}

}  // namespace

host_record host_table::decode(std::uint32_t offset) const {
  cursor c{records_.data() + offset};
  host_record r;
  r.name = c.text(c.byte());
  const std::uint16_t count = read_u16(c.p);
  c.p += sizeof count;
  r.dialup.reserve(count);
  for (std::uint16_t i = 0; i < count; ++i) {
    const std::uint8_t family = c.byte();
    const unsigned length = c.byte();
    if (family == 4) {
      ip::address_v4::bytes_type bytes;
      std::memcpy(bytes.data(), c.text(bytes.size()).data(), bytes.size());
      r.dialup.emplace_back(ip::network_v4(ip::address_v4(bytes), length));
    } else {
      ip::address_v6::bytes_type bytes;
      std::memcpy(bytes.data(), c.text(bytes.size()).data(), bytes.size());
      r.dialup.emplace_back(ip::network_v6(ip::address_v6(bytes), length));
    }
  }
  for (std::string* hash : {&r.dialup_hash, &r.pop3_hash}) {
    const std::uint8_t code = c.byte();
    const std::string_view tail = c.text(c.byte());
    if (code != no_hash && code != literal_hash) *hash = heads_[code - 1];
    hash->append(tail);
  }
  return r;
}

std::string host_table::canonical(std::uint32_t offset) const {
  cursor c{records_.data() + offset};
  c.p += 1 + static_cast<unsigned char>(*c.p);
  skip_prefixes(c);
  std::string out(records_.data() + offset, c.p);
  for (int i = 0; i < 2; ++i) {
    const std::uint8_t code = c.byte();
    const std::string_view tail = c.text(c.byte());
    if (code != no_hash && code != literal_hash) out += heads_[code - 1];
    out += tail;
    out += '\0';
  }
  return out;
}

std::size_t host_table::lower_bound(std::string_view name) const {
  std::size_t low = 0, high = count_;
  const std::uint32_t* idx = index();
  while (low < high) {
    const std::size_t mid = low + (high - low) / 2;
    if (name_at(idx[mid]) < name)
      low = mid + 1;
    else
      high = mid;
  }
  return low;
}

bool host_table::contains(std::string_view name) const {
  const std::size_t at = lower_bound(name);
  return at < count_ && name_at(index()[at]) == name;
}

std::optional<host_record> host_table::find(std::string_view name) const {
  const std::size_t at = lower_bound(name);
  if (at == count_ || name_at(index()[at]) != name) return std::nullopt;
  return decode(index()[at]);
}

std::size_t host_table::memory() const {
  std::size_t heads = 0;
  for (const auto& h : heads_) heads += h.capacity();
  return records_.capacity() + index_.capacity() + heads + problems_.capacity() * sizeof(problem);
}

void host_table::for_each(const std::function<void(const host_record&)>& each) const {
  for (std::size_t i = 0; i < count_; ++i) each(decode(index()[i]));
}

std::map<hash_cost, std::size_t> host_table::costs() const {
  std::map<hash_cost, std::size_t> out;
  std::vector<std::size_t> per_head(heads_.size() + 1, 0);
  for (std::size_t i = 0; i < count_; ++i) {
    cursor c{records_.data() + index()[i]};
    c.p += 1 + static_cast<unsigned char>(*c.p);
    skip_prefixes(c);
    for (int k = 0; k < 2; ++k) {
      const std::uint8_t code = c.byte();
      const std::string_view tail = c.text(c.byte());
      if (code == no_hash) continue;
      if (code != literal_hash) {
        ++per_head[code];
      } else if (const auto cost = cost_of(tail)) {
        ++out[*cost];
      }
    }
  }
  for (std::size_t h = 0; h < heads_.size(); ++h) {
    if (per_head[h + 1] == 0) continue;
    // Any valid salt and hash after the head: only the head is read.
    if (const auto cost = cost_of(heads_[h] + "AAAA$AAAA")) out[*cost] += per_head[h + 1];
  }
  return out;
}

void host_table::differences(const host_table& before, const host_table& after,
                             const std::function<void(std::string_view, difference)>& each) {
  std::size_t o = 0, n = 0;
  while (o < before.count_) {
    const std::uint32_t old_offset = before.index()[o];
    const std::string_view old_name = before.name_at(old_offset);
    if (n == after.count_ || old_name < after.name_at(after.index()[n])) {
      each(old_name, difference::removed);
      ++o;
      continue;
    }
    const std::uint32_t new_offset = after.index()[n];
    const std::string_view new_name = after.name_at(new_offset);
    if (new_name < old_name) {
      each(new_name, difference::added);
      ++n;
      continue;
    }
    // canonical() expands the shared heads, so two tables compare whatever their heads.
    const bool same = before.canonical(old_offset) == after.canonical(new_offset);
    if (!same) each(old_name, difference::changed);
    ++o;
    ++n;
  }
  for (; n < after.count_; ++n) each(after.name_at(after.index()[n]), difference::added);
}

std::string format(const host_table& table) {
  std::string out(format_header());
  table.for_each([&out](const host_record& r) { append_line(out, r); });
  return out;
}

}  // namespace sdps::hostdb
