#pragma once
/// @file
/// The per-connection object the core hands to every module call.

#include <sdps/asio.hpp>
#include <sdps/log.hpp>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace sdps {

/// RFC 1939 section 3 session states. The core owns them; modules ask for
/// transitions with session::enter().
enum class pop3_state : unsigned {
  authorization = 1u << 0,
  transaction = 1u << 1,
  update = 1u << 2,
};

/// A set of states, for command declarations.
using state_mask = unsigned;
constexpr state_mask operator|(pop3_state a, pop3_state b) {
  return static_cast<state_mask>(a) | static_cast<state_mask>(b);
}
constexpr state_mask any_state = 0x7u;

const char* to_string(pop3_state state);

/// Who the client logged in as: a customer host, optionally narrowed to one
/// user (the local part of the envelope recipient). Both are lower case and
/// validated by whoever sets them (the auth module): safe as file names.
struct identity {
  std::string host;  ///< short host name, "sample"
  std::string user;  ///< empty for a host login; "fred" for fred+sample

  bool host_login() const { return user.empty(); }
  /// "sample" or "fred+sample", for logs and replies.
  std::string display() const { return user.empty() ? host : user + "+" + host; }
};

/// One client connection. All calls happen on the session's executor (the
/// server's event loop); the object lives until the connection has closed
/// and every module call for it has returned.
class session {
 public:
  virtual ~session() = default;

  /// Process-unique number, used in log lines.
  virtual std::uint64_t id() const = 0;
  virtual asio::ip::tcp::endpoint remote_endpoint() const = 0;
  virtual asio::ip::tcp::endpoint local_endpoint() const = 0;
  virtual executor get_executor() = 0;
  /// A logger whose lines carry this session's id.
  virtual logger& log() = 0;

  virtual pop3_state state() const = 0;
  /// Moves to a new state. Legal moves: authorization -> transaction (the
  /// `authenticated` event fires after the current command's reply is
  /// sent) and transaction -> update (the `quit` event fires once the
  /// handler returns, before its reply is sent; then the connection closes). Anything else throws
  /// std::logic_error, which the core turns into -ERR [SYS/TEMP].
  virtual void enter(pop3_state next) = 0;

  /// The CAPA lines of every module in the chain for this session (see
  /// module::capabilities), in chain order, without duplicates.
  virtual std::vector<std::string> capabilities() = 0;

  /// The login being attempted (after USER) or in force (in TRANSACTION).
  virtual std::optional<identity>& login() = 0;

  /// Typed per-module state, created on first use and destroyed (newest
  /// first) when the session ends. `owner` is the module instance (pass
  /// `this`); one owner uses one type T.
  template <typename T>
  T& slot(const void* owner) {
    std::shared_ptr<void>& p = slot_storage(owner);
    if (!p) p = std::make_shared<T>();
    return *static_cast<T*>(p.get());
  }
  /// The slot if it exists, else null.
  template <typename T>
  T* find_slot(const void* owner) {
    std::shared_ptr<void>* p = find_slot_storage(owner);
    return p && *p ? static_cast<T*>(p->get()) : nullptr;
  }
  /// Destroys a slot now (it is created afresh on next use).
  virtual void drop_slot(const void* owner) = 0;

 protected:
  virtual std::shared_ptr<void>& slot_storage(const void* owner) = 0;
  virtual std::shared_ptr<void>* find_slot_storage(const void* owner) = 0;
};

inline const char* to_string(pop3_state state) {
  switch (state) {
    case pop3_state::authorization: return "AUTHORIZATION";
    case pop3_state::transaction: return "TRANSACTION";
    case pop3_state::update: return "UPDATE";
  }
  return "?";
}

}  // namespace sdps
