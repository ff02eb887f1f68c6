#pragma once
// The auth module: USER and PASS against the host database (hostdb.hpp).
// Settings are documented in README.md beside this file.

#include <sdps/auth.hpp>
#include <sdps/module.hpp>

#include "address_guard.hpp"
#include "auth_cache.hpp"
#include "hostdb/hostdb.hpp"
#include "pop3/user.hpp"

#include <chrono>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

namespace sdps::auth {

/// One password check, prepared on the event loop and run on the blocking
/// pool. Every failing check costs the same: always two Argon2id
/// verifications, against the real hash where there is one and against a
/// dummy hash where there is not (unknown host, password not set, client
/// outside the dialup prefixes). The dummy has the cost most stored hashes
/// have (the configured cost when there are none), so that an unknown
/// host's refusal takes as long as a known one's after a cost change.
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
/// USER stores the pending identity in session.login(). PASS verifies it
/// (on the blocking pool), then on success passes the command on with
/// session.login() set so that lock, merge and commands finish the login;
/// on failure it waits `fail_delay`, clears session.login() and answers
/// `-ERR [AUTH] invalid login`, whatever the cause. APOP is refused.
///
/// A successful check is remembered in an auth_cache (`auth_cache_ttl`,
/// `auth_cache_size`): the same password for the same host and stored hash
/// then passes without Argon2id. Only the hash check is cached: the dialup
/// address rule, the per-address refusals and the database reload run at
/// every PASS, and a PASS the cache does not vouch for is checked in full.
/// One instance serves sessions on any number of event-loop threads.
class auth_module final : public sdps::module {
 public:
  /// Reads `fail_delay` from the instance, `hosts` and `password_cost`
  /// from the top level, loads the database (malformed lines are logged
  /// and skipped) and makes the dummy hash. Throws config_error.
  explicit auth_module(module_config& config);

  std::vector<command_spec> commands() const override;
  event_set events() const override { return {}; }
  awaitable<verdict> on_command(session& s, const command& cmd) override;
  /// USER and AUTH-RESP-CODE (RFC 2449, RFC 3206).
  void capabilities(session& s, std::vector<std::string>& lines) const override;
  /// SIGHUP: re-reads the file; a file with malformed lines is refused
  /// (logged) and the hosts loaded before stay in force.
  void reload() override;

  /// The hosts now in force (for tests and logs).
  std::shared_ptr<const hostdb::database> hosts() const;
  /// The cache of successful checks (for tests).
  const auth_cache& cache() const { return *cache_; }

 private:
  awaitable<verdict> user(session& s, const command& cmd);
  awaitable<verdict> pass(session& s, const command& cmd);
  /// The cheap check at each PASS: re-reads the file (off the loop) when
  /// its stamp differs from the version in force and from a version
  /// already refused.
  awaitable<void> refresh();
  /// Installs a freshly read file, or refuses it; drops the cache entries
  /// of every host whose record it changes or removes. Any thread.
  void apply(hostdb::load_result result, bool initial);
  /// Drops the cache entries of the hosts that `after` changes or removes.
  void forget_changed(const hostdb::database& before, const hostdb::database& after);
  /// The dummy hash for the hosts in `result`: of the cost most of their
  /// hashes have. Blocking (hashes on a cache miss); any thread.
  std::string dummy_for(const hostdb::load_result& result);

  server_context& server_;
  logger& log_;
  password_verifier verifier_;
  std::filesystem::path file_;
  hostdb::cost cost_;
  std::chrono::milliseconds fail_delay_;
  std::unique_ptr<address_guard> guard_;
  std::unique_ptr<auth_cache> cache_;

  mutable std::mutex mutex_;  // guards the members below
  std::shared_ptr<const hostdb::database> hosts_;
  hostdb::file_stamp loaded_;
  std::optional<hostdb::file_stamp> refused_;
  /// Why the file in place cannot be used (unreadable, insecure mode):
  /// every PASS answers [SYS/TEMP] until it can. Empty when usable.
  std::string broken_;
  std::string dummy_hash_;
  std::map<hostdb::hash_cost, std::string> dummies_;
};

}  // namespace sdps::auth
