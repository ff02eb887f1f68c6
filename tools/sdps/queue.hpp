#pragma once
// What flush, expire and lmtp share: a host's queue across punts, the
// flush lock, a stored message as SMTP sends it, customer address checks,
// running on an event loop.

#include "admin.hpp"

#include "base/descriptor.hpp"
#include "spoolstore/delivery.hpp"
#include "spoolstore/store.hpp"

#include <sdps/asio.hpp>
#include <sdps/log.hpp>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace sdps::admin {

/// Logs to stderr as "sdps: COMMAND: ...", warnings and errors only
/// (info too when `verbose`).
class command_logger final : public logger {
 public:
  explicit command_logger(std::string command, bool verbose = false)
      : prefix_("sdps: " + std::move(command) + ": "), verbose_(verbose) {}
  void write(log_level level, std::string_view line) override;
  bool enabled(log_level level) const override { return verbose_ || level >= log_level::warning; }

 private:
  std::string prefix_;
  bool verbose_;
};

/// One message of a host's queue on one punt.
struct queued {
  std::string punt;
  std::filesystem::path file;  ///< PUNT/HOST/NAME
  spoolstore::file_name name;
};

/// HOST's messages on every punt, oldest first (by UIDL). A punt that
/// cannot be read is logged and skipped (`complete` set false).
std::vector<queued> host_queue(const site& s, const std::string& host, logger& log, bool& complete);

/// Every customer host folder found in the punts (valid host names only).
std::vector<std::string> spooled_hosts(const site& s);

/// The flush lock of a host: an exclusive flock on PUNT/HOST/locks/flush
/// in each punt that has a HOST folder, taken without waiting in punt-name
/// order. Separate from the POP3 locks (locks/host).
class flush_lock {
 public:
  enum class outcome { acquired, busy, failed };
  /// Tries to take the lock; `error` says why when not acquired.
  outcome acquire(const site& s, const std::string& host, std::string& error);

 private:
  std::vector<base::unique_fd> fds_;
};

/// Reads a stored message as SMTP sends it (the message without the
/// Return-Path line RETR adds); `size()` is its length in octets.
class stored_reader {
 public:
  explicit stored_reader(spoolstore::message_file& file);
  std::size_t operator()(std::span<char> buffer);
  std::uint64_t size() const { return size_; }

 private:
  spoolstore::message_file& file_;
  std::size_t skip_;
  std::uint64_t size_;
};

/// A customer address checked like `sdps deliver` checks its recipients.
struct address_check {
  int status = 0;  ///< sysexits: 0, EX_NOUSER or EX_TEMPFAIL
  std::string error;
  spoolstore::recipient recipient;
};
address_check check_customer_address(const site& s, const std::string& address);

/// Every punt, the order shuffled (deliver's random choice with fallbacks).
std::vector<spoolstore::punt_target> shuffled_punts(const site& s);

/// Runs `work` to its end on an event loop of its own and returns its
/// result; an exception out of it is rethrown here. flush and expire run
/// their SMTP session so: one io_context per run, no thread of their own.
int run_on_loop(asio::io_context& loop, awaitable<int> work);

/// Random lower-case hex, `octets` * 2 characters (libsodium).
std::string random_hex(std::size_t octets);

}  // namespace sdps::admin
