#pragma once
// Sessions per client address: the one place where the server counts
// connections by address (max_sessions_per_address).

#include <sdps/asio.hpp>

#include <cstddef>
#include <map>
#include <memory>
#include <mutex>

namespace sdps::core {

/// The per-address session table. Every call takes its mutex, so a server
/// that runs its event loop on several threads can share one table.
class address_limits {
 public:
  /// `max_per_address` 0 means no limit (the table still counts).
  explicit address_limits(std::size_t max_per_address) : max_(max_per_address) {}

  /// One admitted session's place in the table: released by its destructor.
  class ticket {
   public:
    ticket(address_limits& table, asio::ip::address address) : table_(&table), address_(std::move(address)) {}
    ~ticket();
    ticket(const ticket&) = delete;
    ticket& operator=(const ticket&) = delete;

    const asio::ip::address& address() const { return address_; }
    /// Moves the session to `real` (the client address a PROXY header
    /// names, which replaces the peer's before the greeting). False, and
    /// the ticket unchanged, if `real` already has its maximum.
    bool rekey(const asio::ip::address& real);

   private:
    address_limits* table_;
    asio::ip::address address_;
  };

  /// Counts a session of `address`; null if the address already holds
  /// max_per_address sessions. `first_refusal` is set when this refusal
  /// is the first since the address was last under its limit (log once).
  /// `limited` false counts the session without a limit: a load balancer's
  /// connection, whose ticket is rekeyed to the client its PROXY header
  /// names (and limited there).
  std::unique_ptr<ticket> admit(const asio::ip::address& address, bool& first_refusal, bool limited = true);
  /// Sessions counted for `address` now.
  std::size_t count(const asio::ip::address& address) const;
  std::size_t max_per_address() const {
    std::lock_guard guard(mutex_);
    return max_;
  }
  /// A new limit (SIGHUP): sessions counted stay; an address above it gets
  /// no new one until it is below.
  void set_max_per_address(std::size_t max) {
    std::lock_guard guard(mutex_);
    max_ = max;
  }

  /// IPv4 clients of a dual-stack listener (::ffff:a.b.c.d) count as a.b.c.d.
  static asio::ip::address canonical(const asio::ip::address& a);

 private:
  struct entry {
    std::size_t sessions = 0;
    bool refusal_logged = false;
  };
  bool take(const asio::ip::address& a, bool& first_refusal, bool limited = true);  // mutex held
  void give_back(const asio::ip::address& a);                  // mutex held

  std::size_t max_;
  mutable std::mutex mutex_;
  std::map<asio::ip::address, entry> table_;
};

}  // namespace sdps::core
