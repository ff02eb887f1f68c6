#pragma once
// What the host store tests share: running a lookup to its end, and
// waiting (bounded) for what the store's thread reports.

#include "hostdb/store.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace sdps::hostdb::testing {

/// Runs store.lookup(host) on an event loop of its own; checks that the
/// coroutine resumed on that loop's thread.
inline lookup_result look(host_store& store, const std::string& host) {
  asio::io_context io;
  std::optional<lookup_result> out;
  std::exception_ptr failure;
  const auto loop_thread = std::this_thread::get_id();
  bool on_loop = false;
  auto job = [&store, host, &out, &on_loop, loop_thread]() -> awaitable<void> {
    std::string name = host;  // named, then moved in: docs/toolchain.md
    lookup_result r = co_await store.lookup(std::move(name));
    on_loop = std::this_thread::get_id() == loop_thread;
    out = std::move(r);
  };
  asio::co_spawn(io, std::move(job), [&failure](std::exception_ptr e) { failure = e; });
  io.run();
  if (failure) std::rethrow_exception(failure);
  REQUIRE(out);
  CHECK(on_loop);
  return std::move(*out);
}

/// Change notifications and health reports, as the store's thread gives them.
class recorder {
 public:
  void changed(const host_change& c) {
    std::lock_guard guard(mutex_);
    changes_.push_back(c.every ? "*" : c.host);
    cv_.notify_all();
  }
  void health(bool up) {
    std::lock_guard guard(mutex_);
    health_.push_back(up);
    cv_.notify_all();
  }
  /// Waits up to 20 s for a change of `host` ("*": every host); true if it came.
  bool wait_change(const std::string& host) {
    std::unique_lock guard(mutex_);
    return cv_.wait_for(guard, std::chrono::seconds(20), [&] {
      return std::find(changes_.begin(), changes_.end(), host) != changes_.end();
    });
  }
  /// Waits up to 30 s for the health to be reported as `up`.
  bool wait_health(bool up) {
    std::unique_lock guard(mutex_);
    return cv_.wait_for(guard, std::chrono::seconds(30), [&] { return !health_.empty() && health_.back() == up; });
  }
  std::vector<std::string> changes() const {
    std::lock_guard guard(mutex_);
    return changes_;
  }
  void clear() {
    std::lock_guard guard(mutex_);
    changes_.clear();
  }
  store_options options(logger& log) {
    store_options o;
    o.log = &log;
    o.changed = [this](const host_change& c) { changed(c); };
    o.health = [this](bool up) { health(up); };
    return o;
  }

 private:
  mutable std::mutex mutex_;
  std::condition_variable cv_;
  std::vector<std::string> changes_;
  std::vector<bool> health_;
};

/// Polls `condition` every 10 ms for up to 20 s.
template <typename F>
bool eventually(F condition) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (!condition()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return true;
}

}  // namespace sdps::hostdb::testing
