#include "remote_spool.hpp"

#include <sodium.h>

#include <algorithm>
#include <cctype>

namespace sdps::remote {

namespace {

/// A message streamed from the back end as the core reads it.
class remote_body final : public body_source {
 public:
  remote_body(std::shared_ptr<backend_link> link, std::uint64_t id, std::optional<std::uint64_t> octets)
      : link_(std::move(link)), id_(id), octets_(octets) {}
  awaitable<std::size_t> read(std::span<char> buffer) override { co_return co_await link_->read_body(id_, buffer); }
  /// What the back end announced (before the first read only).
  std::optional<std::uint64_t> size() const override { return octets_; }

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

/// Connects and reads the greeting. Throws spool_error.
awaitable<status> greet(std::shared_ptr<backend_link> link) {
  co_await link->connect();
  co_return co_await link->read_status();
}

/// The login exchange, in one round trip after the greeting whatever the
/// maildrop's size (the greeting carries the back end's challenge):
///   connect                                  -> +OK NONCE PUNT ...
///   XAUTH FNONCE PROOF, USER, PASS, XLIST    -> +OK PROOF, +OK, +OK, listing
/// (A greeting without a challenge costs one more: XAUTH -> +OK NONCE PUNT.)
/// A coroutine that owns its arguments: the core may give up on the PASS
/// that started it and move on.
awaitable<login_outcome> log_in(std::shared_ptr<backend_link> link, std::shared_ptr<const backend_secret> secret,
                                std::string who, status greeting) {
  login_outcome out;
  const std::string& punt = link->options().punt;
  // No turn to take: nobody else holds this link until lock() stores it.
  if (!greeting.positive) throw link->failure("the back end refused the connection: " + printable(greeting.text));
  auto challenge = parse_challenge(greeting.text);
  if (!challenge) {
    std::vector<std::string> ask{"XAUTH"};
    co_await link->send(std::move(ask));
    const status offered = co_await link->read_status();
    if (!offered.positive) throw link->failure("XAUTH refused: " + printable(offered.text));
    challenge = parse_challenge(offered.text);
    if (!challenge)
      throw link->failure("not an sdps back end (XAUTH answered '" + printable(offered.text, 80) + "')");
  }
  if (challenge->punt != punt)
    throw link->failure("the back end serves punt '" + printable(challenge->punt, 40) + "', not '" + punt +
                        "': check this instance's 'backend:'");

  const std::string nonce = new_nonce();
  std::vector<std::string> login{"XAUTH " + nonce + " " + proof(*secret, role::frontend, challenge->nonce, nonce, punt),
                                 "USER " + who, "PASS", "XLIST"};
  co_await link->send(std::move(login));

  const status accepted = co_await link->read_status();
  if (!accepted.positive)
    throw link->failure("the back end refused this front end's proof (" + printable(accepted.text) +
                        "): both must read the same front-end secret");
  const std::string answer = accepted.text.substr(0, accepted.text.find(' '));
  if (!verify_proof(*secret, role::backend, challenge->nonce, nonce, punt, answer))
    throw link->failure("the back end's proof is wrong: it does not hold the front-end secret");

  const status user = co_await link->read_status();
  if (!user.positive) throw link->failure("USER refused: " + printable(user.text));
  const status pass = co_await link->read_status();
  if (!pass.positive) {
    out.status = pass_outcome(false, pass.text);
    out.detail = "PASS refused: " + printable(pass.text);
    link->end(true);
    co_return out;
  }
  const status listed = co_await link->read_status();
  if (!listed.positive) throw link->failure("XLIST refused: " + printable(listed.text));
  for (;;) {
    std::optional<std::string> line = co_await link->read_body_line();
    if (!line) break;
    auto entry = parse_listing(*line);
    if (!entry) throw link->failure("a malformed XLIST line: '" + printable(*line, 80) + "'");
    if (!out.listing.empty() && entry->number <= out.listing.back().number)
      throw link->failure("XLIST numbers out of order at '" + printable(*line, 80) + "'");
    out.listing.push_back(std::move(*entry));
  }
  out.status = lock_status::acquired;
  co_return out;
}

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
    : punt_(std::move(punt)), link_(std::move(link)), log_(log) {
  infos_.reserve(listing.size());
  numbers_.reserve(listing.size());
  for (auto& entry : listing) {
    infos_.push_back({std::move(entry.uidl), entry.size, entry.arrival, punt_});
    numbers_.push_back(entry.number);
  }
  retrieved_.assign(infos_.size(), false);
}

awaitable<status> remote_maildrop::ask(backend_link& link, std::string command) {
  std::vector<std::string> lines{command};
  co_await link.send(std::move(lines));
  status reply = co_await link.read_status();
  if (!reply.positive)
    throw spool_error("punt " + punt_ + ": the back end answered " + command + " with -ERR " + printable(reply.text));
  co_return reply;
}

awaitable<std::unique_ptr<body_source>> remote_maildrop::retrieve(std::size_t index,
                                                                  std::optional<std::uint64_t> body_lines) {
  const std::shared_ptr<backend_link> link = link_;
  const std::size_t number = numbers_.at(index);
  std::string command = body_lines ? message_command("TOP", number) + " " + std::to_string(*body_lines)
                                   : message_command("RETR", number);
  co_await link->acquire();
  backend_link::turn guard(*link);
  const status reply = co_await ask(*link, command);
  if (!body_lines) retrieved_[index] = true;
  const std::uint64_t id = link->begin_body();
  co_return std::make_unique<remote_body>(link, id,
                                          body_lines ? std::nullopt : announced_octets(reply.text));
}

awaitable<void> remote_maildrop::mark_read(std::size_t index) {
  if (retrieved_.at(index)) co_return;
  const std::shared_ptr<backend_link> link = link_;
  const std::string command = message_command("XREAD", numbers_.at(index));
  co_await link->acquire();
  backend_link::turn guard(*link);
  co_await ask(*link, command);
  retrieved_[index] = true;
}

awaitable<sdps::envelope> remote_maildrop::envelope(std::size_t index) {
  const std::shared_ptr<backend_link> link = link_;
  const std::string command = message_command("*ENV", numbers_.at(index));
  co_await link->acquire();
  backend_link::turn guard(*link);
  co_await ask(*link, command);
  std::vector<std::string> lines;
  for (;;) {
    std::optional<std::string> line = co_await link->read_body_line();
    if (!line) break;
    if (lines.size() < 8) lines.push_back(std::move(*line));
  }
  if (lines.size() < 4)
    throw spool_error("punt " + punt_ + ": the back end's *ENV reply has " + std::to_string(lines.size()) +
                      " lines, not 4");
  sdps::envelope out;
  const std::string& flag = lines[0];
  out.read = flag.size() >= 2 && std::toupper(static_cast<unsigned char>(flag[0])) == 'R' &&
             std::toupper(static_cast<unsigned char>(flag[1])) == 'D';
  out.note = lines[1];
  out.from = lines[2];
  out.to = lines[3];
  co_return out;
}

awaitable<removal_result> remote_maildrop::remove_deleted() {
  const std::shared_ptr<backend_link> link = link_;
  std::vector<std::string> lines;
  for (std::size_t i = 0; i < count(); ++i)
    if (deleted(i)) lines.push_back(message_command("DELE", numbers_[i]));
  const std::size_t marked = lines.size();
  if (marked == 0) co_return removal_result{};
  lines.emplace_back(update_command);
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
  link->end(false);
  // Only the counts are read: a reply without them (refused, malformed)
  // counts every deletion sent as not removed.
  const std::size_t sent = marked - refused;
  const std::optional<removal_result> counted = update.positive ? parse_update(update.text) : std::nullopt;
  const std::size_t failed = counted ? std::min(counted->failed, sent) : sent;
  if (failed > 0) log_.warning("punt ", punt_, ": the back end's UPDATE: ", printable(update.text));
  removal_result result;
  result.removed = sent - failed;
  result.failed = refused + failed;
  co_return result;
}

// -- remote_spool ---------------------------------------------------------------------

/// A connection being opened in the background: done when connected and
/// greeted (or failed). The waiter wakes on `wake` being cancelled.
struct remote_spool::pending_link {
  explicit pending_link(std::shared_ptr<backend_link> l) : link(std::move(l)), wake(link->get_executor()) {
    wake.expires_at(std::chrono::steady_clock::time_point::max());
  }
  std::shared_ptr<backend_link> link;
  asio::steady_timer wake;
  bool done = false;
  status greeting;
  std::exception_ptr error;
};

awaitable<void> remote_spool::open_ahead(std::shared_ptr<pending_link> pending) {
  try {
    pending->greeting = co_await greet(pending->link);
  } catch (...) {
    pending->error = std::current_exception();
  }
  pending->done = true;
  pending->wake.cancel();
}

void remote_spool::end_pending(pending_link& pending) {
  // Still connecting: nothing to say yet.
  if (pending.done && !pending.error)
    pending.link->end(true);
  else
    pending.link->close("not needed");
}

remote_spool::session_state::~session_state() {
  if (link) link->end(true);
  if (pending) end_pending(*pending);
}

void remote_spool::start(const registry& services) {
  std::vector<std::pair<std::string, remote_spool*>> found;
  for (auto& [name, sp] : services.named<sdps::spool>())
    if (auto* remote = dynamic_cast<remote_spool*>(sp)) found.emplace_back(name, remote);
  std::stable_sort(found.begin(), found.end(), [](const auto& a, const auto& b) {
    if (a.second->punt() != b.second->punt()) return a.second->punt() < b.second->punt();
    return a.first < b.first;
  });
  peers_.clear();
  for (auto& [name, remote] : found) peers_.push_back(remote);
}

void remote_spool::prepare(session& s) {
  auto& state = s.slot<session_state>(this);
  if (state.pending) end_pending(*state.pending);
  auto link = std::make_shared<backend_link>(s.get_executor(), options_, secret_, log_,
                                             "session " + std::to_string(s.id()) + ": punt " + options_.punt);
  state.pending = std::make_shared<pending_link>(std::move(link));
  asio::co_spawn(s.get_executor(), open_ahead(state.pending), asio::detached);
}

remote_spool::remote_spool(module_config& config) : log_(config.log()), metrics_(&config.server().metrics()) {
  settings& opts = config.options();
  if (sodium_init() < 0) throw config_error("module instance '" + config.instance() + "': libsodium failed to initialise");
  options_.punt = opts.string_or("punt", config.instance());
  if (options_.punt.empty() || options_.punt.find_first_of(" \t\r\n") != std::string::npos)
    opts.fail("punt", "the punt name must be one word");
  const std::string backend = opts.string("backend");
  const auto where = parse_address(backend);
  if (!where) opts.fail("backend", "'backend' must be HOST:PORT or [IPv6]:PORT, not '" + backend + "'");
  options_.backend = *where;
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
  secret_ = backend_secret::load(opts.path("secret"), opts.where("secret"), log_);
  config.provide<sdps::spool>(this);
  config.provide<sdps::maildrop_source>(this);
}

awaitable<lock_status> remote_spool::lock(session& s) {
  // Slots live until after the disconnect event, which never runs beside
  // this call: the reference stays good across the suspensions below.
  auto& state = s.slot<session_state>(this);
  if (state.link) state.link->end(true);
  state.link.reset();
  state.drop.reset();
  state.listing.clear();
  if (!s.login()) {
    log_.error("session ", s.id(), ": lock without a login");
    co_return lock_status::unavailable;
  }
  const std::string who = s.login()->display();
  const std::string tag = "session " + std::to_string(s.id()) + ": punt " + options_.punt;
  // A session that just ended through any front end releases its lock on
  // the back end when the back end has seen its connection close, which
  // may be a moment after its client was told +OK: [IN-USE] is retried
  // for in_use_wait before it is believed.
  const auto give_up = std::chrono::steady_clock::now() + in_use_wait_;
  std::chrono::milliseconds pause(10);
  // The first remote punt in locking order opens the others' connections
  // now, so that theirs are ready when the lock module gets to them.
  if (!peers_.empty() && peers_.front() == this)
    for (remote_spool* peer : peers_)
      if (peer != this) peer->prepare(s);
  std::shared_ptr<pending_link> ahead = std::move(state.pending);
  state.pending.reset();
  std::shared_ptr<backend_link> link;
  login_outcome outcome;
  for (;;) {
    try {
      status greeting;
      if (ahead) {
        link = ahead->link;
        while (!ahead->done) {
          boost::system::error_code ignored;
          co_await ahead->wake.async_wait(asio::redirect_error(asio::use_awaitable, ignored));
        }
        if (ahead->error) std::rethrow_exception(ahead->error);
        greeting = ahead->greeting;
        ahead.reset();
      } else {
        link = std::make_shared<backend_link>(s.get_executor(), options_, secret_, log_, tag);
        greeting = co_await greet(link);
      }
      const auto asked = std::chrono::steady_clock::now();
      outcome = co_await log_in(link, secret_, who, greeting);
      metrics_->observe("sdps_backend_request_seconds", {{"punt", options_.punt}},
                        std::chrono::duration<double>(std::chrono::steady_clock::now() - asked).count());
    } catch (const spool_error& e) {
      metrics_->add("sdps_backend_link_errors_total", {{"punt", options_.punt}});
      link->close(e.what());
      log_.warning("session ", s.id(), ": ", e.what());
      co_return lock_status::unavailable;
    }
    if (outcome.status != lock_status::in_use || std::chrono::steady_clock::now() + pause > give_up) break;
    asio::steady_timer wait(s.get_executor());
    wait.expires_after(pause);
    boost::system::error_code ignored;
    co_await wait.async_wait(asio::redirect_error(asio::use_awaitable, ignored));
    pause *= 2;
  }
  switch (outcome.status) {
    case lock_status::acquired:
      state.link = link;
      state.listing = std::move(outcome.listing);
      link->start_keepalive();
      s.log().debug("punt ", options_.punt, ": logged in as ", who, " on the back end, ", state.listing.size(),
                    " message(s)");
      break;
    case lock_status::in_use:
      s.log().info("punt ", options_.punt, ": ", who, " is locked on the back end: ", outcome.detail);
      break;
    case lock_status::unavailable:
      metrics_->add("sdps_backend_link_errors_total", {{"punt", options_.punt}});
      log_.warning("session ", s.id(), ": punt ", options_.punt, " (back end ", options_.display,
                   "): ", outcome.detail);
      break;
  }
  co_return outcome.status;
}

awaitable<verdict> remote_spool::on_event(session& s, event e) {
  // After the client's QUIT has been answered (UPDATE is done): end the
  // back ends' sessions now rather than at disconnect, so their locks go
  // as early as possible.
  if (e == event::quit) unlock(s);
  co_return verdict::next();
}

void remote_spool::unlock(session& s) {
  auto* state = s.find_slot<session_state>(this);
  if (!state) return;
  if (state->pending) end_pending(*state->pending);
  state->pending.reset();
  if (state->link) state->link->end(true);
  state->link.reset();
  state->listing.clear();
}

awaitable<std::shared_ptr<sdps::maildrop>> remote_spool::open(session& s) {
  auto& state = s.slot<session_state>(this);
  if (state.drop) co_return state.drop;
  if (!state.link || !state.link->usable())
    throw spool_error("punt " + options_.punt + ": not logged in on the back end " + options_.display +
                      " (it was unavailable at login)");
  state.drop = std::make_shared<remote_maildrop>(options_.punt, state.link, std::move(state.listing), log_);
  state.listing.clear();
  co_return state.drop;
}

std::shared_ptr<sdps::maildrop> remote_spool::current(session& s) {
  auto* state = s.find_slot<session_state>(this);
  return state ? state->drop : nullptr;
}

}  // namespace sdps::remote
