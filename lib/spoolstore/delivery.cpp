#include "spoolstore/delivery.hpp"

#include "base/descriptor.hpp"
#include "spoolstore/detail.hpp"
#include "spoolstore/store.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <set>

namespace sdps::spoolstore {

std::function<int(const std::filesystem::path&)> write_fault_for_tests;

namespace {

/// A crashed delivery's temporary file is removed after this long.
constexpr std::int64_t stale_tmp_seconds = 36 * 3600;
constexpr std::size_t chunk_size = 64 * 1024;
/// Attempts at a fresh UIDL when a final name is (impossibly) taken.
constexpr int name_attempts = 8;

using detail::fail;

void write_all(int fd, std::string_view data, const std::filesystem::path& path) {
  if (write_fault_for_tests) {
    if (const int code = write_fault_for_tests(path)) fail("cannot write", path, code);
  }
  while (!data.empty()) {
    const ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) fail("cannot write", path, errno);
    data.remove_prefix(static_cast<std::size_t>(n));
  }
}

/// One copy being written in HOST/tmp/. Its temporary name is removed when
/// it is destroyed, whatever happened (after a link the final name stays).
struct tmp_copy {
  std::filesystem::path host_folder;
  std::filesystem::path path;
  base::unique_fd fd;
  std::uint64_t header_size = 0;

  ~tmp_copy() {
    fd.reset();
    if (!path.empty()) ::unlink(path.c_str());
  }
};

/// Copies `length` octets at `offset` of `from` to the end of `to`.
void copy_body(const tmp_copy& from, std::uint64_t offset, std::uint64_t length, const tmp_copy& to) {
  std::string buffer(chunk_size, '\0');
  while (length > 0) {
    const ssize_t n = ::pread(from.fd.get(), buffer.data(), std::min<std::uint64_t>(buffer.size(), length),
                              static_cast<off_t>(offset));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) fail("cannot read back", from.path, errno);
    if (n == 0) fail("cannot read back", from.path, EIO);  // shorter than written: give up on it
    write_all(to.fd.get(), std::string_view(buffer.data(), static_cast<std::size_t>(n)), to.path);
    offset += static_cast<std::uint64_t>(n);
    length -= static_cast<std::uint64_t>(n);
  }
}

class delivery {
 public:
  delivery(const std::vector<punt_target>& punts, const std::string& from, const std::vector<recipient>& to,
           logger* log)
      : punts_(punts), from_(from), to_(to), log_(log), arrival_(now_us()) {
    for (const auto& r : to_) {
      uidls_.push_back(new_uidl(arrival_));
      headers_.push_back(format_envelope({from_, r.address, arrival_}));
    }
  }

  std::vector<stored_copy> run(const input_reader& input) {
    if (!open_first(0)) throw delivery_error("no punt can take the message: " + errors_, false);
    std::string in(chunk_size, '\0');
    std::string out;
    crlf_normaliser normaliser;
    for (;;) {
      std::size_t n = 0;
      try {
        n = input(std::span<char>(in.data(), in.size()));
      } catch (const std::exception& e) {
        throw delivery_error(std::string("reading the message: ") + e.what(), false);
      }
      out.clear();
      if (n == 0)
        normaliser.finish(out);
      else
        normaliser.feed(std::string_view(in.data(), std::min(n, in.size())), out);
      if (!out.empty()) write_body(out);
      if (n == 0) break;
    }
    for (std::size_t p = current_; p < punts_.size(); ++p) {
      auto stored = commit(p);
      if (stored) return std::move(*stored);
    }
    throw delivery_error("no punt can take the message: " + errors_, false);
  }

 private:
  void note(const std::string& punt, const std::string& what) {
    if (log_) log_->warning("punt ", punt, ": ", what);
    errors_ += (errors_.empty() ? "" : "; ") + punt + ": " + what;
  }

  std::unique_ptr<tmp_copy> open_copy(const punt_target& punt, std::size_t index) {
    const recipient& r = to_[index];
    ensure_host_dir(punt.root, r.host, tmp_folder, true);
    auto copy = std::make_unique<tmp_copy>();
    copy->host_folder = host_dir(punt.root, r.host);
    if (swept_.insert(copy->host_folder.string()).second) sweep_tmp(copy->host_folder, stale_tmp_seconds);
    for (int attempt = 0;; ++attempt) {
      // Not beginning with the UIDL: only a stored message's name does.
      const auto path = copy->host_folder / tmp_folder /
                        (std::to_string(::getpid()) + "." + std::to_string(++serial_) + "." + uidls_[index]);
      const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
      if (fd >= 0) {
        copy->fd.reset(fd);
        copy->path = path;
        break;
      }
      if (errno != EEXIST || attempt >= name_attempts) fail("cannot create", path, errno);
    }
    write_all(copy->fd.get(), headers_[index], copy->path);
    copy->header_size = headers_[index].size();
    return copy;
  }

  // Starts the first recipient's copy in the first punt from `from_punt`
  // on that works, carrying over the body written so far.
  bool open_first(std::size_t from_punt) {
    for (std::size_t p = from_punt; p < punts_.size(); ++p) {
      try {
        auto copy = open_copy(punts_[p], 0);
        if (first_ && body_size_ > 0) copy_body(*first_, first_->header_size, body_size_, *copy);
        first_ = std::move(copy);
        current_ = p;
        return true;
      } catch (const std::exception& e) {
        note(punts_[p].name, e.what());
      }
    }
    return false;
  }

  void write_body(const std::string& data) {
    for (;;) {
      try {
        write_all(first_->fd.get(), data, first_->path);
        body_size_ += data.size();
        return;
      } catch (const io_error& e) {
        note(punts_[current_].name, e.what());
      }
      // Whatever part of `data` reached the failed file is ignored: only
      // body_size_ octets count, and the whole chunk is written again.
      if (!open_first(current_ + 1)) throw delivery_error("no punt can take the message: " + errors_, false);
    }
  }

  // Makes every recipient's copy in punt `p` and links them into place.
  // nullopt when the punt failed before anything became visible.
  std::optional<std::vector<stored_copy>> commit(std::size_t p) {
    const punt_target& punt = punts_[p];
    std::vector<std::unique_ptr<tmp_copy>> owned;  // temporary names go when these do
    std::vector<tmp_copy*> copies;
    try {
      for (std::size_t i = 0; i < to_.size(); ++i) {
        if (i == 0 && p == current_) {
          copies.push_back(first_.get());
          continue;
        }
        auto copy = open_copy(punt, i);
        copy_body(*first_, first_->header_size, body_size_, *copy);
        copies.push_back(copy.get());
        owned.push_back(std::move(copy));
      }
      for (tmp_copy* copy : copies)
        if (::fsync(copy->fd.get()) != 0) fail("cannot sync", copy->path, errno);
    } catch (const std::exception& e) {
      note(punt.name, e.what());
      return std::nullopt;
    }

    std::vector<stored_copy> stored;
    std::set<std::string> folders;
    const std::uint64_t size = return_path_line(from_).size() + body_size_;
    for (std::size_t i = 0; i < copies.size(); ++i) {
      const tmp_copy& copy = *copies[i];
      std::string uidl = uidls_[i];
      std::filesystem::path final_path;
      int code = 0;
      for (int attempt = 0; attempt < name_attempts; ++attempt) {
        final_path = copy.host_folder / format_name({uidl, size, encode_user(to_[i].local_part), arrival_});
        if (::link(copy.path.c_str(), final_path.c_str()) == 0) {
          code = 0;
          break;
        }
        code = errno;
        if (code != EEXIST) break;
        uidl = new_uidl(arrival_);  // never overwrite: another message owns that name
      }
      if (code != 0) {
        const std::string why = "cannot store " + final_path.string() + ": " + std::strerror(code);
        if (stored.empty()) {
          note(punt.name, why);
          return std::nullopt;
        }
        throw delivery_error(why + " (after storing " + std::to_string(stored.size()) + " of " +
                                 std::to_string(to_.size()) + " copies)",
                             true);
      }
      folders.insert(copy.host_folder.string());
      stored.push_back({punt.name, to_[i].host, uidl, size, final_path});
    }
    for (const auto& folder : folders) {
      try {
        sync_dir(folder);
      } catch (const std::exception& e) {
        throw delivery_error(std::string(e.what()) + " (the message may not survive a crash)", true);
      }
    }
    return stored;
  }

  const std::vector<punt_target>& punts_;
  const std::string& from_;
  const std::vector<recipient>& to_;
  logger* log_;
  std::int64_t arrival_;
  std::vector<std::string> uidls_;
  std::vector<std::string> headers_;
  std::unique_ptr<tmp_copy> first_;  // the first recipient's copy: the message's one full read
  std::size_t current_ = 0;          // the punt first_ is in
  std::uint64_t body_size_ = 0;
  std::string errors_;
  std::set<std::string> swept_;
  unsigned serial_ = 0;
};

}  // namespace

std::vector<stored_copy> deliver(const std::vector<punt_target>& punts, const std::string& from,
                                 const std::vector<recipient>& to, const input_reader& input, logger* log) {
  if (!valid_address(from)) throw std::invalid_argument("bad sender address");
  if (to.empty()) throw std::invalid_argument("no recipient");
  for (const auto& r : to) {
    if (!valid_address(r.address) || r.address.empty()) throw std::invalid_argument("bad recipient address");
    if (r.local_part.empty() || r.local_part.size() > max_local_part)
      throw std::invalid_argument("bad recipient local part");
    if (!valid_host(r.host)) throw std::invalid_argument("bad recipient host");
  }
  if (punts.empty()) throw delivery_error("no punt to deliver to", false);
  delivery d(punts, from, to, log);
  return d.run(input);
}

}  // namespace sdps::spoolstore
