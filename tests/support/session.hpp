#pragma once
// Sessions for unit tests: the core's own session engine over an
// in-memory connection. A test that needs a session (for slots, the
// executor, continuation lines, the plaintext policy) makes a
// test_session; one that runs commands through a chain uses harness.hpp,
// which runs the engine exactly as sdpsd does (state machine, login
// stages, event order, the watchdog that bounds every module call).

#include "support/fakes.hpp"

#include "chain.hpp"
#include "session_engine.hpp"

#include "base/watchdog.hpp"

#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace sdps::testing {

/// A client connection in memory: the lines the test queues are what the
/// client sent; what the engine writes accumulates in sent(). Event loop only.
class memory_transport final : public core::session_transport {
 public:
  explicit memory_transport(executor ex, std::size_t line_limit = 512)
      : executor_(ex), wake_(ex), line_limit_(line_limit) {
    wake_.expires_at(std::chrono::steady_clock::time_point::max());
  }

  // -- the test's side --
  /// The client sends `line` (without CRLF); wakes an engine waiting for it.
  void push(std::string line) {
    lines_.push_back(std::move(line));
    waiting_ = false;  // being woken
    wake_.cancel();
  }
  /// The client closes its side: the engine's next read fails.
  void hang_up() {
    eof_ = true;
    waiting_ = false;
    wake_.cancel();
  }
  /// The engine waits for a line and none is queued.
  bool idle() const { return waiting_ && lines_.empty(); }
  /// Everything the server wrote so far, and its end.
  std::string& sent() { return sent_; }
  bool closed() const { return closed_; }
  /// Makes client_gone() report the client gone (a FIN with lines queued).
  bool gone = false;
  /// The client's and the server's addresses.
  asio::ip::tcp::endpoint remote{asio::ip::make_address("192.0.2.7"), 40001};
  asio::ip::tcp::endpoint local{asio::ip::make_address("127.0.0.1"), 1110};
  /// TLS in force / possible on this listener (STLS "succeeds" at once).
  bool tls = false;
  bool tls_offered = false;

  // -- core::session_transport --
  std::optional<input> line_now(std::string_view& line) override {
    if (lines_.empty()) return std::nullopt;
    current_ = std::move(lines_.front());
    lines_.pop_front();
    if (current_.size() + 2 > line_limit_) return input::overlong;
    line = current_;
    return input::line;
  }
  awaitable<input> next_line(std::string_view& line) override {
    for (;;) {
      if (const auto got = line_now(line)) co_return *got;
      if (eof_ || closed_) throw boost::system::system_error(asio::error::eof, "the client closed");
      co_await flush();
      waiting_ = true;
      boost::system::error_code ignored;
      co_await wake_.async_wait(asio::redirect_error(asio::use_awaitable, ignored));
      wake_.expires_at(std::chrono::steady_clock::time_point::max());
      waiting_ = false;
    }
  }
  std::string& output() override { return out_; }
  awaitable<void> flush() override {
    flush_now();
    co_return;
  }
  bool flush_now() override {
    if (closed_) return true;
    sent_ += out_;
    out_.clear();
    return true;
  }
  awaitable<void> write(asio::const_buffer data) override {
    if (closed_) co_return;
    sent_.append(static_cast<const char*>(data.data()), data.size());
    co_return;
  }
  bool writing() const override { return false; }
  bool client_gone() override { return gone || eof_; }
  void close() override {
    closed_ = true;
    waiting_ = false;
    wake_.cancel();
  }
  bool secure() const override { return tls; }
  bool tls_available() const override { return tls_offered; }
  awaitable<void> start_tls() override {
    lines_.clear();
    tls = true;
    co_return;
  }
  awaitable<void> finish() override { co_return; }
  asio::ip::tcp::endpoint remote_endpoint() const override { return remote; }
  asio::ip::tcp::endpoint local_endpoint() const override { return local; }
  executor get_executor() override { return executor_; }

 private:
  executor executor_;
  asio::steady_timer wake_;
  std::size_t line_limit_;
  std::deque<std::string> lines_;
  std::string current_;
  std::string out_;
  std::string sent_;
  bool waiting_ = false;
  bool eof_ = false;
  bool closed_ = false;
};

/// Engine settings for tests: plaintext logins allowed (no TLS needed),
/// small body reads (streaming in pieces of 7 octets), short timeouts.
inline core::engine_settings test_engine_settings() {
  core::engine_settings s;
  s.plaintext = core::plaintext_policy::always;
  s.body_chunk = 7;
  s.banner = "test server ready";
  return s;
}

/// One session for module tests: the core's engine over a memory
/// connection. Not running until run_engine() (harness.hpp does it): a
/// module test can call services with it directly (slots, the executor,
/// continuation() lines queued with client().push()).
class test_session {
 public:
  /// Session `id` on `io`, over `modules` (an empty chain when null),
  /// logging to `log` (which must outlive the session) or its own logger.
  explicit test_session(asio::io_context& io, std::uint64_t id = 1, const core::chain* modules = nullptr,
                        core::engine_settings settings = test_engine_settings(), logging::source_log* log = nullptr)
      : state_(std::make_shared<parts>(io.get_executor(), std::move(settings))) {
    if (!modules) state_->empty = std::make_unique<core::chain>(std::vector<std::unique_ptr<core::module_instance>>{});
    state_->engine.emplace(id, modules ? *modules : *state_->empty, state_->settings, log ? *log : state_->log,
                           state_->transport, state_->dog);
  }
  test_session(const test_session&) = delete;
  test_session& operator=(const test_session&) = delete;

  sdps::session& get() { return *state_->engine; }
  operator sdps::session&() { return *state_->engine; }
  core::session_engine& engine() { return *state_->engine; }
  memory_transport& client() { return state_->transport; }
  /// Starts the engine's run() (the connect event and the greeting).
  void run_engine() {
    state_->running = true;
    asio::co_spawn(state_->transport.get_executor(), state_->engine->run(state_),
                   [state = state_](std::exception_ptr) { state->running = false; });
  }
  /// run() has returned (the session is over: disconnect delivered, slots gone).
  bool finished() const { return !state_->running; }
  /// The settings the engine works under (change them before run_engine()).
  core::engine_settings& settings() { return state_->settings; }

 private:
  /// Everything the engine refers to, kept alive while its run() goes on.
  struct parts {
    parts(executor ex, core::engine_settings s)
        : settings(std::move(s)), log(log_level::error, "test"), transport(ex), dog(ex) {}
    core::engine_settings settings;
    logging::source_log log;
    std::unique_ptr<core::chain> empty;
    memory_transport transport;
    base::watchdog dog;
    std::optional<core::session_engine> engine;
    bool running = false;
  };
  std::shared_ptr<parts> state_;
};

}  // namespace sdps::testing
