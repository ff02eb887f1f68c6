#pragma once
/// @file
/// Logins: the stages the core runs a login through, what a stage is told
/// and what it answers. docs/modules.md, "Logins", tells the whole story.
///
/// A module that reads a login command (`auth`'s USER and PASS, `sasl`'s
/// AUTH PLAIN, `backend_auth`'s USER and PASS) answers it with
/// verdict::login(credentials). The core then runs the login through its
/// stages, in this order, calling in each the instances that take part in
/// it (module::login_stages()) in chain order:
///
///   verify     are the credentials good? (`auth`: the password against the
///              host database; `backend_auth`: the front end proved the secret)
///   authorize  may this identity log in, now, from there? (site policies)
///   lock       the maildrop's locks (`lock`)
///   open       the core opens the session's maildrop from the chain's
///              maildrop source; instances here see it
///
/// An instance answers proceed or refuse. A refusal ends the login: every
/// instance whose on_login() let it through so far hears undo_login(),
/// latest first, and the client gets the refusal's reply. When every stage
/// has passed, the core enters TRANSACTION with the verified identity
/// (session::login(), set once) and the maildrop (session::maildrop()),
/// logs the login, counts it, answers `+OK` and fires `authenticated`.
/// Nothing is logged or counted as a login before that. Every way of
/// logging in passes every stage: no chain order lets a login skip one.

#include <sdps/response.hpp>
#include <sdps/session.hpp>

#include <initializer_list>
#include <memory>
#include <string>
#include <string_view>
#include <utility>

namespace sdps {

class maildrop;
namespace core {
class login_pipeline;
}

/// The stages of a login, in the order the core runs them.
enum class login_stage : unsigned {
  verify,     ///< the credentials are checked; one instance must accept them
  authorize,  ///< site policy on the verified identity
  lock,       ///< the maildrop's locks are taken
  open,       ///< the maildrop is open (login_attempt::maildrop())
};
inline constexpr login_stage login_stages_in_order[] = {login_stage::verify, login_stage::authorize,
                                                        login_stage::lock, login_stage::open};

inline const char* to_string(login_stage stage) {
  switch (stage) {
    case login_stage::verify: return "verify";
    case login_stage::authorize: return "authorize";
    case login_stage::lock: return "lock";
    case login_stage::open: return "open";
  }
  return "?";
}

/// A set of login stages: what module::login_stages() returns.
class stage_set {
 public:
  constexpr stage_set() = default;
  constexpr stage_set(std::initializer_list<login_stage> stages) {
    for (const login_stage s : stages) bits_ |= 1u << static_cast<unsigned>(s);
  }
  constexpr bool contains(login_stage s) const { return (bits_ & (1u << static_cast<unsigned>(s))) != 0; }
  constexpr bool empty() const { return bits_ == 0; }

 private:
  unsigned bits_ = 0;
};

namespace detail {
/// Overwrites a secret's octets in a way the compiler keeps.
inline void wipe(std::string& text) {
  volatile char* p = text.data();
  for (std::size_t i = 0; i < text.size(); ++i) p[i] = 0;
  text.clear();
}
}  // namespace detail

/// What a client presented to log in, as the module that read the login
/// command hands it to the core with verdict::login().
struct credentials {
  /// Who the client says it is, as parsed (pop3::parse_user): the login
  /// form of USER, or of a SASL authentication identity.
  identity who;
  /// How it presented itself, for logs and policies: "USER" (USER/PASS),
  /// "PLAIN" (AUTH PLAIN), "XAUTH" (a front end, on a back end).
  std::string mechanism;
  /// The password (empty where the mechanism has none). Wiped when the
  /// verify stage is over; never logged.
  std::string password;

  credentials() = default;
  credentials(identity w, std::string m, std::string p)
      : who(std::move(w)), mechanism(std::move(m)), password(std::move(p)) {}
  credentials(credentials&& other) noexcept
      : who(std::move(other.who)), mechanism(std::move(other.mechanism)), password(std::move(other.password)) {
    detail::wipe(other.password);
  }
  credentials& operator=(credentials&& other) noexcept {
    if (this != &other) {
      detail::wipe(password);
      who = std::move(other.who);
      mechanism = std::move(other.mechanism);
      password = std::move(other.password);
      detail::wipe(other.password);
    }
    return *this;
  }
  credentials(const credentials&) = delete;
  credentials& operator=(const credentials&) = delete;
  ~credentials() { detail::wipe(password); }
};

/// One login on its way through the stages. The core owns it; a stage
/// reads it, and the verify stage accepts it.
class login_attempt {
 public:
  explicit login_attempt(credentials c) : credentials_(std::move(c)) {}

  /// Who is logging in: as claimed, and once the verify stage has accepted
  /// it, as verified. Fixed from then on.
  const identity& who() const { return credentials_.who; }
  /// "USER", "PLAIN", "XAUTH" (credentials::mechanism).
  const std::string& mechanism() const { return credentials_.mechanism; }
  /// The password, during the verify stage; empty after it.
  std::string_view password() const { return credentials_.password; }

  /// Verify stage: the credentials are good. `method` says how, for the
  /// login's log line: "the POP3 password", "the dialup password", "the
  /// front end's word". An instance that cannot tell (another site's
  /// host, say) proceeds without accepting; the verify stage fails when
  /// no instance accepted.
  void accept(std::string method) {
    accepted_ = true;
    method_ = std::move(method);
  }
  bool accepted() const { return accepted_; }
  const std::string& method() const { return method_; }

  /// Open stage: the session's maildrop, as the core opened it (null in a
  /// chain without a maildrop source). Before the open stage, null.
  const std::shared_ptr<sdps::maildrop>& maildrop() const { return maildrop_; }

 private:
  friend class core::login_pipeline;
  credentials credentials_;
  bool accepted_ = false;
  std::string method_;
  std::shared_ptr<sdps::maildrop> maildrop_;
};

/// A login stage's answer: go on, or refuse the login.
class login_verdict {
 public:
  /// On to the next instance of the stage, and the next stage.
  static login_verdict proceed() { return login_verdict{}; }
  /// Ends the login: the client gets `reply` (a -ERR, with an RFC 2449 /
  /// 3206 code: [AUTH], [IN-USE], [SYS/TEMP], [SYS/PERM]). `reason` is a
  /// few fixed words for the log line and the label of
  /// sdps_login_failures_total ("wrong password", "outside hours"): never
  /// client input, never a secret.
  static login_verdict refuse(response reply, std::string reason) {
    login_verdict v;
    v.refused_ = true;
    v.reply_ = std::move(reply);
    v.reply_.positive = false;
    v.reason_ = std::move(reason);
    return v;
  }
  bool refused() const { return refused_; }
  response& reply() { return reply_; }
  const std::string& reason() const { return reason_; }

 private:
  bool refused_ = false;
  response reply_;
  std::string reason_;
};

}  // namespace sdps
