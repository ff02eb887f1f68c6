#include "auth_module.hpp"

#include "hostdb/access.hpp"

#include <sodium.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <utility>

namespace sdps::auth {

namespace {

constexpr std::string_view invalid_login = "[AUTH] invalid login";
constexpr std::chrono::milliseconds max_fail_delay = std::chrono::seconds(30);
// Two entries per host that logs in with both passwords; about 200 octets
// each (README.md).
constexpr std::size_t default_cache_size = 100000;

// The client's address as it is: an IPv4 client on a dual-stack listener
// shows as ::ffff:a.b.c.d, which logs read better as a.b.c.d.
std::string address_for_log(const asio::ip::address& a) {
  if (a.is_v6() && a.to_v6().is_v4_mapped())
    return asio::ip::make_address_v4(asio::ip::v4_mapped, a.to_v6()).to_string();
  return a.to_string();
}

// Cheap enough for start-up: one random password nobody knows, hashed at
// the configured cost, so that checking it costs what checking a real
// password costs.
std::string make_dummy_hash(hostdb::hash_cost c) {
  std::array<unsigned char, 32> random{};
  randombytes_buf(random.data(), random.size());
  std::array<char, random.size() * 2 + 1> text{};
  sodium_bin2hex(text.data(), text.size(), random.data(), random.size());
  std::string hash = hostdb::hash_password(std::string_view(text.data(), random.size() * 2), c);
  sodium_memzero(random.data(), random.size());
  sodium_memzero(text.data(), text.size());
  return hash;
}

// A run_blocking() job must resume on the session's event loop: the rest of
// PASS touches the session and the module's state.
void check_on_loop(session& s) {
  const executor ex = s.get_executor();
  const auto* loop = ex.target<asio::io_context::executor_type>();
  if (loop && !loop->running_in_this_thread())
    throw std::logic_error("password check resumed outside the session's event loop");
}

// True if nothing a login depends on differs between the two records.
bool same_record(const hostdb::host_record& a, const hostdb::host_record& b) {
  if (a.pop3_hash != b.pop3_hash || a.dialup_hash != b.dialup_hash || a.dialup.size() != b.dialup.size())
    return false;
  for (std::size_t i = 0; i < a.dialup.size(); ++i)
    if (a.dialup[i] != b.dialup[i]) return false;
  return true;
}

}  // namespace

credential password_check::run() const {
  // Both checks run whenever the first fails, so a failure costs the same
  // whether the host exists, has the password set, or not.
  const bool pop3 = hostdb::verify_password(pop3_hash, password.view());
  if (pop3 && pop3_real) return credential::pop3;
  const bool dialup = hostdb::verify_password(dialup_hash, password.view());
  if (dialup && dialup_real) return credential::dialup;
  return credential::none;
}

namespace {

/// The settings SIGHUP may change live (reconfigure()), as the constructor
/// reads them too.
struct auth_settings {
  address_limits limits;
  std::chrono::milliseconds cache_ttl{std::chrono::hours(1)};
  std::size_t cache_size = default_cache_size;
};

/// Reads them from the instance's entry and the top level. Throws config_error.
auth_settings read_settings(const settings& options, const settings& site) {
  auth_settings out;
  out.limits.fail_delay = options.duration_or("fail_delay", std::chrono::seconds(1));
  if (out.limits.fail_delay > max_fail_delay) options.fail("fail_delay", "'fail_delay' must be at most 30s");
  const auto failures = site.integer_or("max_login_failures_per_address", out.limits.max_failures);
  if (failures < 0 || failures > 1000000)
    site.fail("max_login_failures_per_address", "'max_login_failures_per_address' must be 0 (no limit) to 1000000");
  out.limits.max_failures = static_cast<unsigned>(failures);
  out.limits.failure_window = site.duration_or("login_failure_window", out.limits.failure_window);
  if (out.limits.failure_window.count() <= 0)
    site.fail("login_failure_window", "'login_failure_window' must be positive");
  const auto checks =
      site.integer_or("max_password_checks_per_address", static_cast<std::int64_t>(out.limits.max_checks));
  if (checks < 0 || checks > 1000)
    site.fail("max_password_checks_per_address", "'max_password_checks_per_address' must be 0 (no limit) to 1000");
  out.limits.max_checks = static_cast<std::size_t>(checks);

  out.cache_ttl = options.duration_or("auth_cache_ttl", out.cache_ttl);
  if (out.cache_ttl.count() < 0 || out.cache_ttl > std::chrono::hours(24 * 7))
    options.fail("auth_cache_ttl", "'auth_cache_ttl' must be 0 (no cache) to 7 days");
  const auto size = options.integer_or("auth_cache_size", static_cast<std::int64_t>(out.cache_size));
  if (size < 0 || size > 10000000)
    options.fail("auth_cache_size", "'auth_cache_size' must be 0 (no cache) to 10000000 entries");
  out.cache_size = static_cast<std::size_t>(size);
  return out;
}

/// Where `hosts:` points, resolved as the constructor resolves it.
hostdb::location locate_hosts(const settings& site) {
  if (!site.has("hosts"))
    site.fail("hosts", "the auth module needs 'hosts:' (a hosts file or a postgresql:// URI) at the top level");
  hostdb::location out;
  try {
    out = hostdb::locate(site.string("hosts"), {});
  } catch (const std::invalid_argument& e) {
    site.fail("hosts", e.what());
  }
  // A file resolves as every path of the config does (against its folder).
  if (out.type == hostdb::location::kind::file) out.file = site.path("hosts");
  return out;
}

}  // namespace

auth_module::auth_module(module_config& config) : server_(config.server()), log_(config.log()) {
  if (sodium_init() < 0) throw config_error("module instance '" + config.instance() + "': libsodium failed to initialise");
  const settings& site = server_.site();
  settings& options = config.options();
  where_ = locate_hosts(site);
  user_ = site.string_or("user", "");
  // The file may be owned by the user sdpsd becomes (and root), whoever
  // reads it first: sdpsd starts as root.
  if (!user_.empty()) {
    const auto account = base::find_account(user_);
    if (!account)
      site.fail("user", "user '" + user_ + "' (the config's 'user:') does not exist: create it, e.g. adduser "
                        "--system --group " + user_);
    where_.owner = account->uid;
  }

  const std::string cost_name = site.string_or("password_cost", "interactive");
  const auto cost = hostdb::parse_cost(cost_name);
  if (!cost) site.fail("password_cost", "'password_cost' must be interactive, moderate, sensitive or min");
  cost_ = *cost;
  if (cost_ == hostdb::cost::min)
    log_.warning("password_cost is 'min': password hashes are cheap to crack; use it for tests and benchmarks only");

  sdps::metrics& metrics = server_.metrics();
  metrics.declare("sdps_auth_cache_hits_total", "counter", "Logins answered from the auth cache.");
  metrics.declare("sdps_auth_cache_misses_total", "counter", "Logins the auth cache could not answer.");
  metrics.declare("sdps_host_store_up", "gauge", "1 while the host store (hosts:) can answer lookups, else 0.");
  cache_hits_ = metrics.counter("sdps_auth_cache_hits_total");
  cache_misses_ = metrics.counter("sdps_auth_cache_misses_total");
  const auth_settings given = read_settings(options, site);
  limits_ = given.limits;
  guard_ = std::make_unique<address_guard>(limits_);
  cache_ttl_ = given.cache_ttl;
  cache_size_ = given.cache_size;
  cache_ = std::make_shared<auth_cache>(cache_ttl_, cache_size_);

  // The store's settings (README.md); the pool and the retries are the
  // PostgreSQL store's, the query timeout both stores'.
  hostdb::store_options store;
  store.log = &log_;
  const auto pool = options.integer_or("store_pool_size", static_cast<std::int64_t>(store.pool_size));
  if (pool < 1 || pool > 64) options.fail("store_pool_size", "'store_pool_size' must be 1 to 64 connections");
  store.pool_size = static_cast<std::size_t>(pool);
  using ms = std::chrono::milliseconds;
  const auto positive = [&options](const char* key, ms fallback, ms most) {
    const auto value = options.duration_or(key, fallback);
    if (value.count() <= 0 || value > most)
      options.fail(key, std::string("'").append(key).append("' must be more than 0 and at most ").append(
                            std::to_string(most.count() / 1000)).append("s"));
    return value;
  };
  store.connect_timeout = positive("store_connect_timeout", store.connect_timeout, std::chrono::minutes(1));
  store.query_timeout = positive("store_query_timeout", store.query_timeout, std::chrono::minutes(1));
  store.retry_max = positive("store_retry_max", store.retry_max, std::chrono::minutes(10));
  store.retry_min = std::min(store.retry_min, store.retry_max);
  const auto startup_wait = options.duration_or("store_startup_wait", std::chrono::seconds(3));
  if (startup_wait.count() < 0 || startup_wait > std::chrono::minutes(1))
    options.fail("store_startup_wait", "'store_startup_wait' must be 0s to 60s");
  store.changed = [this](const hostdb::host_change& c) { changed(c); };
  sdps::metrics* gauges = &metrics;
  store.health = [gauges](bool up) { gauges->set("sdps_host_store_up", {}, up ? 1 : 0); };
  // Down until the store says otherwise (its thread reports the first state).
  metrics.set("sdps_host_store_up", {}, 0);

  // An unreadable or insecure hosts file stops sdpsd (and --check) here;
  // once running, the same problem answers [SYS/TEMP] until it is fixed.
  // A database that is down is no error: it is waited for a moment, and
  // logins answer [SYS/TEMP] until it is up.
  try {
    store_ = hostdb::open_store(where_, std::move(store));
  } catch (const std::exception& e) {
    throw config_error("module instance '" + config.instance() + "': " + e.what());
  }
  if (where_.type == hostdb::location::kind::postgresql && !store_->wait_ready(startup_wait))
    log_.warning("host store ", where_.to_string(), " is down at start: serving without it; logins answer "
                 "[SYS/TEMP] until it is up (waited at most store_startup_wait, ", startup_wait.count(), " ms)");
  // The dummy for the cost now expected, made before the first login needs it.
  const hostdb::hash_cost wanted = store_->usual_cost().value_or(hostdb::parameters(cost_));
  dummies_.emplace(wanted, make_dummy_hash(wanted));
}

auth_module::~auth_module() {
  // The store's thread calls back into this object: it stops first.
  store_.reset();
}

std::function<void()> auth_module::reconfigure(const settings& options, const settings& site) {
  const auth_settings wanted = read_settings(options, site);
  // The store's place and the cost of new hashes shape the open store and
  // the dummy hashes: a restart's work. (The store's own settings too.)
  const hostdb::location where = locate_hosts(site);
  const auto cost = hostdb::parse_cost(site.string_or("password_cost", "interactive"));
  if (where.to_string() != where_.to_string() || where.file != where_.file || !cost || *cost != cost_) return {};
  return [this, wanted] {
    if (wanted.limits.fail_delay != limits_.fail_delay || wanted.limits.max_failures != limits_.max_failures ||
        wanted.limits.failure_window != limits_.failure_window || wanted.limits.max_checks != limits_.max_checks) {
      limits_ = wanted.limits;
      guard_->set_limits(limits_);
    }
    if (wanted.cache_ttl != cache_ttl_ || wanted.cache_size != cache_size_) {
      cache_ttl_ = wanted.cache_ttl;
      cache_size_ = wanted.cache_size;
      auto fresh = std::make_shared<auth_cache>(cache_ttl_, cache_size_);
      std::lock_guard guard(mutex_);
      cache_ = std::move(fresh);
      log_.info("auth cache: new settings (auth_cache_ttl ", cache_ttl_.count(), "ms, auth_cache_size ", cache_size_,
                "): it starts empty");
    }
  };
}

std::vector<std::string> auth_module::check() const {
  // Run as the configured user (the core's --check): a hosts file it
  // cannot read or whose folder it cannot write; a database without the
  // schema or the grants.
  if (where_.type == hostdb::location::kind::file) return hostdb::check_access(where_.file);
  std::optional<base::account> who;
  if (!user_.empty()) who = base::find_account(user_);
  return store_->check(who ? &*who : nullptr);
}

awaitable<std::string> auth_module::dummy_hash() {
  // The cost most stored hashes have: an unknown host's check then costs
  // what a known host's costs, even after password_cost has changed.
  const hostdb::hash_cost wanted = store_->usual_cost().value_or(hostdb::parameters(cost_));
  {
    std::lock_guard guard(mutex_);
    if (auto it = dummies_.find(wanted); it != dummies_.end()) co_return it->second;
  }
  auto job = [wanted] { return make_dummy_hash(wanted); };
  std::string dummy = co_await run_blocking(server_, std::move(job));
  std::lock_guard guard(mutex_);
  co_return dummies_.emplace(wanted, std::move(dummy)).first->second;
}

void auth_module::changed(const hostdb::host_change& change) {
  const std::shared_ptr<auth_cache> cache = current_cache();
  if (change.every) {
    cache->clear();
    log_.debug("auth cache: dropped every entry (the host store says any host may have changed)");
  } else {
    cache->forget(change.host);
    log_.debug("auth cache: ", printable(change.host, 80), " changed in the host store: its entries dropped");
  }
}

std::vector<command_spec> auth_module::commands() const {
  return {{"USER", pop3_state::authorization}, {"PASS", pop3_state::authorization}, {"APOP", pop3_state::authorization}};
}

void auth_module::capabilities(session& s, std::vector<std::string>& lines) const {
  // RFC 2449: what the session can use now; USER means nothing once
  // logged in.
  if (s.state() == pop3_state::authorization && s.plaintext_auth_allowed()) lines.push_back("USER");
  lines.push_back("AUTH-RESP-CODE");
}

response plaintext_refused(session& s) {
  return response::err(s.can_start_tls() ? "[AUTH] plaintext login is not allowed here: use STLS first"
                                         : "[AUTH] plaintext login is not allowed here: connect with TLS");
}

awaitable<verdict> auth_module::on_command(session& s, const command& cmd) {
  if ((cmd.name == "USER" || cmd.name == "PASS") && !s.plaintext_auth_allowed()) {
    s.drop_slot(pending_);
    co_return verdict::answer(plaintext_refused(s));
  }
  if (cmd.name == "USER") co_return user(s, cmd);
  if (cmd.name == "PASS") co_return pass(s, cmd);
  if (cmd.name == "APOP") co_return verdict::answer(response::err("APOP not implemented; use USER and PASS"));
  co_return verdict::next();
}

verdict auth_module::user(session& s, const command& cmd) {
  auto who = pop3::parse_user(cmd.argument, server_.customer_domain());
  if (!who) {
    s.drop_slot(pending_);
    return verdict::answer(response::err("invalid user name: use HOST or USER+HOST"));
  }
  s.slot(pending_).who = std::move(*who);
  // The same reply for every valid name: whether the host exists is not
  // revealed before PASS, nor after it.
  return verdict::answer(response::ok("send PASS"));
}

verdict auth_module::pass(session& s, const command& cmd) {
  pending* p = s.find_slot(pending_);
  if (!p || !p->who) return verdict::answer(response::err("send USER first"));
  // One PASS per USER, whatever comes of it (RFC 1939: after a failed
  // PASS the client starts again with USER).
  identity who = std::move(*p->who);
  s.drop_slot(pending_);
  return verdict::login(credentials(std::move(who), "USER", cmd.argument));
}

awaitable<login_verdict> auth_module::on_login(session& s, login_stage, login_attempt& attempt) {
  // Logins that come with a password are this instance's to check; others
  // (a back end's front end, a certificate) are another verifier's.
  if (attempt.mechanism() != "USER" && attempt.mechanism() != "PLAIN") co_return login_verdict::proceed();
  co_return co_await verify(s, attempt);
}

awaitable<login_verdict> auth_module::verify(session& s, login_attempt& attempt) {
  const identity who = attempt.who();
  const auto address = s.remote_endpoint().address();

  bool first_refusal = false;
  if (guard_->refused(address, address_guard::clock::now(), first_refusal)) {
    if (first_refusal)
      log_.warning("refusing logins from ", address_for_log(address),
                   ": too many failed logins (max_login_failures_per_address)");
    co_return login_verdict::refuse(
        response::err("[AUTH] too many failed logins from your address, try again later"), "too many failures");
  }

  // Named, then moved in: no temporaries inside a co_await (docs/toolchain.md).
  std::string name = who.host;
  hostdb::lookup_result found = co_await store_->lookup(std::move(name));
  check_on_loop(s);
  if (found.status == hostdb::lookup_status::unavailable)
    co_return co_await unavailable(s, attempt, found.detail, found.untrusted);

  bool cached = false;
  credential matched = co_await check_password(s, who, found, attempt.password(), cached);
  if (matched == credential::none && found.stale && found.status == hostdb::lookup_status::found) {
    // Refused by a version of the hosts file that is being replaced: the
    // new one may say otherwise (a password set a moment ago). An unknown
    // host's lookup has waited for it already.
    co_await store_->catch_up();
    std::string again_name = who.host;
    hostdb::lookup_result again = co_await store_->lookup(std::move(again_name));
    check_on_loop(s);
    if (again.status != found.status ||
        (again.status == hostdb::lookup_status::found && !same_record(again.record, found.record))) {
      if (again.status == hostdb::lookup_status::unavailable)
        co_return co_await unavailable(s, attempt, again.detail, again.untrusted);
      found = std::move(again);
      matched = co_await check_password(s, who, found, attempt.password(), cached);
    }
  }

  if (matched != credential::none) {
    if (cached) s.log().debug("auth cache: ", who.host, ": the ", matched == credential::pop3 ? "POP3" : "dialup",
                              " password passed its check within auth_cache_ttl");
    // The core logs the login once every stage has passed.
    attempt.accept(matched == credential::pop3 ? "the POP3 password" : "the dialup password");
    co_return login_verdict::proceed();
  }

  // The reason goes to the log (and the metrics), never to the client.
  const hostdb::host_record* host = found.status == hostdb::lookup_status::found ? &found.record : nullptr;
  const char* reason = found.status == hostdb::lookup_status::malformed ? "malformed host record"
                       : !host                                          ? "unknown host"
                       : host->pop3_hash.empty() && (host->dialup_hash.empty() || !host->dialup_from(address))
                           ? "no usable password"
                           : "wrong password";
  asio::steady_timer delay(s.get_executor());
  delay.expires_after(guard_->failed(address, address_guard::clock::now()));
  boost::system::error_code ignored;
  co_await delay.async_wait(asio::redirect_error(asio::use_awaitable, ignored));
  co_return login_verdict::refuse(response::err(std::string(invalid_login)), reason);
}

awaitable<credential> auth_module::check_password(session& s, const identity& who,
                                                  const hostdb::lookup_result& found, std::string_view password,
                                                  bool& cached) {
  const auto address = s.remote_endpoint().address();
  const hostdb::host_record* host = found.status == hostdb::lookup_status::found ? &found.record : nullptr;
  const std::string dummy = co_await dummy_hash();
  check_on_loop(s);

  auto check = std::make_shared<password_check>();
  check->password = hostdb::secret(password);
  check->pop3_real = host && !host->pop3_hash.empty();
  check->pop3_hash = check->pop3_real ? host->pop3_hash : dummy;
  check->dialup_real = host && !host->dialup_hash.empty() && host->dialup_from(address);
  check->dialup_hash = check->dialup_real ? host->dialup_hash : dummy;

  // The cache vouches only for a password that passed the check of this
  // host's stored hash (the digest covers both); whether the dialup
  // password may be used from this address was decided just above, from
  // the record the store gave.
  auth_cache::digest pop3_digest{}, dialup_digest{};
  credential matched = credential::none;
  const std::shared_ptr<auth_cache> cache = current_cache();
  const bool cache_on = cache->enabled() && (check->pop3_real || check->dialup_real);
  if (cache_on) {
    if (check->pop3_real) {
      pop3_digest = cache->fingerprint(check->pop3_hash, check->password.view());
      if (cache->verified(who.host, credential::pop3, pop3_digest)) matched = credential::pop3;
    }
    if (matched == credential::none && check->dialup_real) {
      dialup_digest = cache->fingerprint(check->dialup_hash, check->password.view());
      if (cache->verified(who.host, credential::dialup, dialup_digest)) matched = credential::dialup;
    }
  }
  cached = matched != credential::none;
  if (cache_on) (cached ? cache_hits_ : cache_misses_).add();

  if (!cached) {
    // At most max_password_checks_per_address of one address reach the
    // pool; the rest wait here, holding no thread, so that one address
    // cannot queue the pool full in front of everyone else.
    auto slot = co_await guard_->check(address, s.get_executor());
    check_on_loop(s);
    // Named, not a temporary inside the co_await (see run_blocking's notes).
    auto job = [check] { return check->run(); };
    matched = co_await run_blocking(server_, std::move(job));
    slot.reset();
    check_on_loop(s);
    if (cache_on && matched != credential::none) {
      auth_cache::digest offline = cache->offline_fingerprint(check->password.view());
      cache->remember(who.host, matched, matched == credential::pop3 ? pop3_digest : dialup_digest, offline,
                       matched == credential::dialup ? host->dialup : std::vector<hostdb::prefix>{});
      sodium_memzero(offline.data(), offline.size());
    }
  }
  check->password.clear();
  sodium_memzero(pop3_digest.data(), pop3_digest.size());
  sodium_memzero(dialup_digest.data(), dialup_digest.size());
  co_return matched;
}

awaitable<login_verdict> auth_module::unavailable(session& s, login_attempt& attempt, const std::string& why,
                                                  bool untrusted) {
  const identity who = attempt.who();
  const auto address = s.remote_endpoint().address();
  // What passed its check within auth_cache_ttl still passes: the store
  // cannot say it changed, and an outage should not log out every customer.
  // Not when the store's data itself is in doubt (an insecure hosts file).
  const std::shared_ptr<auth_cache> cache = current_cache();
  if (cache->enabled() && !untrusted) {
    auth_cache::digest offline = cache->offline_fingerprint(attempt.password());
    const credential matched = cache->verified_offline(who.host, offline, address);
    sodium_memzero(offline.data(), offline.size());
    (matched != credential::none ? cache_hits_ : cache_misses_).add();
    if (matched != credential::none) {
      s.log().debug("auth cache: ", who.host, ": the ", matched == credential::pop3 ? "POP3" : "dialup",
                    " password passed its check within auth_cache_ttl (the host store is unavailable)");
      attempt.accept(matched == credential::pop3 ? "the POP3 password" : "the dialup password");
      co_return login_verdict::proceed();
    }
  }
  // The store logs each change of its state once; this login only at debug.
  s.log().debug("login of ", who.display(), " not checked: ", why);
  // Counted and delayed as a failure: an outage must not become a quick
  // way to try passwords against the cache.
  asio::steady_timer delay(s.get_executor());
  delay.expires_after(guard_->failed(address, address_guard::clock::now()));
  boost::system::error_code ignored;
  co_await delay.async_wait(asio::redirect_error(asio::use_awaitable, ignored));
  co_return login_verdict::refuse(response::err("[SYS/TEMP] the host database is unavailable, try again later"),
                                  "host store unavailable");
}

void auth_module::reload() { store_->reload(); }

}  // namespace sdps::auth
