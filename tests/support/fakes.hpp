#pragma once
// The one set of stand-ins every unit test uses for what the core gives a
// module: a logger that keeps its lines, the server context and a module's
// config; plus helpers to run a coroutine to completion. Sessions are
// never faked: session.hpp runs the core's own session engine over an
// in-memory connection, and harness.hpp whole chains on it.

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
  void declare_role(const std::string& role) override { role_ = role; }
  bool is_terminal() const { return terminal_; }
  const std::string& role() const { return role_; }

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
  std::string role_;
  std::vector<std::pair<std::string, bool>> requirements_;
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
