#include "auth_module.hpp"

#include <sodium.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <system_error>
#include <utility>

namespace sdps::auth {

namespace {

constexpr std::string_view invalid_login = "[AUTH] invalid login";
constexpr std::chrono::milliseconds max_fail_delay = std::chrono::seconds(30);
constexpr std::size_t problems_logged = 20;
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

// What the file reader hands back to the event loop.
struct reload_outcome {
  std::optional<hostdb::load_result> result;
  std::string dummy;  // for result's hosts
  std::string error;  // set when the file could not be read at all
};

reload_outcome read_file(const std::filesystem::path& file) {
  reload_outcome out;
  try {
    out.result = hostdb::load(file);
  } catch (const std::exception& e) {
    out.error = e.what();
  }
  return out;
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
    if (a.dialup[i].network != b.dialup[i].network || a.dialup[i].length != b.dialup[i].length) return false;
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

auth_module::auth_module(module_config& config) : server_(config.server()), log_(config.log()) {
  if (sodium_init() < 0) throw config_error("module instance '" + config.instance() + "': libsodium failed to initialise");
  const settings& site = server_.site();
  if (!site.has("hosts"))
    site.fail("hosts", "the auth module needs 'hosts:' (the host database file) at the top level");
  file_ = site.path("hosts");

  const std::string cost_name = site.string_or("password_cost", "interactive");
  const auto cost = hostdb::parse_cost(cost_name);
  if (!cost) site.fail("password_cost", "'password_cost' must be interactive, moderate, sensitive or min");
  cost_ = *cost;
  if (cost_ == hostdb::cost::min)
    log_.warning("password_cost is 'min': password hashes are cheap to crack; use it for tests and benchmarks only");

  config.provide<password_verifier>(&verifier_);
  fail_delay_ = config.options().duration_or("fail_delay", std::chrono::seconds(1));
  if (fail_delay_ > max_fail_delay) config.options().fail("fail_delay", "'fail_delay' must be at most 30s");

  address_limits limits;
  limits.fail_delay = fail_delay_;
  const auto failures = site.integer_or("max_login_failures_per_address", limits.max_failures);
  if (failures < 0 || failures > 1000000)
    site.fail("max_login_failures_per_address", "'max_login_failures_per_address' must be 0 (no limit) to 1000000");
  limits.max_failures = static_cast<unsigned>(failures);
  limits.failure_window = site.duration_or("login_failure_window", limits.failure_window);
  if (limits.failure_window.count() <= 0) site.fail("login_failure_window", "'login_failure_window' must be positive");
  const auto checks = site.integer_or("max_password_checks_per_address", static_cast<std::int64_t>(limits.max_checks));
  if (checks < 0 || checks > 1000)
    site.fail("max_password_checks_per_address", "'max_password_checks_per_address' must be 0 (no limit) to 1000");
  limits.max_checks = static_cast<std::size_t>(checks);
  guard_ = std::make_unique<address_guard>(limits);

  const auto ttl = config.options().duration_or("auth_cache_ttl", std::chrono::hours(1));
  if (ttl.count() < 0 || ttl > std::chrono::hours(24 * 7))
    config.options().fail("auth_cache_ttl", "'auth_cache_ttl' must be 0 (no cache) to 7 days");
  const auto size = config.options().integer_or("auth_cache_size", static_cast<std::int64_t>(default_cache_size));
  if (size < 0 || size > 10000000)
    config.options().fail("auth_cache_size", "'auth_cache_size' must be 0 (no cache) to 10000000 entries");
  cache_ = std::make_unique<auth_cache>(ttl, static_cast<std::size_t>(size));

  // An unreadable or insecure file stops sdpsd (and --check) here; once
  // running, the same problem answers [SYS/TEMP] until it is fixed.
  reload_outcome first = read_file(file_);
  if (!first.result) throw config_error("module instance '" + config.instance() + "': " + first.error);
  dummy_hash_ = dummy_for(*first.result);
  apply(std::move(*first.result), true);
}

std::string auth_module::dummy_for(const hostdb::load_result& result) {
  // The cost most stored hashes have: an unknown host's check then costs
  // what a known host's costs, even after password_cost has changed.
  std::map<hostdb::hash_cost, std::size_t> seen;
  for (const auto& [name, r] : result.hosts.hosts())
    for (const std::string* h : {&r.pop3_hash, &r.dialup_hash})
      if (auto c = hostdb::cost_of(*h)) ++seen[*c];
  hostdb::hash_cost wanted = hostdb::parameters(cost_);
  std::size_t most = 0;
  for (const auto& [c, n] : seen)
    if (n >= most) {  // a tie goes to the dearer cost (later in the map)
      most = n;
      wanted = c;
    }
  if (seen.size() > 1)
    log_.warning("host database: the password hashes have ", seen.size(),
                 " different costs; refusals for hosts whose hash is not at the most common cost take another "
                 "time than unknown hosts' (set their passwords again to give them the cost of password_cost)");
  {
    std::lock_guard guard(mutex_);
    if (auto it = dummies_.find(wanted); it != dummies_.end()) return it->second;
  }
  std::string dummy = make_dummy_hash(wanted);
  std::lock_guard guard(mutex_);
  return dummies_.emplace(wanted, std::move(dummy)).first->second;
}

std::vector<command_spec> auth_module::commands() const {
  const state_mask authorization = static_cast<state_mask>(pop3_state::authorization);
  return {{"USER", authorization}, {"PASS", authorization}, {"APOP", authorization}};
}

void auth_module::capabilities(session& s, std::vector<std::string>& lines) const {
  if (s.plaintext_auth_allowed()) lines.push_back("USER");
  lines.push_back("AUTH-RESP-CODE");
}

response plaintext_refused(session& s) {
  return response::err(s.can_start_tls() ? "[AUTH] plaintext login is not allowed here: use STLS first"
                                         : "[AUTH] plaintext login is not allowed here: connect with TLS");
}

awaitable<verdict> auth_module::on_command(session& s, const command& cmd) {
  if ((cmd.name == "USER" || cmd.name == "PASS") && !s.plaintext_auth_allowed()) {
    s.login().reset();
    co_return verdict::answer(plaintext_refused(s));
  }
  if (cmd.name == "USER") co_return co_await user(s, cmd);
  if (cmd.name == "PASS") co_return co_await pass(s, cmd);
  if (cmd.name == "APOP") co_return verdict::answer(response::err("APOP not implemented; use USER and PASS"));
  co_return verdict::next();
}

awaitable<verdict> auth_module::user(session& s, const command& cmd) {
  auto who = pop3::parse_user(cmd.argument, server_.customer_domain());
  if (!who) {
    s.login().reset();
    co_return verdict::answer(response::err("invalid user name: use HOST or USER+HOST"));
  }
  s.login() = std::move(*who);
  // The same reply for every valid name: whether the host exists is not
  // revealed before PASS, nor after it.
  co_return verdict::answer(response::ok("send PASS"));
}

awaitable<verdict> auth_module::pass(session& s, const command& cmd) {
  if (!s.login()) co_return verdict::answer(response::err("send USER first"));
  const identity who = *s.login();
  const auto address = s.remote_endpoint().address();

  bool first_refusal = false;
  if (guard_->refused(address, address_guard::clock::now(), first_refusal)) {
    if (first_refusal)
      log_.warning("refusing logins from ", address_for_log(address),
                   ": too many failed logins (max_login_failures_per_address)");
    s.login().reset();
    co_return verdict::answer(response::err("[AUTH] too many failed logins from your address, try again later"));
  }

  co_await refresh();
  {
    std::unique_lock guard(mutex_);
    if (!broken_.empty()) {
      const std::string why = broken_;
      guard.unlock();
      log_.error("login of ", who.display(), " refused: ", why);
      s.login().reset();
      co_return verdict::answer(response::err("[SYS/TEMP] the host database cannot be read, try again later"));
    }
  }
  const auto db = hosts();
  std::string dummy;
  {
    std::lock_guard guard(mutex_);
    dummy = dummy_hash_;
  }

  auto check = std::make_shared<password_check>();
  check->password = hostdb::secret(cmd.argument);
  const hostdb::host_record* host = db->find(who.host);
  check->pop3_real = host && !host->pop3_hash.empty();
  check->pop3_hash = check->pop3_real ? host->pop3_hash : dummy;
  check->dialup_real = host && !host->dialup_hash.empty() && host->dialup_from(address);
  check->dialup_hash = check->dialup_real ? host->dialup_hash : dummy;

  // The cache vouches only for a password that passed the check of this
  // host's stored hash (the digest covers both); whether the dialup
  // password may be used from this address was decided just above, from
  // the database in force.
  auth_cache::digest pop3_digest{}, dialup_digest{};
  credential matched = credential::none;
  const bool cache_on = cache_->enabled() && (check->pop3_real || check->dialup_real);
  if (cache_on) {
    if (check->pop3_real) {
      pop3_digest = cache_->fingerprint(check->pop3_hash, check->password.view());
      if (cache_->verified(who.host, credential::pop3, pop3_digest)) matched = credential::pop3;
    }
    if (matched == credential::none && check->dialup_real) {
      dialup_digest = cache_->fingerprint(check->dialup_hash, check->password.view());
      if (cache_->verified(who.host, credential::dialup, dialup_digest)) matched = credential::dialup;
    }
  }
  const bool cached = matched != credential::none;
  if (cache_on) cached ? server_.metrics().auth_cache_hit() : server_.metrics().auth_cache_miss();

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
    if (cache_on) cache_->remember(who.host, matched, matched == credential::pop3 ? pop3_digest : dialup_digest);
  }
  check->password.clear();
  sodium_memzero(pop3_digest.data(), pop3_digest.size());
  sodium_memzero(dialup_digest.data(), dialup_digest.size());

  if (matched != credential::none) {
    if (cached) s.log().debug("auth cache: ", who.host, ": the ", matched == credential::pop3 ? "POP3" : "dialup",
                              " password passed its check within auth_cache_ttl");
    s.log().info("login ", who.display(), " from ", address_for_log(address), " with the ",
                 matched == credential::pop3 ? "POP3" : "dialup", " password");
    co_return verdict::next();
  }

  // The reason stays in the log (and the metrics), never in the reply.
  const char* reason = !host                                          ? "unknown host"
                       : host->pop3_hash.empty() && !check->dialup_real ? "no usable password"
                                                                        : "wrong password";
  s.log().info("login failed: host ", who.host, " from ", address_for_log(address), ": ", reason);
  server_.metrics().add("sdps_logins_total", {{"result", "failed"}});
  server_.metrics().add("sdps_login_failures_total", {{"reason", reason}});
  s.login().reset();
  asio::steady_timer delay(s.get_executor());
  delay.expires_after(guard_->failed(address, address_guard::clock::now()));
  boost::system::error_code ignored;
  co_await delay.async_wait(asio::redirect_error(asio::use_awaitable, ignored));
  co_return verdict::answer(response::err(std::string(invalid_login)));
}

std::shared_ptr<const hostdb::database> auth_module::hosts() const {
  std::lock_guard guard(mutex_);
  return hosts_;
}

awaitable<void> auth_module::refresh() {
  hostdb::file_stamp now;
  try {
    now = hostdb::stamp(file_);
  } catch (const std::exception& e) {
    std::lock_guard guard(mutex_);
    broken_ = e.what();
    co_return;
  }
  {
    std::lock_guard guard(mutex_);
    if (now == loaded_) {
      broken_.clear();
      co_return;
    }
    if (refused_ && now == *refused_) co_return;
  }
  const std::filesystem::path file = file_;
  auto job = [this, file] {
    reload_outcome out = read_file(file);
    if (out.result) out.dummy = dummy_for(*out.result);
    return out;
  };
  reload_outcome outcome = co_await run_blocking(server_, std::move(job));
  if (!outcome.result) {
    // Fail closed: the file in place may have dropped a host or changed a
    // password, so the hosts loaded before are no longer trusted.
    std::lock_guard guard(mutex_);
    broken_ = outcome.error;
    co_return;
  }
  {
    std::lock_guard guard(mutex_);
    dummy_hash_ = std::move(outcome.dummy);
  }
  apply(std::move(*outcome.result), false);
}

void auth_module::reload() {
  reload_outcome outcome = read_file(file_);
  if (!outcome.result) {
    log_.error("reload: ", outcome.error, "; logins answer [SYS/TEMP] until it is fixed");
    std::lock_guard guard(mutex_);
    broken_ = outcome.error;
    return;
  }
  std::string dummy = dummy_for(*outcome.result);
  {
    std::lock_guard guard(mutex_);
    dummy_hash_ = std::move(dummy);
    if (outcome.result->stamp == loaded_) {
      broken_.clear();
      log_.info("reload: ", file_.string(), " unchanged, ", hosts_->size(), " host(s)");
      return;
    }
  }
  apply(std::move(*outcome.result), false);
}

void auth_module::apply(hostdb::load_result result, bool initial) {
  std::unique_lock guard(mutex_);
  if (!initial && result.stamp == loaded_) return;  // another PASS got here first
  for (std::size_t i = 0; i < result.problems.size() && i < problems_logged; ++i)
    log_.warning(hostdb::describe(file_, result.problems[i]));
  if (result.problems.size() > problems_logged)
    log_.warning(file_.string(), ": ", result.problems.size() - problems_logged, " more malformed lines");

  if (!result.problems.empty() && !initial) {
    refused_ = result.stamp;
    broken_.clear();  // readable: the hosts loaded before stay in force
    log_.error("not reloading ", file_.string(), ": it has ", result.problems.size(),
               " malformed line(s); keeping the ", hosts_ ? hosts_->size() : 0, " host(s) loaded before");
    return;
  }
  if (!result.stamp.exists)
    log_.warning(file_.string(), " does not exist: no host can log in until `sdps host add` creates it");
  else if (!result.problems.empty())
    log_.warning("loaded ", result.hosts.size(), " host(s) from ", file_.string(), ", skipping ",
                 result.problems.size(), " malformed line(s)");
  else
    log_.info("loaded ", result.hosts.size(), " host(s) from ", file_.string());
  auto fresh = std::make_shared<const hostdb::database>(std::move(result.hosts));
  const std::shared_ptr<const hostdb::database> replaced = std::exchange(hosts_, fresh);
  loaded_ = result.stamp;
  refused_.reset();
  broken_.clear();
  guard.unlock();
  // Outside the module's lock: PASSes go on meanwhile, and no stale entry
  // can let one in: an entry's digest covers the hash it was checked
  // against, and the dialup rule is applied from the new list anyway.
  if (replaced) forget_changed(*replaced, *fresh);
}

void auth_module::forget_changed(const hostdb::database& before, const hostdb::database& after) {
  if (!cache_->enabled()) return;
  // Both maps are sorted by name: one walk through both.
  const auto& old_hosts = before.hosts();
  const auto& new_hosts = after.hosts();
  auto o = old_hosts.begin();
  auto n = new_hosts.begin();
  std::size_t dropped = 0;
  while (o != old_hosts.end()) {
    if (n == new_hosts.end() || o->first < n->first) {  // removed
      cache_->forget(o->first);
      ++dropped;
      ++o;
    } else if (n->first < o->first) {  // added: nothing cached for it
      ++n;
    } else {
      if (!same_record(o->second, n->second)) {
        cache_->forget(o->first);
        ++dropped;
      }
      ++o;
      ++n;
    }
  }
  if (dropped > 0) log_.debug("auth cache: dropped the entries of ", dropped, " changed or removed host(s)");
}

}  // namespace sdps::auth
