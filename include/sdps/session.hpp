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

/// One client connection. All calls happen on the session's executor: the
/// one event loop thread (of `threads:`) that accepted it, for its whole
/// life. The object lives until the connection has closed and every module
/// call for it has returned.
class session {
 public:
  virtual ~session() = default;

  /// Process-unique number, used in log lines.
  virtual std::uint64_t id() const = 0;
  virtual asio::ip::tcp::endpoint remote_endpoint() const = 0;
  virtual asio::ip::tcp::endpoint local_endpoint() const = 0;
  /// The session's event loop: its module calls run on this loop's thread,
  /// and so must anything that touches the session or resumes its calls.
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

  /// True once TLS protects the connection (an implicit-TLS listener, or
  /// after STLS).
  virtual bool secure() const = 0;
  /// True when STLS would succeed now: TLS is configured, this listener is
  /// plain and no TLS is in force yet. CAPA lists STLS only then.
  virtual bool can_start_tls() const = 0;
  /// Asks the core to start TLS (RFC 2595) once the reply to the current
  /// command has been sent; that reply must be positive. Whatever the client
  /// sent after the command line is discarded unread (a plaintext injection
  /// must not run inside TLS), then the handshake runs within the configured
  /// time limit; a failed handshake closes the connection. Throws
  /// std::logic_error unless can_start_tls().
  virtual void start_tls() = 0;
  /// The site's plaintext policy for this session (`plaintext_auth`,
  /// `trusted_networks`): true when a password may be sent now (TLS is in
  /// force, the policy is `always`, or remote_endpoint() is in a trusted
  /// network). Modules taking passwords (USER/PASS, AUTH PLAIN) refuse them
  /// with -ERR [AUTH] otherwise, and leave them out of CAPA.
  virtual bool plaintext_auth_allowed() const = 0;
  /// For a command that needs one more line from the client (a SASL
  /// continuation, RFC 5034): sends `+ ` and `challenge` (and any reply
  /// queued before it), then waits for the client's next line and returns
  /// it, or nothing if that line was too long or the session closed. The
  /// wait counts against the calling instance's time limit. The line may
  /// hold a secret: wipe it when done. Call it from on_command() only.
  virtual awaitable<std::optional<std::string>> continuation(std::string challenge) = 0;

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
