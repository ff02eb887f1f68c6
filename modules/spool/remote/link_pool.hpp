#pragma once
/// @file
/// A front end's links to one back end, kept between sessions: one pool
/// per event loop and remote_spool instance, so a link never leaves the
/// thread that opened it. A session borrows a link at login (spool::lock)
/// and gives it back at its end; the back end resets the link to what it
/// was before the login (XRESET, or XUPDATE KEEP at QUIT), so the next
/// session finds it authenticated (XAUTH once per link) and holding no
/// lock. docs/backend-protocol.md, "A link's life", tells the whole story;
/// the settings are in README.md beside this file.

#include "remote_link.hpp"

#include <sdps/metrics.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>

namespace sdps::remote {

/// The pool's settings (a remote_spool instance's).
struct pool_settings {
  /// Links per event loop, lent, idle or being opened. A session keeps its
  /// link for its whole life, so this also bounds the sessions of one loop
  /// that can reach this back end at once.
  std::size_t max_links = 1000;
  /// An idle link is closed after this long. 0: links are not kept (one
  /// connection per session, as with a back end that cannot reset them).
  std::chrono::milliseconds idle{std::chrono::seconds(60)};
  /// How long a login waits for a link when max_links are in use; then
  /// the punt is unavailable for that login.
  std::chrono::milliseconds wait{std::chrono::seconds(2)};
};

/// What the pools of one remote_spool instance (one per event loop) count
/// together, for the metrics. Thread-safe.
class pool_stats {
 public:
  pool_stats(std::string punt, sdps::metrics& metrics);
  /// Declares the families (remote_spool's create()).
  static void declare(sdps::metrics& metrics);
  /// A link opened (+1) or closed (-1).
  void change(int delta);

  counter_handle opened;     ///< connections opened
  counter_handle reused;     ///< logins on a link kept from an earlier one
  counter_handle replaced;   ///< idle links found dead at a login and replaced
  counter_handle exhausted;  ///< logins that found no free link in time

 private:
  std::string punt_;
  sdps::metrics& metrics_;
  std::mutex mutex_;
  long open_ = 0;
};

/// One event loop's links to one back end. Every call on that loop.
class link_pool : public std::enable_shared_from_this<link_pool> {
 public:
  /// A link being given back after a login: done once the back end has
  /// ended the login (its locks released) and the link is in the pool, or
  /// closed. The session's quit waits for it, so that a client told +OK
  /// finds its maildrop free at once.
  struct returning {
    explicit returning(const executor& ex) : wake(ex) { wake.expires_at(std::chrono::steady_clock::time_point::max()); }
    bool done = false;
    asio::steady_timer wake;  ///< cancelled when done
  };

  link_pool(executor ex, link_options options, std::shared_ptr<const backend_secret> secret, logger& log,
            pool_settings settings, std::shared_ptr<pool_stats> stats);
  ~link_pool();
  link_pool(const link_pool&) = delete;
  link_pool& operator=(const link_pool&) = delete;

  /// A link for one login, lent to the caller until give_back(): the
  /// newest idle link that is still fit (idle_check), else a new one
  /// (opened here), else waits up to
  /// settings.wait for one to come back or close. `fresh`: skip the idle
  /// ones (the caller found one dead). The link is open (greeting read);
  /// trusted() tells whether XAUTH is still to be done. Throws spool_error:
  /// the back end cannot be reached, or no link was free in time.
  awaitable<std::shared_ptr<backend_link>> take(bool fresh);

  /// The session is done with `link`. A link that can be kept goes back to
  /// the pool: at once if no login is in force on it, else once the back
  /// end has answered XRESET (in the background; the result says when).
  /// Any other (broken, a body half read, a back end without XRESET,
  /// `idle: 0`) is ended: QUIT (nothing removed) and the back end closes
  /// first. Null when nothing is left to wait for.
  std::shared_ptr<returning> give_back(std::shared_ptr<backend_link> link);

  /// The event loop is going away (its io_context's destruction): closes
  /// every link at once, without a word to the back ends.
  void close_all();

  std::size_t open_links() const { return open_; }
  std::size_t idle_links() const { return idle_.size(); }

 private:
  struct idle_link {
    std::shared_ptr<backend_link> link;
    std::chrono::steady_clock::time_point since;
  };
  std::shared_ptr<backend_link> make_link();
  static awaitable<void> reset(std::shared_ptr<link_pool> self, std::shared_ptr<backend_link> link,
                               std::shared_ptr<returning> done);
  /// Lends `link` to a login.
  std::shared_ptr<backend_link> lend(std::shared_ptr<backend_link> link);
  /// `link` goes into the pool, ready for the next login.
  void put_idle(std::shared_ptr<backend_link> link);
  /// `link` no longer counts: ended (politely when `quit`) or closed.
  void drop(const std::shared_ptr<backend_link>& link, bool quit);
  /// Ends the idle links older than settings.idle.
  void expire(std::chrono::steady_clock::time_point now);
  /// Keeps the expiry timer running while idle links wait beside busy
  /// ones, and stopped otherwise (a loop with no session left holds no
  /// work: it can end).
  void schedule_expiry();
  /// A link came back or closed: the longest waiter looks again.
  void wake_one();

  executor executor_;
  link_options options_;
  std::shared_ptr<const backend_secret> secret_;
  logger& log_;
  pool_settings settings_;
  std::shared_ptr<pool_stats> stats_;

  std::size_t open_ = 0;            ///< lent, idle or being opened
  std::deque<idle_link> idle_;      ///< oldest first; taken newest first
  std::deque<std::shared_ptr<asio::steady_timer>> waiters_;
  asio::steady_timer expiry_;
  bool expiry_armed_ = false;
  bool closed_ = false;
  std::uint64_t next_link_ = 0;
};

/// The pools of one event loop, one per remote_spool instance: an
/// execution-context service of the loop's io_context, so that the links
/// are closed with the loop (before the io_context they belong to is
/// destroyed), whenever the module instance goes.
class link_pools final : public asio::execution_context::service {
 public:
  static asio::execution_context::id id;
  explicit link_pools(asio::execution_context& owner) : service(owner) {}
  /// The pool of instance `owner` on the loop of `ex`, made by `make` on
  /// first use. Call on that loop.
  template <typename Make>
  static std::shared_ptr<link_pool> of(const executor& ex, std::uint64_t owner, Make make) {
    auto& pools = asio::use_service<link_pools>(asio::query(ex, asio::execution::context));
    for (const auto& p : pools.pools_)
      if (p.first == owner) return p.second;
    pools.pools_.emplace_back(owner, make());
    return pools.pools_.back().second;
  }

 private:
  void shutdown() override;
  std::vector<std::pair<std::uint64_t, std::shared_ptr<link_pool>>> pools_;
};

}  // namespace sdps::remote
