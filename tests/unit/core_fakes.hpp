#pragma once
// Stand-ins for the server and a connection, for driving the chain and the
// loader without sockets.

#include <sdps/module.hpp>

#include "logging.hpp"

#include <map>

namespace sdps::test {

class fake_server final : public sdps::server_context {
 public:
  explicit fake_server(asio::io_context& io, const sdps::settings* site = nullptr) : io_(io), site_(site) {}
  executor get_executor() override { return io_.get_executor(); }
  asio::thread_pool& blocking_pool() override { return pool_; }
  const std::string& customer_domain() const override { return domain_; }
  const std::string& server_name() const override { return name_; }
  const sdps::settings& site() const override { return *site_; }
  logger& log() override { return log_; }

 private:
  asio::io_context& io_;
  const sdps::settings* site_;
  asio::thread_pool pool_{1};
  std::string domain_ = "demon.co.uk";
  std::string name_ = "pop.test";
  core::stderr_log log_{log_level::warning, "test"};
};

class fake_session final : public sdps::session {
 public:
  explicit fake_session(asio::io_context& io) : io_(io) {}
  std::uint64_t id() const override { return 1; }
  asio::ip::tcp::endpoint remote_endpoint() const override { return remote; }
  asio::ip::tcp::endpoint local_endpoint() const override { return {}; }
  executor get_executor() override { return io_.get_executor(); }
  logger& log() override { return log_; }
  pop3_state state() const override { return state_; }
  void enter(pop3_state next) override { state_ = next; }
  std::vector<std::string> capabilities() override { return {}; }
  std::optional<identity>& login() override { return login_; }
  void drop_slot(const void* owner) override { slots_.erase(owner); }

  asio::ip::tcp::endpoint remote{asio::ip::make_address("127.0.0.1"), 40000};

 protected:
  std::shared_ptr<void>& slot_storage(const void* owner) override { return slots_[owner]; }
  std::shared_ptr<void>* find_slot_storage(const void* owner) override {
    auto it = slots_.find(owner);
    return it == slots_.end() ? nullptr : &it->second;
  }

 private:
  asio::io_context& io_;
  pop3_state state_ = pop3_state::authorization;
  std::optional<identity> login_;
  std::map<const void*, std::shared_ptr<void>> slots_;
  core::stderr_log log_{log_level::warning, "session"};
};

/// Runs `op` to completion on `io` and returns its result.
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

}  // namespace sdps::test
