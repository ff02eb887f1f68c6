#pragma once
// Running a module's coroutine under a time limit.

#include <sdps/asio.hpp>

#include <chrono>
#include <exception>
#include <memory>
#include <optional>
#include <stdexcept>

namespace sdps::core {

/// The module did not finish within its time limit.
class module_timeout : public std::runtime_error {
 public:
  module_timeout() : std::runtime_error("time limit exceeded") {}
};

/// Runs `op` and waits at most `limit` for it. Returns its value or
/// rethrows its exception; throws module_timeout when the limit passes
/// first. A late result is discarded: `op` must own (as parameters of the
/// coroutine function that made it) everything it uses, since the caller
/// moves on.
///
/// Boost 1.74 has no awaitable operators or per-operation cancellation, so
/// the timer doubles as the wake-up: completion cancels it. (`op` is an
/// awaitable, not a lambda: docs/toolchain.md.)
template <typename T>
awaitable<T> bounded(executor ex, std::chrono::milliseconds limit, awaitable<T> op) {
  struct state {
    explicit state(executor e) : timer(std::move(e)) {}
    asio::steady_timer timer;
    bool done = false;
    std::exception_ptr error;
    std::optional<T> value;
  };
  auto st = std::make_shared<state>(ex);
  st->timer.expires_after(limit);
  asio::co_spawn(ex, std::move(op), [st](std::exception_ptr error, T value) {
    if (st->done) return;
    st->done = true;
    st->error = error;
    if (!error) st->value.emplace(std::move(value));
    st->timer.cancel();
  });
  if (!st->done) {
    boost::system::error_code ignored;
    co_await st->timer.async_wait(asio::redirect_error(asio::use_awaitable, ignored));
  }
  if (!st->done) {
    st->done = true;
    throw module_timeout();
  }
  if (st->error) std::rethrow_exception(st->error);
  co_return std::move(*st->value);
}

}  // namespace sdps::core
