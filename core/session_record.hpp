#pragma once
// What one session did, for its logout line and the metrics: commands
// counted, how it ended, how long it lasted.

#include "logging.hpp"

#include <sdps/asio.hpp>
#include <sdps/session.hpp>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

namespace sdps::core {

/// How a session ended, as the logout line says it.
namespace session_end {
inline constexpr const char* quit = "QUIT";
inline constexpr const char* update_failed = "UPDATE failed";
inline constexpr const char* idle = "idle autologout";
inline constexpr const char* client_gone = "client gone";
inline constexpr const char* shutdown = "server shutdown";
inline constexpr const char* refused = "refused at connect";
inline constexpr const char* reply_failed = "reply failed";
inline constexpr const char* error = "internal error";
inline constexpr const char* module_timeout = "module timeout";
inline constexpr const char* closed = "closed by the server";
/// An admin ended it (`sdps kick`, through the control socket).
inline constexpr const char* kicked = "kicked";
/// Every reason above (the label values of sdps_session_ends_total).
inline constexpr const char* all[] = {quit,    update_failed, idle,  client_gone,    shutdown, refused,
                                      reply_failed, error,    module_timeout, closed, kicked};
}  // namespace session_end

/// Owned by the connection; all calls on its executor.
class session_record {
 public:
  session_record() : started_(std::chrono::steady_clock::now()) {}

  /// Counts one answered command (`verb` in upper case; `known` when a
  /// module answered it) and the octets of its multi-line body.
  void command(const std::string& verb, bool known, bool positive, std::uint64_t body_octets);
  /// Records how the session ended; the first reason given wins.
  void ended(const char* how) {
    if (!how_) how_ = how;
  }
  bool has_ended() const { return how_ != nullptr; }

  /// The logout event's fields: login, host, user, auth, rip, lip, tls,
  /// retr, top, dele, end, duration. `who` is the identity logged in, or
  /// the one a refused login claimed (null when none was tried);
  /// `logged_in` says which (auth=yes, auth=failed, auth=none). In JSON
  /// the counters and the duration are numbers (retr, retr_octets, top,
  /// top_octets, dele; duration in seconds).
  logging::fields logout_fields(const identity* who, bool logged_in, const asio::ip::tcp::endpoint& remote,
                           const asio::ip::tcp::endpoint& local, bool tls) const;
  const char* how() const { return how_ ? how_ : session_end::closed; }

 private:
  std::chrono::steady_clock::time_point started_;
  std::uint64_t retr_ = 0, retr_octets_ = 0, top_ = 0, top_octets_ = 0, dele_ = 0;
  const char* how_ = nullptr;
};

}  // namespace sdps::core
