#include "link_pool.hpp"

#include <algorithm>

namespace sdps::remote {

namespace {

std::string duration_text(std::chrono::milliseconds d) {
  const auto ms = d.count();
  if (ms % 1000 == 0) return std::to_string(ms / 1000) + "s";
  return std::to_string(ms) + "ms";
}

}  // namespace

// -- pool_stats ---------------------------------------------------------------------

pool_stats::pool_stats(std::string punt, sdps::metrics& metrics) : punt_(std::move(punt)), metrics_(metrics) {
  const metric_labels labels{{"punt", punt_}};
  opened = metrics_.counter("sdps_backend_link_opens_total", labels);
  reused = metrics_.counter("sdps_backend_link_reuses_total", labels);
  replaced = metrics_.counter("sdps_backend_link_replaced_total", labels);
  exhausted = metrics_.counter("sdps_backend_link_exhausted_total", labels);
  metrics_.set("sdps_backend_links_open", labels, 0);
}

void pool_stats::declare(sdps::metrics& metrics) {
  metrics.declare("sdps_backend_links_open", "gauge",
                  "Links to a back end open now (lent to sessions, idle or being opened), every event loop, by punt.");
  metrics.declare("sdps_backend_link_opens_total", "counter", "Connections opened to a back end, by punt.");
  metrics.declare("sdps_backend_link_reuses_total", "counter",
                  "Logins on a link kept from an earlier session (no connection, no XAUTH), by punt.");
  metrics.declare("sdps_backend_link_replaced_total", "counter",
                  "Idle links found closed by the back end at a login and replaced by a new one, by punt.");
  metrics.declare("sdps_backend_link_exhausted_total", "counter",
                  "Logins that found every link of their event loop in use for link_wait, by punt.");
}

void pool_stats::change(int delta) {
  // Under the lock, so that the gauge ends where the count does whatever
  // order the event loops change it in. (Links open and close far less
  // often than sessions borrow them.)
  std::lock_guard guard(mutex_);
  open_ += delta;
  metrics_.set("sdps_backend_links_open", {{"punt", punt_}}, static_cast<double>(open_));
}

// -- link_pool ----------------------------------------------------------------------

link_pool::link_pool(executor ex, link_options options, std::shared_ptr<const backend_secret> secret, logger& log,
                     pool_settings settings, std::shared_ptr<pool_stats> stats)
    : executor_(ex),
      options_(std::move(options)),
      secret_(std::move(secret)),
      log_(log),
      settings_(settings),
      stats_(std::move(stats)),
      expiry_(ex) {}

link_pool::~link_pool() { close_all(); }

std::shared_ptr<backend_link> link_pool::make_link() {
  ++open_;
  stats_->change(+1);
  stats_->opened.add();
  return std::make_shared<backend_link>(executor_, options_, secret_, log_,
                                        "punt " + options_.punt + " link " + std::to_string(++next_link_));
}

awaitable<std::shared_ptr<backend_link>> link_pool::take(bool fresh) {
  auto self = shared_from_this();
  const auto deadline = std::chrono::steady_clock::now() + settings_.wait;
  for (;;) {
    if (closed_) throw spool_error("punt " + options_.punt + ": the front end is stopping");
    const auto now = std::chrono::steady_clock::now();
    expire(now);
    while (!fresh && !idle_.empty()) {
      std::shared_ptr<backend_link> link = std::move(idle_.back().link);
      idle_.pop_back();
      if (link->idle_check()) {
        stats_->reused.add();
        co_return lend(std::move(link));
      }
      // Closed by the back end while it waited (a restart, its idle
      // timer): no login was tried on it, so nobody notices.
      log_.debug(link->tag(), ": closed by the back end while idle; not used");
      stats_->replaced.add();
      drop(link, false);
    }
    if (open_ < settings_.max_links) {
      std::shared_ptr<backend_link> link = make_link();
      try {
        co_await link->open();
      } catch (const spool_error&) {
        drop(link, false);
        wake_one();
        throw;
      }
      co_return lend(std::move(link));
    }
    if (now >= deadline) {
      stats_->exhausted.add();
      throw spool_error("punt " + options_.punt + " (back end " + options_.display + "): no link free within " +
                        duration_text(settings_.wait) + " (max_links " + std::to_string(settings_.max_links) +
                        " in use on this event loop)");
    }
    // Every link is lent: wait for one to come back or close.
    auto waiter = std::make_shared<asio::steady_timer>(executor_, deadline);
    waiters_.push_back(waiter);
    boost::system::error_code ignored;
    co_await waiter->async_wait(asio::redirect_error(asio::use_awaitable, ignored));
    waiters_.erase(std::remove(waiters_.begin(), waiters_.end(), waiter), waiters_.end());
  }
}

std::shared_ptr<backend_link> link_pool::lend(std::shared_ptr<backend_link> link) {
  link->new_lease();
  schedule_expiry();
  return link;
}

std::shared_ptr<link_pool::returning> link_pool::give_back(std::shared_ptr<backend_link> link) {
  if (!link) return nullptr;
  link->new_lease();  // whatever the session handed out no longer reaches it
  const bool keep = !closed_ && link->usable() && link->trusted() && link->resettable() && !link->body_pending() &&
                    settings_.idle.count() > 0;
  if (!keep) {
    // A body half read is not worth reading to its end: closed. The rest
    // are ended politely (QUIT removes nothing: the front end sends DELE
    // only with XUPDATE).
    drop(link, !link->body_pending());
    wake_one();
    return nullptr;
  }
  if (!link->logged_in()) {
    put_idle(std::move(link));
    return nullptr;
  }
  auto done = std::make_shared<returning>(executor_);
  asio::co_spawn(executor_, reset(shared_from_this(), std::move(link), done), asio::detached);
  return done;
}

awaitable<void> link_pool::reset(std::shared_ptr<link_pool> self, std::shared_ptr<backend_link> link,
                                 std::shared_ptr<returning> done) {
  bool clean = false;
  try {
    co_await link->acquire();
    backend_link::turn guard(*link);
    std::vector<std::string> lines{std::string(reset_command)};
    co_await link->send(std::move(lines));
    const status reply = co_await link->read_status();
    if (reply.positive) {
      link->set_logged_in(false);
      clean = true;
    } else {
      self->log_.warning(link->tag(), ": the back end answered XRESET with -ERR ", printable(reply.text),
                         "; the link is closed");
    }
  } catch (const spool_error& e) {
    self->log_.warning(link->tag(), ": resetting the link: ", e.what());
  }
  done->done = true;
  done->wake.cancel();
  if (clean) {
    self->put_idle(std::move(link));
  } else {
    // Closed without a word: whatever the login held, the back end lets go
    // of it when the connection ends (and removes nothing).
    link->close("not reset");
    self->drop(link, false);
    self->wake_one();
  }
}

void link_pool::put_idle(std::shared_ptr<backend_link> link) {
  if (closed_ || !link->usable()) {
    drop(link, false);
    wake_one();
    return;
  }
  link->park();
  idle_.push_back({std::move(link), std::chrono::steady_clock::now()});
  wake_one();
  schedule_expiry();
}

void link_pool::drop(const std::shared_ptr<backend_link>& link, bool quit) {
  if (link->usable()) {
    if (quit)
      link->end(true);
    else
      link->close("no longer needed");
  }
  if (open_ > 0) {
    --open_;
    stats_->change(-1);
  }
  schedule_expiry();
}

void link_pool::expire(std::chrono::steady_clock::time_point now) {
  while (!idle_.empty() && now - idle_.front().since >= settings_.idle) {
    std::shared_ptr<backend_link> link = std::move(idle_.front().link);
    idle_.pop_front();
    log_.debug(link->tag(), ": idle for ", duration_text(settings_.idle), "; closed");
    drop(link, true);
  }
}

void link_pool::schedule_expiry() {
  const bool busy = open_ > idle_.size();
  if (closed_ || idle_.empty() || !busy) {
    // Nothing to expire, or nothing else going on in this pool: no timer
    // (idle links are looked at when the next login comes; at the loop's
    // end they are closed with it).
    if (expiry_armed_) {
      expiry_armed_ = false;
      expiry_.cancel();
    }
    return;
  }
  if (expiry_armed_) return;
  expiry_armed_ = true;
  expiry_.expires_at(idle_.front().since + settings_.idle);
  std::weak_ptr<link_pool> weak = weak_from_this();
  expiry_.async_wait([weak](const boost::system::error_code& ec) {
    if (ec) return;  // cancelled: whoever cancelled it decided what comes next
    const auto self = weak.lock();
    if (!self) return;
    self->expiry_armed_ = false;
    self->expire(std::chrono::steady_clock::now());
    self->schedule_expiry();
  });
}

void link_pool::wake_one() {
  if (waiters_.empty()) return;
  std::shared_ptr<asio::steady_timer> first = std::move(waiters_.front());
  waiters_.pop_front();
  first->cancel();
}

void link_pool::close_all() {
  if (closed_) return;
  closed_ = true;
  for (auto& entry : idle_) entry.link->close("the front end is stopping");
  idle_.clear();
  boost::system::error_code ignored;
  expiry_.cancel(ignored);
  for (auto& waiter : waiters_) waiter->cancel(ignored);
}

// -- link_pools ----------------------------------------------------------------------

asio::execution_context::id link_pools::id;

void link_pools::shutdown() {
  for (auto& entry : pools_) entry.second->close_all();
  pools_.clear();
}

}  // namespace sdps::remote
