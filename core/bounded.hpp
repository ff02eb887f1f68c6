#pragma once
// Running a module's coroutine under a time limit.

#include <sdps/asio.hpp>

#include <chrono>
#include <exception>
#include <memory>
#include <optional>
#include <stdexcept>

namespace sdps::core {

/// A module call that overran its time limit and is still running. Its
/// result will be discarded; what matters is when it ends, since nothing
/// else may be called for its session before then (see `module_timeout`).
/// Event loop only.
class late_call {
 public:
  explicit late_call(executor ex) : wake_(std::move(ex)) {}
  late_call(const late_call&) = delete;
  late_call& operator=(const late_call&) = delete;

  bool finished() const { return finished_; }
  /// Returns once the call has finished (at once if it has).
  awaitable<void> wait() {
    while (!finished_) {
      wake_.expires_at(std::chrono::steady_clock::time_point::max());
      boost::system::error_code ignored;
      co_await wake_.async_wait(asio::redirect_error(asio::use_awaitable, ignored));
    }
  }

 protected:
  /// The call has returned or thrown: wakes whoever waits.
  void finish() {
    finished_ = true;
    wake_.cancel();
  }
  asio::steady_timer wake_;  // the time limit first, then the wake-up of wait()
  bool finished_ = false;
};

/// The module did not finish within its time limit. `call()` is the call,
/// still running: the session it was made for must end, and the core calls
/// nothing more for that session (the disconnect event included) until
/// `call()->wait()` returns.
class module_timeout : public std::runtime_error {
 public:
  explicit module_timeout(std::shared_ptr<late_call> call)
      : std::runtime_error("time limit exceeded"), call_(std::move(call)) {}
  const std::shared_ptr<late_call>& call() const { return call_; }

 private:
  std::shared_ptr<late_call> call_;
};

/// Runs `op` and waits at most `limit` for it. Returns its value or
/// rethrows its exception; throws module_timeout when the limit passes
/// first. `op` must own (as parameters of the coroutine function that made
/// it) everything it uses, since the caller moves on.
///
/// Boost 1.74 has no awaitable operators or per-operation cancellation, so
/// the timer doubles as the wake-up: completion cancels it. (`op` is an
/// awaitable, not a lambda: docs/toolchain.md.)
template <typename T>
awaitable<T> bounded(executor ex, std::chrono::milliseconds limit, awaitable<T> op) {
  struct state final : late_call {
    explicit state(executor e) : late_call(std::move(e)) {}
    using late_call::finish;
    using late_call::wake_;
    bool given_up = false;
    std::exception_ptr error;
    std::optional<T> value;
  };
  auto st = std::make_shared<state>(ex);
  st->wake_.expires_after(limit);
  asio::co_spawn(ex, std::move(op), [st](std::exception_ptr error, T value) {
    if (!st->given_up) {
      st->error = error;
      if (!error) st->value.emplace(std::move(value));
    }
    st->finish();
  });
  if (!st->finished()) {
    boost::system::error_code ignored;
    co_await st->wake_.async_wait(asio::redirect_error(asio::use_awaitable, ignored));
  }
  if (!st->finished()) {
    st->given_up = true;
    throw module_timeout(st);
  }
  if (st->error) std::rethrow_exception(st->error);
  co_return std::move(*st->value);
}

}  // namespace sdps::core
