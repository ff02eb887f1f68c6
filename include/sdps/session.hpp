#pragma once
/// @file
/// The per-connection object the core hands to every module call.

#include <sdps/asio.hpp>
#include <sdps/log.hpp>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace sdps {

class maildrop;

/// RFC 1939 section 3 session states. The core owns them.
enum class pop3_state : unsigned {
  authorization = 1u << 0,
  transaction = 1u << 1,
  update = 1u << 2,
};

/// A set of states, for command declarations: `pop3_state::transaction`,
/// `pop3_state::authorization | pop3_state::transaction`, `any_state`.
class state_mask {
 public:
  constexpr state_mask() = default;
  constexpr state_mask(pop3_state state) : bits_(static_cast<unsigned>(state)) {}
  constexpr bool contains(pop3_state state) const { return (bits_ & static_cast<unsigned>(state)) != 0; }
  constexpr bool empty() const { return bits_ == 0; }
  constexpr state_mask operator|(state_mask other) const { return from_bits(bits_ | other.bits_); }
  constexpr state_mask& operator|=(state_mask other) {
    bits_ |= other.bits_;
    return *this;
  }
  constexpr bool operator==(const state_mask&) const = default;
  static constexpr state_mask from_bits(unsigned bits) {
    state_mask m;
    m.bits_ = bits & 0x7u;
    return m;
  }

 private:
  unsigned bits_ = 0;
};
constexpr state_mask operator|(pop3_state a, pop3_state b) { return state_mask(a) | state_mask(b); }
/// Every state.
inline constexpr state_mask any_state = state_mask::from_bits(0x7u);

const char* to_string(pop3_state state);

/// Who the client logged in as: a customer host, optionally narrowed to one
/// user (the local part of the envelope recipient). Both are lower case and
/// validated by the module that parsed them (auth, sasl): safe as file names.
struct identity {
  std::string host;  ///< short host name, "sample"
  std::string user;  ///< empty for a host login; "fred" for fred+sample

  bool host_login() const { return user.empty(); }
  /// "sample" or "fred+sample", for logs and replies.
  std::string display() const { return user.empty() ? host : user + "+" + host; }
  bool operator==(const identity&) const = default;
};

/// The session's marks on its maildrop, by message index (number - 1):
/// RFC 1939's DELE and RSET, RFC 1460's LAST. They live in the session, so
/// every module sees the same marks whatever maildrop object it reads
/// through; a login starts with none. Event loop only.
class marks {
 public:
  bool deleted(std::size_t index) const { return index < deleted_.size() && deleted_[index]; }
  void mark_deleted(std::size_t index) {
    if (index >= deleted_.size()) deleted_.resize(index + 1, false);
    if (!deleted_[index]) ++count_;
    deleted_[index] = true;
  }
  /// RETR or DELE touched message `index` (for LAST).
  void touch(std::size_t index) { last_ = std::max(last_, index + 1); }
  /// The highest message number touched by RETR or DELE since the login or RSET.
  std::size_t last() const { return last_; }
  /// How many messages are marked deleted.
  std::size_t deleted_count() const { return count_; }
  /// The indexes marked deleted, ascending (UPDATE's work).
  std::vector<std::size_t> deleted_indexes() const {
    std::vector<std::size_t> out;
    out.reserve(count_);
    for (std::size_t i = 0; i < deleted_.size(); ++i)
      if (deleted_[i]) out.push_back(i);
    return out;
  }
  /// RSET (and a login): nothing deleted, LAST 0.
  void reset() {
    deleted_.clear();
    count_ = 0;
    last_ = 0;
  }

 private:
  std::vector<bool> deleted_;
  std::size_t count_ = 0;
  std::size_t last_ = 0;
};

/// The key of a module's per-session state of type T: a member of the
/// module instance (`sdps::slot_key<held> held_;`), passed to
/// session::slot(). The key's type fixes the slot's, so a slot cannot be
/// read as the wrong type. One key, one slot per session.
template <typename T>
class slot_key {
 public:
  slot_key() = default;
  slot_key(const slot_key&) = delete;
  slot_key& operator=(const slot_key&) = delete;
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
  /// The client: the peer, or the client a PROXY header named.
  virtual asio::ip::tcp::endpoint remote_endpoint() const = 0;
  virtual asio::ip::tcp::endpoint local_endpoint() const = 0;
  /// The session's event loop: its module calls run on this loop's thread,
  /// and so must anything that touches the session or resumes its calls.
  virtual executor get_executor() = 0;
  /// A logger whose lines carry this session's number and, during a call
  /// of a module instance, that instance's name.
  virtual logger& log() = 0;

  virtual pop3_state state() const = 0;

  /// Who the session is logged in as: null in AUTHORIZATION, set once by
  /// the core when every login stage has passed (docs/modules.md, "Logins").
  virtual const identity* login() const = 0;
  /// The session's maildrop, opened at login by the core from the chain's
  /// maildrop source; null before the login, and in a chain without one.
  virtual std::shared_ptr<sdps::maildrop> maildrop() = 0;
  /// The session's marks on maildrop() (DELE, RSET, LAST).
  virtual sdps::marks& marks() = 0;

  /// Ends the login but not the session (a back end resetting a link for
  /// its front end's pool, docs/backend-protocol.md): once the current
  /// command's handler has returned, the `logout` event fires (instances
  /// give back what the login held), then the session is in AUTHORIZATION
  /// again without identity, maildrop or marks, before the command's reply
  /// is sent. Module slots are kept. Throws std::logic_error outside
  /// TRANSACTION.
  virtual void end_login() = 0;
  /// QUIT in TRANSACTION: moves to UPDATE. The module answering QUIT calls
  /// it before it removes the deleted messages; the `quit` event fires once
  /// its handler returns, before its reply is sent, and then the
  /// connection closes. Throws std::logic_error outside TRANSACTION (the
  /// client then gets -ERR [SYS/TEMP]).
  virtual void enter_update() = 0;

  /// The CAPA lines of every module in the chain for this session (see
  /// module::capabilities), in chain order, without duplicates.
  virtual std::vector<std::string> capabilities() = 0;

  /// True once TLS protects the connection (an implicit-TLS listener, or
  /// after STLS).
  virtual bool secure() const = 0;
  /// True when STLS would succeed now: TLS is configured, this listener is
  /// plain, no TLS is in force yet and the session is in AUTHORIZATION.
  /// CAPA lists STLS only then.
  virtual bool can_start_tls() const = 0;
  /// Asks the core to start TLS (RFC 2595) once the reply to the current
  /// command has been sent; that reply must be positive. Whatever the client
  /// sent after the command line is discarded unread (a plaintext injection
  /// must not run inside TLS), and so is every module's per-session state
  /// (its slots: a USER given in clear text does not carry over); then the
  /// handshake runs within the configured time limit; a failed handshake
  /// closes the connection. Throws std::logic_error unless can_start_tls().
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

  /// This session's state of type T for the instance owning `key`, created
  /// (value-initialised) on first use and destroyed, newest first, when the
  /// session ends (after `disconnect`) or at STLS.
  template <typename T>
  T& slot(const slot_key<T>& key) {
    std::shared_ptr<void>& p = slot_storage(&key);
    if (!p) p = std::make_shared<T>();
    return *static_cast<T*>(p.get());
  }
  /// The slot if it exists, else null.
  template <typename T>
  T* find_slot(const slot_key<T>& key) {
    std::shared_ptr<void>* p = find_slot_storage(&key);
    return p && *p ? static_cast<T*>(p->get()) : nullptr;
  }
  /// Destroys a slot now (it is created afresh on next use).
  template <typename T>
  void drop_slot(const slot_key<T>& key) {
    drop_slot_storage(&key);
  }

 protected:
  virtual std::shared_ptr<void>& slot_storage(const void* key) = 0;
  virtual std::shared_ptr<void>* find_slot_storage(const void* key) = 0;
  virtual void drop_slot_storage(const void* key) = 0;
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
