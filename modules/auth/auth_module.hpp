#pragma once
// The auth module: USER and PASS, and the verify stage of every login
// against the host store (lib/hostdb/store.hpp: a hosts file or a
// PostgreSQL database). Settings are documented in README.md beside this
// file.

#include <sdps/module.hpp>

#include "address_guard.hpp"
#include "auth_cache.hpp"
#include "hostdb/hostdb.hpp"
#include "hostdb/store.hpp"
#include "pop3/user.hpp"

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sdps::auth {

/// One password check, prepared on the event loop and run on the blocking
/// pool. Every failing check costs the same: always two Argon2id
/// verifications, against the real hash where there is one and against a
/// dummy hash where there is not (unknown host, password not set, client
/// outside the dialup prefixes). The dummy has the cost most stored hashes
/// have when the store can tell (a hosts file), else the configured
/// `password_cost`, so that an unknown host's refusal takes as long as a
/// known one's.
struct password_check {
  hostdb::secret password;
  std::string pop3_hash;    ///< the host's, or the dummy
  bool pop3_real = false;   ///< pop3_hash is the host's own
  std::string dialup_hash;  ///< the host's (client in its prefixes), or the dummy
  bool dialup_real = false;

  /// The blocking part. Any thread.
  credential run() const;
};

/// The -ERR [AUTH] reply to a password the plaintext policy refuses
/// (session::plaintext_auth_allowed()), with a hint: STLS, or TLS.
response plaintext_refused(session& s);

/// The `auth` module instance.
///
/// USER remembers the name given (in a session slot); PASS hands it and the
/// password to the core as a login (verdict::login), which runs it through
/// the login stages. In the verify stage, this instance checks every login
/// presented with a password (USER/PASS, and AUTH PLAIN from `sasl`): it
/// looks the host up in the host store (`hosts:`, a file or a PostgreSQL
/// database; never blocking the event loop) and checks the password on
/// the blocking pool: the POP3 password from anywhere, the dialup password
/// from the host's dialup addresses. A failure waits `fail_delay` and
/// refuses with `-ERR [AUTH] invalid login`, whatever the cause; a store
/// that cannot answer gets `-ERR [SYS/TEMP]`. APOP is refused.
///
/// A successful check is remembered in an auth_cache (`auth_cache_ttl`,
/// `auth_cache_size`): the same password for the same host and stored hash
/// then passes without Argon2id, and, while the store is unavailable, the
/// same password passes on the cache's word alone. Only the hash check is
/// cached: the dialup address rule and the per-address refusals run at
/// every login. The store's change notifications drop the entries of the
/// hosts that changed; its health is the gauge `sdps_host_store_up`. One
/// instance serves sessions on any number of event-loop threads.
class auth_module final : public sdps::module {
 public:
  /// Reads `fail_delay`, the cache's and the store's settings from the
  /// instance, `hosts`, `password_cost` and `user` from the top level;
  /// opens the host store (a file is read here; a database is waited for,
  /// at most `store_startup_wait`) and makes the dummy hash. Throws
  /// config_error.
  explicit auth_module(module_config& config);
  ~auth_module() override;

  std::vector<command_spec> commands() const override;
  stage_set login_stages() const override { return {login_stage::verify}; }
  awaitable<verdict> on_command(session& s, const command& cmd) override;
  /// verify: checks a login that came with a password.
  awaitable<login_verdict> on_login(session& s, login_stage stage, login_attempt& attempt) override;
  /// USER (in AUTHORIZATION, where the plaintext policy allows it) and
  /// AUTH-RESP-CODE (RFC 2449, RFC 3206).
  void capabilities(session& s, std::vector<std::string>& lines) const override;
  /// SIGHUP: the store's reload() (a file is checked again, a database's
  /// broken connections retried now).
  void reload() override;
  /// SIGHUP with changed settings: `fail_delay`, `auth_cache_ttl`,
  /// `auth_cache_size` and the per-address limits apply live (a changed
  /// cache setting starts an empty cache); `hosts`, `password_cost` and
  /// the store's settings wait for a restart (an empty function).
  std::function<void()> reconfigure(const settings& options, const settings& site) override;
  /// --check, as the configured user: a hosts file it cannot read or
  /// whose folder it cannot write (hostdb::check_access); a database
  /// without the schema or the grants (the store's check()).
  std::vector<std::string> check() const override;

  /// The host store (for tests).
  hostdb::host_store& store() const { return *store_; }
  /// The cache of successful checks in force (for tests).
  std::shared_ptr<const auth_cache> cache() const { return current_cache(); }

 private:
  /// The name USER gave, until PASS.
  struct pending {
    std::optional<identity> who;
  };
  verdict user(session& s, const command& cmd);
  verdict pass(session& s, const command& cmd);
  awaitable<login_verdict> verify(session& s, login_attempt& attempt);
  /// The password check against what the store said of the host (found,
  /// unknown or malformed): from the cache, or Argon2id on the pool.
  /// `cached` says which.
  awaitable<credential> check_password(session& s, const identity& who, const hostdb::lookup_result& found,
                                       std::string_view password, bool& cached);
  /// The store is unavailable: the cache's word (unless what the store
  /// held is `untrusted`), or -ERR [SYS/TEMP].
  awaitable<login_verdict> unavailable(session& s, login_attempt& attempt, const std::string& why, bool untrusted);
  /// The dummy hash of the cost the store's hashes mostly have (made on
  /// the pool the first time a cost is needed).
  awaitable<std::string> dummy_hash();
  /// The store's notification: drop what the cache holds of the host.
  void changed(const hostdb::host_change& change);
  std::shared_ptr<auth_cache> current_cache() const {
    std::lock_guard guard(mutex_);
    return cache_;
  }

  server_context& server_;
  logger& log_;
  slot_key<pending> pending_;
  counter_handle cache_hits_, cache_misses_;
  hostdb::location where_;
  std::string user_;  // the config's `user:`, for check()
  hostdb::cost cost_;
  std::unique_ptr<address_guard> guard_;
  /// The settings a reconfigure() compares with: what the instance runs with.
  address_limits limits_;
  std::chrono::milliseconds cache_ttl_;
  std::size_t cache_size_;

  mutable std::mutex mutex_;  // guards cache_ and dummies_
  std::shared_ptr<auth_cache> cache_;
  std::map<hostdb::hash_cost, std::string> dummies_;

  /// Last: its thread calls changed() and the metrics until it is gone.
  std::unique_ptr<hostdb::host_store> store_;
};

}  // namespace sdps::auth
