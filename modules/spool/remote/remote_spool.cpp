#include "remote_spool.hpp"

#include "base/account.hpp"
#include "backend_probe.hpp"
#include "front_auth.hpp"

#include <sodium.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <utility>

namespace sdps::remote {

namespace {

/// A message streamed from the back end as the core reads it, in the form
/// the back end sent it: dot-stuffed, without its terminating line, which
/// the core adds (stuffed()). No octet is looked at but where lines start.
class remote_body final : public body_source {
 public:
  remote_body(std::shared_ptr<backend_link> link, std::uint64_t id, std::optional<std::uint64_t> octets)
      : link_(std::move(link)), id_(id), octets_(octets) {}
  awaitable<std::size_t> read(std::span<char> buffer) override { co_return co_await link_->read_body(id_, buffer); }
  /// What the back end announced: the octets before stuffing (RETR's
  /// "+OK N octets" passes it on; the stuffed body may be a little longer).
  std::optional<std::uint64_t> size() const override { return octets_; }
  bool stuffed() const override { return true; }

 private:
  std::shared_ptr<backend_link> link_;
  std::uint64_t id_;
  std::optional<std::uint64_t> octets_;
};

/// What logging in on a back end came to.
struct login_outcome {
  lock_status status = lock_status::unavailable;
  std::string detail;  // why, when not acquired
  std::vector<listing_entry> listing;
};

/// The most a listing may hold (some 3 million messages).
constexpr std::size_t listing_limit = 256 * 1024 * 1024;

/// The login exchange, in one round trip whatever the maildrop's size:
///   USER, PASS, XLIST                         -> +OK, +OK, listing
/// and on a new link, in the same write, first
///   XAUTH FNONCE PROOF, CAPA                  -> +OK PROOF, capabilities
/// answering the challenge in the back end's greeting (a greeting without
/// one costs one round trip more: XAUTH -> +OK NONCE PUNT); front_auth.*
/// does that part, as for the probe's link. CAPA says whether the back
/// end can reset the link after the login (XRESET).
/// A coroutine that owns its arguments: the core may give up on the PASS
/// that started it and move on.
awaitable<login_outcome> log_in(std::shared_ptr<backend_link> link, std::shared_ptr<const backend_secret> secret,
                                std::string who) {
  login_outcome out;
  // No turn to take: the link is this login's alone until lock() stores it.
  std::vector<std::string> login{"USER " + who, "PASS", "XLIST"};
  if (link->trusted()) {
    co_await link->send(std::move(login));
  } else {
    login.insert(login.begin(), "CAPA");
    status greeting = link->greeting();
    co_await authenticate(link, secret, std::move(greeting), std::move(login));
    const capabilities capa = co_await read_capabilities(link);
    link->set_trusted(capa.resettable);
  }

  const status user = co_await link->read_status();
  if (!user.positive) throw link->failure("USER refused: " + printable(user.text));
  const status pass = co_await link->read_status();
  if (!pass.positive) {
    out.status = pass_outcome(false, pass.text);
    out.detail = "PASS refused: " + printable(pass.text);
    if (link->resettable()) {
      // XLIST's -ERR (no login): the link is as it was, fit for a retry
      // or the next session.
      const status unlisted = co_await link->read_status();
      if (unlisted.positive) throw link->failure("XLIST answered +OK without a login");
    } else {
      link->end(true);
    }
    co_return out;
  }
  link->set_logged_in(true);
  const status listed = co_await link->read_status();
  if (!listed.positive) throw link->failure("XLIST refused: " + printable(listed.text));
  const std::string_view listing = co_await link->read_block(listing_limit);
  std::string malformed;
  const auto take = [&out, &malformed](std::string_view line) {
    if (!malformed.empty()) return;
    auto entry = parse_listing(line);
    if (!entry) {
      malformed = "a malformed XLIST line: '" + printable(line, 80) + "'";
    } else if (!out.listing.empty() && entry->number <= out.listing.back().number) {
      malformed = "XLIST numbers out of order at '" + printable(line, 80) + "'";
    } else {
      out.listing.push_back(std::move(*entry));
    }
  };
  for_each_line(listing, take);
  if (!malformed.empty()) throw link->failure(malformed);
  out.status = lock_status::acquired;
  co_return out;
}

/// *ENV asked of the back end in one write: the one a client asks for and
/// the next ones of the punt not asked yet.
constexpr std::size_t envelope_window = 8;

std::string message_command(const char* verb, std::size_t number) { return std::string(verb) + " " + std::to_string(number); }

/// A back end's RETR status, "N octets" (docs/backend-protocol.md) -> N:
/// what the body holds, the dummy notice's length when SMTP took the
/// message. Nullopt if the text does not start so.
std::optional<std::uint64_t> announced_octets(std::string_view text) {
  std::uint64_t n = 0;
  std::size_t digits = 0;
  while (digits < text.size() && digits < 18 && std::isdigit(static_cast<unsigned char>(text[digits]))) {
    n = n * 10 + static_cast<std::uint64_t>(text[digits] - '0');
    ++digits;
  }
  if (digits == 0 || !(text.substr(digits) == " octets" || text.substr(digits).starts_with(" octets ")))
    return std::nullopt;
  return n;
}

}  // namespace

// -- remote_maildrop ---------------------------------------------------------------

remote_maildrop::remote_maildrop(std::string punt, std::shared_ptr<backend_link> link,
                                 std::vector<listing_entry> listing, logger& log)
    : punt_(std::move(punt)), link_(std::move(link)), lease_(link_->lease()), log_(log) {
  infos_.reserve(listing.size());
  numbers_.reserve(listing.size());
  for (auto& entry : listing) {
    infos_.push_back({std::move(entry.uidl), entry.size, entry.arrival, punt_});
    numbers_.push_back(entry.number);
  }
  envelopes_.resize(infos_.size());
  marked_read_.resize(infos_.size());
}

void remote_maildrop::check_lease() const {
  if (link_->lease() != lease_)
    throw spool_error("punt " + punt_ + ": this session's link to the back end was given back to its pool");
}

awaitable<std::unique_ptr<body_source>> remote_maildrop::retrieve(std::size_t index, retrieval how) {
  check_lease();
  const std::shared_ptr<backend_link> link = link_;
  const std::size_t number = numbers_.at(index);
  const std::optional<std::uint64_t> body_lines = how.body_lines;
  // RETR marks the message read on the back end; a TOP that must mark it
  // goes with an XREAD in the same write.
  std::vector<std::string> lines;
  if (body_lines && how.mark_read) lines.push_back(message_command("XREAD", number));
  lines.push_back(body_lines ? message_command("TOP", number) + " " + std::to_string(*body_lines)
                             : message_command(how.mark_read ? "RETR" : "TOP", number) +
                                   (how.mark_read ? std::string() : " 999999999"));
  const std::string sent = lines.back();
  const bool marked_first = lines.size() == 2;
  co_await link->acquire();
  backend_link::turn guard(*link);
  co_await link->send(std::move(lines));
  if (marked_first) {
    const status marked = co_await link->read_status();
    if (!marked.positive)
      throw spool_error("punt " + punt_ + ": the back end answered XREAD with -ERR " + printable(marked.text));
  }
  const status reply = co_await link->read_status();
  if (!reply.positive)
    throw spool_error("punt " + punt_ + ": the back end answered " + sent + " with -ERR " + printable(reply.text));
  if (how.mark_read) marked_read_.at(index) = true;
  const std::uint64_t id = link->begin_body();
  co_return std::make_unique<remote_body>(link, id,
                                          body_lines || !how.mark_read ? std::nullopt : announced_octets(reply.text));
}

awaitable<sdps::envelope> remote_maildrop::envelope(std::size_t index) {
  check_lease();
  if (!envelopes_.at(index)) {
    const std::shared_ptr<backend_link> link = link_;
    std::vector<std::size_t> asked{index};
    for (std::size_t next = index + 1; next < envelopes_.size() && asked.size() < envelope_window; ++next)
      if (!envelopes_[next]) asked.push_back(next);
    std::vector<std::string> commands;
    for (const std::size_t i : asked) commands.push_back(message_command("*ENV", numbers_[i]));
    co_await link->acquire();
    backend_link::turn guard(*link);
    co_await link->send(std::move(commands));
    // Every reply is read, whatever one of them says: the next command's
    // must not be taken for one of these.
    std::string refused;
    for (const std::size_t i : asked) {
      const status reply = co_await link->read_status();
      if (!reply.positive) {
        if (i == index) refused = "-ERR " + printable(reply.text);
        continue;
      }
      const std::string_view body = co_await link->read_block(short_reply_limit);
      std::vector<std::string_view> lines;
      const auto keep = [&lines](std::string_view line) {
        if (lines.size() < 4) lines.push_back(line);
      };
      for_each_line(body, keep);
      if (lines.size() < 4) {
        if (i == index) refused = "a reply of " + std::to_string(lines.size()) + " lines, not 4";
        continue;
      }
      sdps::envelope out;
      const std::string_view flag = lines[0];
      out.read = flag.size() >= 2 && std::toupper(static_cast<unsigned char>(flag[0])) == 'R' &&
                 std::toupper(static_cast<unsigned char>(flag[1])) == 'D';
      out.note = lines[1];
      out.from = lines[2];
      out.to = lines[3];
      envelopes_[i] = std::move(out);
    }
    if (!refused.empty())
      throw spool_error("punt " + punt_ + ": the back end answered *ENV " + std::to_string(numbers_[index]) +
                        " with " + refused);
  }
  sdps::envelope out = *envelopes_[index];
  if (marked_read_[index]) out.read = true;
  co_return out;
}

awaitable<removal_result> remote_maildrop::remove(std::vector<std::size_t> indexes) {
  check_lease();
  const std::shared_ptr<backend_link> link = link_;
  std::vector<std::string> lines;
  lines.reserve(indexes.size() + 1);
  for (const std::size_t i : indexes) lines.push_back(message_command("DELE", numbers_.at(i)));
  const std::size_t marked = lines.size();
  if (marked == 0) co_return removal_result{};
  // A back end that resets links keeps this one: UPDATE, then the login
  // ends (its locks released) and the link goes back to the pool.
  const bool keep = link->resettable();
  lines.push_back(keep ? std::string(update_command) + " " + std::string(keep_argument) : std::string(update_command));
  co_await link->acquire();
  backend_link::turn guard(*link);
  co_await link->send(std::move(lines));
  std::size_t refused = 0;
  for (std::size_t i = 0; i < marked; ++i) {
    const status reply = co_await link->read_status();
    if (!reply.positive) {
      ++refused;
      log_.warning("punt ", punt_, ": the back end refused a DELE: ", printable(reply.text));
    }
  }
  const status update = co_await link->read_status();
  // Only the counts are read: a reply without them (refused, malformed)
  // counts every deletion sent as not removed.
  const std::size_t sent = marked - refused;
  const std::optional<removal_result> counted = update.positive ? parse_update(update.text) : std::nullopt;
  if (!keep)
    link->end(false);  // XUPDATE ends the back end's session: it closes first
  else if (counted)
    link->set_logged_in(false);
  else
    link->close("XUPDATE KEEP was not answered with counts");  // nothing more is removed
  const std::size_t failed = counted ? std::min(counted->failed, sent) : sent;
  if (failed > 0) log_.warning("punt ", punt_, ": the back end's UPDATE: ", printable(update.text));
  removal_result result;
  result.removed = sent - failed;
  result.failed = refused + failed;
  co_return result;
}

// -- remote_spool ---------------------------------------------------------------------

namespace {
/// Tells the instances' pools apart in each loop's link_pools.
std::atomic<std::uint64_t> next_instance{1};
}  // namespace

link_pool& remote_spool::pool(session& s, session_state& state) {
  if (!state.pool) {
    const executor ex = s.get_executor();
    state.pool = link_pools::of(ex, instance_id_, [&] {
      return std::make_shared<link_pool>(ex, options_, secret_, log_, pool_settings_, stats_);
    });
  }
  return *state.pool;
}

remote_spool::remote_spool(module_config& config)
    : log_(config.log()), metrics_(&config.server().metrics()), instance_id_(next_instance++) {
  settings& opts = config.options();
  if (sodium_init() < 0) throw config_error("module instance '" + config.instance() + "': libsodium failed to initialise");
  options_.punt = opts.string_or("punt", config.instance());
  if (options_.punt.empty() || options_.punt.find_first_of(" \t\r\n") != std::string::npos)
    opts.fail("punt", "the punt name must be one word");
  const std::string backend = opts.string("backend");
  try {
    options_.backend = base::parse_endpoint(backend, {base::endpoint_host::name, false, false, 0});
  } catch (const std::invalid_argument& e) {
    opts.fail("backend", std::string("'backend': ").append(e.what()));
  }
  options_.display = backend;
  options_.connect_timeout = opts.duration_or("connect_timeout", options_.connect_timeout);
  options_.read_timeout = opts.duration_or("read_timeout", options_.read_timeout);
  options_.keepalive = opts.duration_or("keepalive", options_.keepalive);
  in_use_wait_ = opts.duration_or("in_use_wait", in_use_wait_);
  if (in_use_wait_.count() < 0 || in_use_wait_ > std::chrono::seconds(10))
    opts.fail("in_use_wait", "'in_use_wait' must be between 0 and 10s");
  if (options_.connect_timeout.count() <= 0) opts.fail("connect_timeout", "'connect_timeout' must be positive");
  if (options_.read_timeout.count() <= 0) opts.fail("read_timeout", "'read_timeout' must be positive");
  if (options_.keepalive.count() < 0) opts.fail("keepalive", "'keepalive' must be 0 (off) or positive");
  const std::int64_t max_links = opts.integer_or("max_links", static_cast<std::int64_t>(pool_settings_.max_links));
  if (max_links < 1 || max_links > 1000000) opts.fail("max_links", "'max_links' must be between 1 and 1000000");
  pool_settings_.max_links = static_cast<std::size_t>(max_links);
  pool_settings_.idle = opts.duration_or("link_idle", pool_settings_.idle);
  if (pool_settings_.idle.count() < 0) opts.fail("link_idle", "'link_idle' must be 0 (links not kept) or positive");
  pool_settings_.wait = opts.duration_or("link_wait", pool_settings_.wait);
  if (pool_settings_.wait.count() < 0 || pool_settings_.wait > std::chrono::seconds(60))
    opts.fail("link_wait", "'link_wait' must be between 0 and 60s");
  if (opts.boolean_or("tls", false)) {
    if (!opts.has("ca"))
      opts.fail("tls", "'tls: true' needs 'ca:', the CA certificate(s) that signed the back end's certificate");
    try {
      options_.tls = make_client_context(opts.path("ca").string());
    } catch (const config_error& e) {
      opts.fail("ca", e.what());
    }
    options_.server_name = opts.string_or("server_name", options_.backend.host);
    if (options_.server_name.empty()) opts.fail("server_name", "'server_name' must not be empty");
  } else {
    for (const char* key : {"ca", "server_name"})
      if (opts.has(key)) opts.fail(key, std::string("'") + key + "' is for TLS to the back end: set 'tls: true' too");
  }
  secret_file_ = opts.path("secret");
  secret_ = backend_secret::load(secret_file_, opts.where("secret"), log_);
  config.provide<sdps::spool>(this);
  config.provide<sdps::maildrop_source>(this);
  config.declare_role("frontend");
  metrics_->declare("sdps_backend_link_errors_total", "counter",
                    "Failed requests and connections to a back end, by punt.");
  metrics_->declare("sdps_backend_request_seconds", "histogram", "Round-trip time of requests to a back end, by punt.",
                    {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10});
  pool_stats::declare(*metrics_);
  stats_ = std::make_shared<pool_stats>(options_.punt, *metrics_);
}

awaitable<remote_spool::attempt_result> remote_spool::attempt(std::shared_ptr<link_pool> links, std::string who,
                                                               std::uint64_t session,
                                                               std::shared_ptr<login_ahead> ahead) {
  const auto abandoned = [&ahead] { return ahead && ahead->abandoned; };
  // A session that just ended through another front end may release its
  // lock on the back end a moment after its client was told +OK: [IN-USE]
  // is retried for in_use_wait before it is believed.
  const auto give_up = std::chrono::steady_clock::now() + in_use_wait_;
  std::chrono::milliseconds pause(10);
  std::shared_ptr<backend_link> link;
  login_outcome outcome;
  bool replaced = false;  // an idle link found dead was replaced (once)
  for (;;) {
    std::uint64_t replies = 0;
    bool reused = false;
    try {
      if (!link) link = co_await links->take(replaced);
      if (abandoned()) {
        links->give_back(std::move(link));
        co_return attempt_result{};
      }
      replies = link->replies();
      reused = link->trusted();
      const auto asked = std::chrono::steady_clock::now();
      outcome = co_await log_in(link, secret_, who);
      metrics_->observe("sdps_backend_request_seconds", {{"punt", options_.punt}},
                        std::chrono::duration<double>(std::chrono::steady_clock::now() - asked).count());
    } catch (const spool_error& e) {
      // A link kept from an earlier session that the back end closed
      // meanwhile (a restart) fails at once, before any answer: the login
      // is tried once more on a new link, and the client never knows.
      const bool dead_idle_link = link && reused && !replaced && link->replies() == replies && !link->timed_out();
      if (link) links->give_back(std::move(link));
      link.reset();
      if (dead_idle_link) {
        log_.info("session ", session, ": punt ", options_.punt, ": a kept link failed at once (", e.what(),
                  "); logging in on a new one");
        stats_->replaced.add();
        replaced = true;
        continue;
      }
      metrics_->add("sdps_backend_link_errors_total", {{"punt", options_.punt}});
      log_.warning("session ", session, ": ", e.what());
      co_return attempt_result{};
    } catch (...) {
      if (link) links->give_back(std::move(link));
      throw;
    }
    if (outcome.status != lock_status::in_use || abandoned() ||
        std::chrono::steady_clock::now() + pause > give_up)
      break;
    // A link that can be reset is as it was before PASS: the retry goes on
    // it. Any other was ended by the refusal.
    if (!link->resettable()) {
      links->give_back(std::move(link));
      link.reset();
    }
    asio::steady_timer wait(co_await asio::this_coro::executor);
    wait.expires_after(pause);
    boost::system::error_code ignored;
    co_await wait.async_wait(asio::redirect_error(asio::use_awaitable, ignored));
    pause *= 2;
  }
  attempt_result result;
  result.status = outcome.status;
  switch (outcome.status) {
    case lock_status::acquired:
      result.link = std::move(link);
      result.listing = std::move(outcome.listing);
      break;
    case lock_status::in_use:
      log_.info("session ", session, ": punt ", options_.punt, ": ", who,
                " is locked on the back end: ", outcome.detail);
      links->give_back(std::move(link));
      break;
    case lock_status::unavailable:
      metrics_->add("sdps_backend_link_errors_total", {{"punt", options_.punt}});
      log_.warning("session ", session, ": punt ", options_.punt, " (back end ", options_.display,
                   "): ", outcome.detail);
      links->give_back(std::move(link));
      break;
  }
  co_return result;
}

namespace {

/// Waits until `job` is done: a link's reset (link_pool::returning) or a
/// login started ahead, each with a timer cancelled when done. Null: at once.
template <typename Job>
awaitable<void> until_done(const std::shared_ptr<Job>& job) {
  while (job && !job->done) {
    boost::system::error_code ignored;
    co_await job->wake.async_wait(asio::redirect_error(asio::use_awaitable, ignored));
  }
}

/// Done on the back end: nothing left to wait for.
bool ended(const std::shared_ptr<link_pool::returning>& r) { return !r || r->done; }

}  // namespace

void remote_spool::release(session_state& state) {
  std::erase_if(state.returning, ended);
  std::erase_if(state.abandoned, [](const std::shared_ptr<login_ahead>& a) { return a->done && ended(a->returning); });
  if (const std::shared_ptr<login_ahead> ahead = std::exchange(state.ahead, nullptr)) {
    ahead->abandoned = true;
    // Not done yet: the login stops at its next step, or gives its link
    // back when it completes.
    if (ahead->done && ahead->result.link && state.pool)
      ahead->returning = state.pool->give_back(std::move(ahead->result.link));
    state.abandoned.push_back(ahead);
  }
  state.held.reset();
  state.listing.clear();
  if (state.link && state.pool)
    if (auto reset = state.pool->give_back(std::move(state.link))) state.returning.push_back(std::move(reset));
  state.link.reset();
}

awaitable<void> remote_spool::settle(session_state& state) {
  // Taken out first: the state may change while this waits.
  const auto returning = std::exchange(state.returning, {});
  const auto abandoned = std::exchange(state.abandoned, {});
  for (const auto& reset : returning) co_await until_done(reset);
  for (const auto& ahead : abandoned) {
    co_await until_done(ahead);
    co_await until_done(ahead->returning);
  }
}

void remote_spool::prepare(session& s, const identity& who) {
  auto& state = s.slot(state_);
  release(state);
  pool(s, state);
  const std::shared_ptr<link_pool> links = state.pool;
  auto ahead = std::make_shared<login_ahead>(s.get_executor());
  state.ahead = ahead;
  // The coroutine owns what it uses but the module, which outlives every
  // event loop: it may complete after the session has gone.
  asio::co_spawn(
      s.get_executor(),
      [](remote_spool* self, std::shared_ptr<link_pool> links, std::shared_ptr<login_ahead> ahead, std::string who,
         std::uint64_t session) -> awaitable<void> {
        attempt_result result;
        try {
          result = co_await self->attempt(links, std::move(who), session, ahead);
        } catch (const std::exception& e) {
          self->log_.error("session ", session, ": punt ", self->options_.punt, ": logging in: ", e.what());
        }
        ahead->done = true;
        if (ahead->abandoned) {
          if (result.link) ahead->returning = links->give_back(std::move(result.link));
        } else {
          ahead->result = std::move(result);
        }
        ahead->wake.cancel();
      }(this, links, ahead, who.display(), s.id()),
      asio::detached);
}

awaitable<lock_status> remote_spool::lock(session& s, const identity& login) {
  // Slots live until after the disconnect event, which never runs beside
  // this call: the reference stays good across the suspensions below.
  auto& state = s.slot(state_);
  attempt_result result;
  if (const std::shared_ptr<login_ahead> ahead = state.ahead) {
    // prepare() started this login: wait for what it came to.
    co_await until_done(ahead);
    if (state.ahead != ahead) co_return lock_status::unavailable;  // abandoned meanwhile (a new login)
    state.ahead.reset();
    result = std::move(ahead->result);
  } else {
    pool(s, state);
    release(state);
    // The lock module locks again in order after releasing everything:
    // this session's own logins on the back end (reset, or abandoned
    // while under way) must have ended, or PASS would find its own lock.
    co_await settle(state);
    result = co_await attempt(state.pool, login.display(), s.id(), nullptr);
  }
  if (result.status == lock_status::acquired) {
    state.link = std::move(result.link);
    state.held = session_count::hold(holders_);
    state.listing = std::move(result.listing);
    state.link->start_keepalive();
    s.log().debug("punt ", options_.punt, ": logged in as ", login.display(), " on the back end (",
                  state.link->tag(), "), ", state.listing.size(), " message(s)");
  }
  co_return result.status;
}

awaitable<verdict> remote_spool::on_event(session& s, event e) {
  // After UPDATE, before the client hears QUIT's reply: the back ends end
  // their logins now (lock's unlock() has started that, for every punt at
  // once), and the client is answered once its locks are free.
  if (e != event::quit) co_return verdict::next();
  unlock(s);
  // Slots live until after the disconnect event, which never runs beside
  // this call.
  if (auto* state = s.find_slot(state_)) co_await settle(*state);
  co_return verdict::next();
}

void remote_spool::unlock(session& s) {
  if (auto* state = s.find_slot(state_)) release(*state);
}

std::unique_ptr<punt_probe> remote_spool::make_probe(executor ex) {
  return std::make_unique<backend_probe>(std::move(ex), options_, secret_, log_);
}

awaitable<std::shared_ptr<sdps::maildrop>> remote_spool::open(session& s, const identity&) {
  auto& state = s.slot(state_);
  if (!state.link || !state.link->usable())
    throw spool_error("punt " + options_.punt + ": not logged in on the back end " + options_.display +
                      " (it was unavailable at login)");
  auto drop = std::make_shared<remote_maildrop>(options_.punt, state.link, std::move(state.listing), log_);
  state.listing.clear();
  co_return drop;
}

std::vector<std::string> remote_spool::check() const {
  return base::check_readable(secret_file_, "the front-end secret");
}

}  // namespace sdps::remote
