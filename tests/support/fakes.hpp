#pragma once
// The one set of stand-ins every unit test uses for what the core gives a
// module: a logger that keeps its lines, the server context, a module's
// config, and a session; plus helpers to run a coroutine to completion.
// Module tests that need a whole chain use harness.hpp on top of these.

#include "chain.hpp"
#include "config.hpp"
#include "loader.hpp"

#include <sdps/maildrop.hpp>
#include <sdps/module.hpp>

#include <algorithm>
#include <array>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace sdps::testing {

/// A logger that keeps every line, for assertions on what was logged.
class capture_log final : public logger {
 public:
  void write(log_level, std::string_view line) override {
    std::lock_guard<std::mutex> guard(mutex_);
    lines_.emplace_back(line);
  }
  bool enabled(log_level) const override { return true; }
  /// True if some line contains `text`.
  bool contains(std::string_view text) const {
    std::lock_guard<std::mutex> guard(mutex_);
    return std::any_of(lines_.begin(), lines_.end(),
                       [&](const std::string& l) { return l.find(text) != std::string::npos; });
  }
  std::vector<std::string> lines() const {
    std::lock_guard<std::mutex> guard(mutex_);
    return lines_;
  }
  std::size_t size() const {
    std::lock_guard<std::mutex> guard(mutex_);
    return lines_.size();
  }

 private:
  mutable std::mutex mutex_;
  std::vector<std::string> lines_;
};

/// The server context: an event loop, a blocking pool of `threads`
/// threads, customer_domain `demon.co.uk`, server name `pop3.test`.
class fake_server final : public server_context {
 public:
  /// The site settings from YAML text, as if read from /etc/sdps/site.yaml.
  explicit fake_server(asio::io_context& io, const std::string& site_yaml = "{}", std::size_t threads = 1)
      : io_(io), pool_(threads), own_site_(std::in_place, YAML::Load(site_yaml), "/etc/sdps/site.yaml", "site"),
        site_(&*own_site_), log_(&own_log_) {}
  /// Site settings (and optionally a logger) owned by the test; both must
  /// outlive the server.
  fake_server(asio::io_context& io, const settings& site, logger* log = nullptr, std::size_t threads = 1)
      : io_(io), pool_(threads), site_(&site), log_(log ? log : &own_log_) {}
  ~fake_server() override { pool_.join(); }

  executor get_executor() override { return io_.get_executor(); }
  asio::thread_pool& blocking_pool() override { return pool_; }
  const std::string& customer_domain() const override { return domain_; }
  const std::string& server_name() const override { return name_; }
  const settings& site() const override { return *site_; }
  logger& log() override { return *log_; }

 private:
  asio::io_context& io_;
  asio::thread_pool pool_;
  std::optional<core::yaml_settings> own_site_;
  const settings* site_;
  capture_log own_log_;
  logger* log_;
  std::string domain_ = "demon.co.uk";
  std::string name_ = "pop3.test";
};

/// What the loader gives create(), for one instance at one chain position.
/// Services it provides go into `services` (when given); requirements are
/// recorded, not checked.
class fake_config final : public module_config {
 public:
  /// Settings from YAML text, as if from the entry of /etc/sdps/test.yaml.
  fake_config(std::string instance, const std::string& yaml, std::size_t position, server_context& server,
              logger& log, core::service_registry& services)
      : instance_(std::move(instance)),
        own_options_(std::in_place, YAML::Load(yaml), "/etc/sdps/test.yaml", "module instance '" + instance_ + "'"),
        options_(&*own_options_),
        position_(position),
        server_(server),
        log_(log),
        services_(&services) {}
  /// The first instance of a chain.
  fake_config(std::string instance, const std::string& yaml, server_context& server, logger& log,
              core::service_registry& services)
      : fake_config(std::move(instance), yaml, 0, server, log, services) {}
  /// Settings owned by the test (they must outlive the config); services
  /// provided go nowhere.
  fake_config(std::string instance, settings& options, server_context& server, logger& log)
      : instance_(std::move(instance)), options_(&options), position_(0), server_(server), log_(log) {}

  const std::string& instance() const override { return instance_; }
  settings& options() override { return *options_; }
  server_context& server() override { return server_; }
  logger& log() override { return log_; }
  std::size_t position() const override { return position_; }
  void terminal() override { terminal_ = true; }

  /// The settings built from YAML (not for the constructor taking settings).
  core::yaml_settings& yaml() { return *own_options_; }
  const std::vector<std::pair<std::string, bool>>& requirements() const { return requirements_; }

 protected:
  void provide_service(const char* id, void* object) override {
    if (services_) services_->add({instance_, id, object, position_});
  }
  void require_service(const char* id, bool earlier) override { requirements_.emplace_back(id, earlier); }

 private:
  std::string instance_;
  std::optional<core::yaml_settings> own_options_;
  settings* options_;
  std::size_t position_;
  server_context& server_;
  logger& log_;
  core::service_registry* services_ = nullptr;
  bool terminal_ = false;
  std::vector<std::pair<std::string, bool>> requirements_;
};

/// One client connection, as the core's connection would present it:
/// state changes follow the core's rules, slots are destroyed newest first
/// when it ends.
class fake_session final : public session {
 public:
  /// Connection `id`; capabilities() asks `*chain` when it is given and set.
  fake_session(std::uint64_t id, executor ex, const core::chain* const* chain = nullptr)
      : id_(id), executor_(std::move(ex)), chain_(chain) {}
  /// Connection `id`, already past USER as `who`.
  fake_session(std::uint64_t id, executor ex, identity who) : fake_session(id, std::move(ex)) {
    login_ = std::move(who);
  }
  /// Connection 1 on `io`.
  explicit fake_session(asio::io_context& io) : fake_session(1, io.get_executor()) {}
  ~fake_session() override { clear_slots(); }

  std::uint64_t id() const override { return id_; }
  asio::ip::tcp::endpoint remote_endpoint() const override { return remote; }
  asio::ip::tcp::endpoint local_endpoint() const override { return {asio::ip::make_address("127.0.0.1"), 1110}; }
  executor get_executor() override { return executor_; }
  logger& log() override { return log_to ? *log_to : log_; }
  pop3_state state() const override { return state_; }
  void enter(pop3_state next) override {
    if (!state_changes_allowed) throw std::logic_error("this module must not change the session's state");
    if (state_ == pop3_state::authorization && next == pop3_state::transaction) {
      state_ = next;
      authenticated_pending_ = true;
      return;
    }
    if (state_ == pop3_state::transaction && next == pop3_state::update) {
      state_ = next;
      return;
    }
    throw std::logic_error(std::string("illegal state change from ") + to_string(state_) + " to " +
                           to_string(next));
  }
  std::vector<std::string> capabilities() override {
    return chain_ && *chain_ ? (*chain_)->capabilities(*this) : std::vector<std::string>{};
  }
  bool secure() const override { return tls; }
  bool can_start_tls() const override { return tls_available && !tls; }
  void start_tls() override {
    if (!can_start_tls()) throw std::logic_error("STLS is not possible on this session");
    tls = true;
  }
  bool plaintext_auth_allowed() const override { return tls || plaintext_allowed; }
  /// Answers each continuation with the next of `client_lines` (nothing
  /// when they are used up); the challenges sent are kept in `challenges`.
  awaitable<std::optional<std::string>> continuation(std::string challenge) override {
    challenges.push_back(std::move(challenge));
    if (client_lines.empty()) co_return std::nullopt;
    std::string line = std::move(client_lines.front());
    client_lines.erase(client_lines.begin());
    co_return line;
  }
  std::optional<identity>& login() override { return login_; }
  void drop_slot(const void* owner) override {
    const auto it = std::find_if(slots_.begin(), slots_.end(), [owner](const auto& s) { return s.first == owner; });
    if (it != slots_.end()) slots_.erase(it);
  }
  /// Destroys every slot, newest first, as the core does after disconnect.
  void clear_slots() {
    while (!slots_.empty()) slots_.pop_back();
  }
  std::size_t slot_count() const { return slots_.size(); }

  /// Logs in without an auth module, as auth would after a good password.
  void set_login(std::string host, std::string user = {}) { login_ = identity{std::move(host), std::move(user)}; }

  /// True once after enter(transaction): the core would fire `authenticated`.
  bool take_authenticated() { return std::exchange(authenticated_pending_, false); }
  capture_log& captured() { return log_; }

  /// The client's address.
  asio::ip::tcp::endpoint remote{asio::ip::make_address("192.0.2.7"), static_cast<unsigned short>(40000 + id_)};
  /// TLS in force (start_tls() sets it at once).
  bool tls = false;
  /// STLS would be offered (TLS configured on a plain listener).
  bool tls_available = false;
  /// The plaintext policy's answer without TLS.
  bool plaintext_allowed = true;
  /// What continuation() hands back, in order, and the challenges it got.
  std::vector<std::string> client_lines;
  std::vector<std::string> challenges;
  /// Set when a reply asked to close the connection (the harness does).
  bool closed = false;
  /// False for a module that must never call enter(): then enter() throws.
  bool state_changes_allowed = true;
  /// Where log() writes instead of captured(), when set.
  logger* log_to = nullptr;

 protected:
  std::shared_ptr<void>& slot_storage(const void* owner) override {
    if (auto* p = find_slot_storage(owner)) return *p;
    return slots_.emplace_back(owner, nullptr).second;
  }
  std::shared_ptr<void>* find_slot_storage(const void* owner) override {
    for (auto& [key, value] : slots_)
      if (key == owner) return &value;
    return nullptr;
  }

 private:
  std::uint64_t id_;
  executor executor_;
  const core::chain* const* chain_ = nullptr;
  capture_log log_;
  pop3_state state_ = pop3_state::authorization;
  bool authenticated_pending_ = false;
  std::optional<identity> login_;
  std::vector<std::pair<const void*, std::shared_ptr<void>>> slots_;
};

/// Runs one awaitable to completion on `io` and returns its result (or
/// rethrows its exception).
template <typename T>
T run(asio::io_context& io, awaitable<T> op) {
  std::optional<T> result;
  std::exception_ptr error;
  asio::co_spawn(io, std::move(op), [&](std::exception_ptr e, T value) {
    error = e;
    if (!e) result.emplace(std::move(value));
  });
  io.restart();
  io.run();
  if (error) std::rethrow_exception(error);
  return std::move(*result);
}

inline void run(asio::io_context& io, awaitable<void> op) {
  std::exception_ptr error;
  asio::co_spawn(io, std::move(op), [&](std::exception_ptr e) { error = e; });
  io.restart();
  io.run();
  if (error) std::rethrow_exception(error);
}

/// Everything a body source yields, read through a small buffer.
inline awaitable<std::string> drain(std::unique_ptr<body_source> body) {
  std::string out;
  std::array<char, 1000> buffer;
  for (;;) {
    const std::size_t n = co_await body->read(std::span<char>(buffer));
    if (n == 0) break;
    out.append(buffer.data(), n);
  }
  co_return out;
}

}  // namespace sdps::testing
