#pragma once
// Test helpers for the spool: a scratch folder, a logger that keeps its
// lines, and just enough of the core (server, module config, session) to
// build a local_spool instance from inline YAML and drive it.

#include "config.hpp"
#include "delivery.hpp"
#include "loader.hpp"
#include "local_spool.hpp"

#include <sdps/maildrop.hpp>
#include <sdps/module.hpp>

#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>
#include <string>
#include <vector>

namespace sdps::spoolfmt::testing {

/// A fresh folder under $TMPDIR, removed with everything in it.
class scratch {
 public:
  /// In $TMPDIR, or under `base` when given.
  explicit scratch(const std::filesystem::path& base = std::filesystem::temp_directory_path()) {
    std::string pattern = (base / "sdps-spool-XXXXXX").string();
    if (!::mkdtemp(pattern.data())) throw std::runtime_error("mkdtemp failed");
    path_ = pattern;
  }
  ~scratch() {
    std::error_code ec;
    // Undo permission changes a test made, so everything can be removed.
    for (auto it = std::filesystem::recursive_directory_iterator(path_, ec);
         !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec))
      if (it->is_directory(ec)) std::filesystem::permissions(it->path(), std::filesystem::perms::owner_all,
                                                             std::filesystem::perm_options::add, ec);
    std::filesystem::remove_all(path_, ec);
  }
  scratch(const scratch&) = delete;
  scratch& operator=(const scratch&) = delete;
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

/// A folder in memory (tmpfs) where one exists, else $TMPDIR: for tests
/// that fsync thousands of times.
inline std::filesystem::path fast_base() {
  std::error_code ec;
  if (std::filesystem::is_directory("/dev/shm", ec) && ::access("/dev/shm", W_OK) == 0) return "/dev/shm";
  return std::filesystem::temp_directory_path();
}

inline std::string slurp(const std::filesystem::path& file) {
  std::ifstream in(file, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

inline void spit(const std::filesystem::path& file, const std::string& text) {
  std::ofstream out(file, std::ios::binary);
  out << text;
}

/// Names of the regular files directly in `folder`, sorted.
inline std::vector<std::string> files_in(const std::filesystem::path& folder) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(folder, ec))
    if (e.is_regular_file()) out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

/// A logger that keeps every line.
class capture_log final : public logger {
 public:
  void write(log_level, std::string_view line) override {
    std::lock_guard<std::mutex> guard(mutex_);
    lines_.emplace_back(line);
  }
  bool enabled(log_level) const override { return true; }
  bool contains(std::string_view text) const {
    std::lock_guard<std::mutex> guard(mutex_);
    return std::any_of(lines_.begin(), lines_.end(),
                       [&](const std::string& l) { return l.find(text) != std::string::npos; });
  }
  std::size_t size() const {
    std::lock_guard<std::mutex> guard(mutex_);
    return lines_.size();
  }

 private:
  mutable std::mutex mutex_;
  std::vector<std::string> lines_;
};

/// Delivers `message` with sdps::spoolfmt::deliver from a string, in
/// pieces of `piece` octets (to exercise chunk boundaries).
inline std::vector<stored_copy> deliver_text(const std::vector<punt_target>& punts, const std::string& from,
                                             const std::vector<recipient>& to, const std::string& message,
                                             logger* log = nullptr, std::size_t piece = 7) {
  std::size_t at = 0;
  input_reader input = [&](std::span<char> buffer) {
    const std::size_t n = std::min({buffer.size(), piece, message.size() - at});
    message.copy(buffer.data(), n, at);
    at += n;
    return n;
  };
  return deliver(punts, from, to, input, log);
}

inline recipient rcpt(const std::string& local, const std::string& host = "sample") {
  return {local + "@" + host + ".demon.co.uk", local, host};
}

class fake_server final : public server_context {
 public:
  fake_server(asio::io_context& io, const std::string& site_yaml)
      : io_(io), pool_(1), site_(YAML::Load(site_yaml), "/etc/sdps/site.yaml", "site") {}
  ~fake_server() override { pool_.join(); }
  executor get_executor() override { return io_.get_executor(); }
  asio::thread_pool& blocking_pool() override { return pool_; }
  const std::string& customer_domain() const override { return domain_; }
  const std::string& server_name() const override { return name_; }
  const settings& site() const override { return site_; }
  logger& log() override { return log_; }

 private:
  asio::io_context& io_;
  asio::thread_pool pool_;
  core::yaml_settings site_;
  std::string domain_ = "demon.co.uk";
  std::string name_ = "pop3.test";
  capture_log log_;
};

class fake_config final : public module_config {
 public:
  fake_config(std::string instance, const std::string& yaml, server_context& server, logger& log,
              core::service_registry& services)
      : instance_(std::move(instance)),
        options_(YAML::Load(yaml), "/etc/sdps/test.yaml", "module instance '" + instance_ + "'"),
        server_(server),
        log_(log),
        services_(services) {}

  const std::string& instance() const override { return instance_; }
  settings& options() override { return options_; }
  server_context& server() override { return server_; }
  logger& log() override { return log_; }
  std::size_t position() const override { return 0; }
  void terminal() override {}
  core::yaml_settings& yaml() { return options_; }

 protected:
  void provide_service(const char* id, void* object) override { services_.add({instance_, id, object, 0}); }
  void require_service(const char*, bool) override {}

 private:
  std::string instance_;
  core::yaml_settings options_;
  server_context& server_;
  logger& log_;
  core::service_registry& services_;
};

class fake_session final : public session {
 public:
  fake_session(std::uint64_t id, executor ex, identity who) : id_(id), executor_(std::move(ex)) { login_ = who; }
  ~fake_session() override { clear_slots(); }

  std::uint64_t id() const override { return id_; }
  asio::ip::tcp::endpoint remote_endpoint() const override { return {asio::ip::make_address("192.0.2.7"), 40000}; }
  asio::ip::tcp::endpoint local_endpoint() const override { return {asio::ip::make_address("127.0.0.1"), 1110}; }
  executor get_executor() override { return executor_; }
  logger& log() override { return log_; }
  pop3_state state() const override { return pop3_state::authorization; }
  void enter(pop3_state) override {}
  std::vector<std::string> capabilities() override { return {}; }
  std::optional<identity>& login() override { return login_; }
  void drop_slot(const void* owner) override {
    const auto it = std::find_if(slots_.begin(), slots_.end(), [owner](const auto& s) { return s.first == owner; });
    if (it != slots_.end()) slots_.erase(it);
  }
  /// What the core does when the connection ends: every slot goes.
  void clear_slots() {
    while (!slots_.empty()) slots_.pop_back();
  }

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
  std::optional<identity> login_;
  capture_log log_;
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

}  // namespace sdps::spoolfmt::testing
