#include "queue.hpp"

#include "hostdb/hostdb.hpp"

#include <sodium.h>
#include <sys/file.h>
#include <sysexits.h>
#include <fcntl.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>

namespace sdps::admin {

void command_logger::write(log_level level, std::string_view line) {
  std::cerr << prefix_ << (level >= log_level::error ? "error: " : level >= log_level::warning ? "warning: " : "")
            << line << "\n";
}

hostdb::host_finder& host_finder_of(const site& s) {
  static std::mutex mutex;
  static std::map<std::string, std::unique_ptr<hostdb::host_finder>> finders;  // by store
  const hostdb::location where = hosts_location(s);
  std::lock_guard guard(mutex);
  auto& finder = finders[where.to_string()];
  if (!finder) finder = std::make_unique<hostdb::host_finder>(where);
  return *finder;
}

std::vector<queued> host_queue(const site& s, const std::string& host, logger& log, bool& complete) {
  std::vector<queued> all;
  for (const auto& [punt, root] : s.punts) {
    try {
      const auto folder = spoolstore::host_dir(root, host);
      for (auto& e : spoolstore::scan(root, host, "", &log))
        all.push_back({punt, folder / e.file, std::move(e.name)});
    } catch (const std::exception& e) {
      log.warning("punt ", punt, ": ", e.what(), " (its messages are left alone)");
      complete = false;
    }
  }
  std::stable_sort(all.begin(), all.end(), [](const queued& a, const queued& b) { return a.name.uidl < b.name.uidl; });
  return all;
}

std::vector<std::string> spooled_hosts(const site& s) {
  std::vector<std::string> hosts;
  for (const auto& [punt, root] : s.punts) {
    std::error_code ec;
    for (std::filesystem::directory_iterator it(root, ec), end; !ec && it != end; it.increment(ec)) {
      const std::string name = it->path().filename().string();
      if (spoolstore::valid_host(name) && it->is_directory(ec)) hosts.push_back(name);
    }
  }
  std::sort(hosts.begin(), hosts.end());
  hosts.erase(std::unique(hosts.begin(), hosts.end()), hosts.end());
  return hosts;
}

flush_lock::outcome flush_lock::acquire(const site& s, const std::string& host, std::string& error) {
  for (const auto& [punt, root] : s.punts) {  // std::map: punt-name order
    std::error_code ec;
    if (!std::filesystem::is_directory(spoolstore::host_dir(root, host), ec)) continue;
    try {
      spoolstore::ensure_host_dir(root, host, spoolstore::locks_folder, false);
    } catch (const std::exception& e) {
      error = e.what();
      return outcome::failed;
    }
    const auto file = spoolstore::host_dir(root, host) / spoolstore::locks_folder / "flush";
    base::unique_fd fd(::open(file.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600));
    if (!fd.valid()) {
      error = file.string() + ": " + std::strerror(errno);
      return outcome::failed;
    }
    const int code = ::flock(fd.get(), LOCK_EX | LOCK_NB) == 0 ? 0 : errno;
    fds_.push_back(std::move(fd));
    if (code != 0) {
      if (code == EWOULDBLOCK) {
        error = "another flush or expire of '" + host + "' is running (punt " + punt + ")";
        return outcome::busy;
      }
      error = file.string() + ": " + std::strerror(code);
      return outcome::failed;
    }
  }
  return outcome::acquired;
}

stored_reader::stored_reader(spoolstore::message_file& file)
    : file_(file), skip_(spoolstore::return_path_line(file.envelope().from).size()) {
  size_ = file_.retr_size() - skip_;
  file_.rewind(std::nullopt);
}

std::size_t stored_reader::operator()(std::span<char> buffer) {
  while (skip_ > 0) {  // the Return-Path line is RETR's, not the message's
    char discard[512];
    const std::size_t n = file_.read(std::span<char>(discard, std::min(skip_, sizeof discard)));
    if (n == 0) return 0;
    skip_ -= n;
  }
  return file_.read(buffer);
}

address_check check_customer_address(const site& s, const std::string& address) {
  address_check out;
  const auto at = address.rfind('@');
  if (at == std::string::npos) {
    out.status = EX_NOUSER;
    out.error = "not an address of a customer host";
    return out;
  }
  const std::string local = address.substr(0, at);
  std::string domain = address.substr(at + 1);
  if (!domain.empty() && domain.back() == '.') domain.pop_back();
  if (local.empty() || local.size() > spoolstore::max_local_part || !spoolstore::valid_address(local)) {
    out.status = EX_NOUSER;
    out.error = "the user part is empty, too long or malformed";
    return out;
  }
  const std::string host = hostdb::normalise_host(domain, s.customer_domain);
  if (host.empty() || !spoolstore::valid_host(host)) {
    out.status = EX_NOUSER;
    out.error = "not in the customer domain" + (s.customer_domain.empty() ? std::string() : " " + s.customer_domain);
    return out;
  }
  // A host whose record is malformed (a database row written by hand)
  // exists: its mail is taken.
  const hostdb::lookup_result found = host_finder_of(s).find(host);
  if (found.status == hostdb::lookup_status::unknown) {
    out.status = EX_NOUSER;
    out.error = "no such customer host '" + host + "'";
    return out;
  }
  if (found.status == hostdb::lookup_status::unavailable) {
    out.status = EX_TEMPFAIL;
    out.error = "cannot read the host database: " + found.detail;
    return out;
  }
  out.recipient.local_part = local;
  out.recipient.host = host;
  out.recipient.address = local + "@" + host + (s.customer_domain.empty() ? std::string() : "." + s.customer_domain);
  return out;
}

std::vector<spoolstore::punt_target> shuffled_punts(const site& s) {
  std::vector<spoolstore::punt_target> punts;
  for (const auto& [name, root] : s.punts) punts.push_back({name, root});
  for (std::size_t i = punts.size(); i > 1; --i)
    std::swap(punts[i - 1], punts[randombytes_uniform(static_cast<std::uint32_t>(i))]);
  return punts;
}

int run_on_loop(asio::io_context& loop, awaitable<int> work) {
  int status = EX_SOFTWARE;
  std::exception_ptr failure;
  asio::co_spawn(loop, std::move(work), [&status, &failure](std::exception_ptr e, int result) {
    failure = e;
    status = result;
  });
  loop.run();
  if (failure) std::rethrow_exception(failure);
  return status;
}

std::string random_hex(std::size_t octets) {
  std::vector<unsigned char> bytes(octets);
  randombytes_buf(bytes.data(), bytes.size());
  std::string hex(octets * 2 + 1, '\0');
  sodium_bin2hex(hex.data(), hex.size(), bytes.data(), bytes.size());
  hex.pop_back();
  return hex;
}

}  // namespace sdps::admin
