#include "server.hpp"

#include <boost/asio/ip/v6_only.hpp>
#include <boost/asio/write.hpp>

#include "notify.hpp"

#include <mutex>
#include <thread>

#include <pthread.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <unistd.h>

namespace sdps::core {

namespace {

/// The event loop the calling thread runs, if it runs one.
thread_local asio::io_context* this_loop = nullptr;

}  // namespace

server::server(server_config config)
    : config_(std::move(config)),
      pool_(config_.blocking_threads),
      log_(parse_level(config_.log_level), "sdpsd"),
      per_address_(config_.max_sessions_per_address) {
  for (unsigned i = 0; i < std::max(config_.threads, 1u); ++i) workers_.push_back(std::make_unique<worker>(i));
  signals_ = std::make_unique<asio::signal_set>(workers_.front()->io, SIGINT, SIGTERM, SIGHUP);
  limits_.idle_timeout = config_.idle_timeout;
  log_.set_json(config_.log_format == "json");
  limits_.proxy_protocol_from = config_.proxy_protocol_from;
  limits_.proxy_header_timeout = config_.proxy_protocol_timeout;
  limits_.login_timeout = config_.login_timeout;
}

server::~server() {
  for (auto& w : workers_) w->sessions.clear();
  pool_.join();
}

executor server::get_executor() {
  if (this_loop) return this_loop->get_executor();
  return workers_.front()->io.get_executor();
}

void server::load() {
  for (const listener& l : config_.listen)
    if (l.implicit_tls && !config_.tls) {
      std::ostringstream where;
      where << l.endpoint;
      throw config_error(config_.file.filename().string() + ": listener " + where.str() +
                         " is marked 'tls: implicit' but there is no top-level 'tls:' section");
    }
  if (config_.tls) tls_ = std::make_unique<tls_credentials>(*config_.tls);
  chain_ = build_chain(config_, *this, log_, services_);
  // The role label of the session metrics, from what the chain does.
  std::string role = "embedded";
  for (const auto& l : chain_->links()) {
    if (l->module == "remote_spool") role = "frontend";
    if (l->module == "backend_auth") role = "backend";
  }
  process_metrics().set_role(role);
  std::vector<std::string> verbs = chain_->verbs();
  verbs.push_back("OTHER");
  process_metrics().resolve(verbs, std::vector<std::string>(std::begin(session_end::all), std::end(session_end::all)));
}

std::unique_ptr<asio::ip::tcp::acceptor> server::open_acceptor(asio::io_context& loop,
                                                                const asio::ip::tcp::endpoint& endpoint,
                                                                bool reuse_port) const {
  auto acceptor = std::make_unique<asio::ip::tcp::acceptor>(loop);
  boost::system::error_code ec;
  acceptor->open(endpoint.protocol(), ec);
  if (!ec) acceptor->set_option(asio::ip::tcp::acceptor::reuse_address(true), ec);
  if (!ec && reuse_port) {
    const int on = 1;
    if (::setsockopt(acceptor->native_handle(), SOL_SOCKET, SO_REUSEPORT, &on, sizeof on) != 0)
      ec.assign(errno, boost::system::system_category());
  }
  if (!ec && endpoint.address().is_v6()) acceptor->set_option(asio::ip::v6_only(true), ec);
  if (!ec) acceptor->bind(endpoint, ec);
  if (!ec) acceptor->listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    std::ostringstream where;
    where << endpoint;
    throw std::runtime_error("cannot listen on " + where.str() + ": " + ec.message());
  }
  return acceptor;
}

void server::bind() {
  for (const listener& l : config_.listen) {
    const auto& endpoint = l.endpoint;
    if (workers_.size() > 1 && endpoint.port() != 0) {
      // SO_REUSEPORT would let these sockets join a group another process
      // of this user already listens with (a second sdpsd started by
      // mistake) and share its connections. A plain socket bound first
      // finds the port busy, as a single loop's socket would.
      open_acceptor(workers_.front()->io, endpoint, false)->close();
    }
    // Port 0 picks a free port (never one in another group); the other
    // loops join the first loop's socket on it.
    const bool shared = workers_.size() > 1;
    auto first = open_acceptor(workers_.front()->io, endpoint, shared);
    const auto bound = first->local_endpoint();
    workers_.front()->acceptors.push_back(std::move(first));
    for (std::size_t i = 1; i < workers_.size(); ++i)
      workers_[i]->acceptors.push_back(open_acceptor(workers_[i]->io, bound, shared));
    auto policy = std::make_unique<listener_policy>();
    policy->tls = tls_.get();
    policy->implicit_tls = l.implicit_tls;
    policy->plaintext = config_.plaintext_auth;
    policy->trusted = &config_.trusted_networks;
    log_.info("listening on ", bound,
              l.implicit_tls ? " (implicit TLS)" : tls_ ? " (STLS offered)" : "");
    policies_.push_back(std::move(policy));
  }
  if (config_.metrics_listen)
    metrics_endpoint_ =
        std::make_unique<metrics_endpoint>(workers_.front()->io, *config_.metrics_listen, process_metrics(), log_);
}

void server::drop_privileges() {
  if (config_.user.empty()) return;
  errno = 0;
  const passwd* pw = ::getpwnam(config_.user.c_str());
  if (!pw) throw std::runtime_error("user '" + config_.user + "' does not exist");
  if (::geteuid() != 0) {
    if (::geteuid() == pw->pw_uid) return;
    throw std::runtime_error("cannot switch to user '" + config_.user + "': not running as root");
  }
  if (::initgroups(pw->pw_name, pw->pw_gid) != 0 || ::setgid(pw->pw_gid) != 0 || ::setuid(pw->pw_uid) != 0)
    throw std::runtime_error("cannot switch to user '" + config_.user + "': " + std::strerror(errno));
  if (::setuid(0) == 0) throw std::runtime_error("privileges were not dropped: setuid(0) still works");
  log_.info("running as user ", config_.user);
}

int server::run() {
  ::signal(SIGPIPE, SIG_IGN);
  watch_signals();
  for (auto& w : workers_)
    for (std::size_t i = 0; i < w->acceptors.size(); ++i)
      asio::co_spawn(w->io, accept_loop(*w, *w->acceptors[i], *policies_[i]), asio::detached);
  if (metrics_endpoint_) metrics_endpoint_->start();
  // Listeners are bound and privileges dropped: systemd (Type=notify) may
  // start what depends on us.
  notify_service_manager("READY=1\nSTATUS=serving");

  // An exception out of one loop (a bug: sessions catch their own) stops
  // them all and leaves main() as it would with one loop.
  std::mutex failure_lock;
  std::exception_ptr failure;
  auto serve = [&](worker& w) {
    this_loop = &w.io;
    try {
      w.io.run();
    } catch (...) {
      {
        std::lock_guard guard(failure_lock);
        if (!failure) failure = std::current_exception();
      }
      for (auto& other : workers_) other->io.stop();
    }
    this_loop = nullptr;
  };
  std::vector<std::thread> threads;
  for (std::size_t i = 1; i < workers_.size(); ++i) {
    threads.emplace_back([&serve, &w = *workers_[i]] { serve(w); });
    // Named for `top -H` and /proc/PID/task/*/comm.
    const std::string name = "sdpsd-loop-" + std::to_string(i);
    ::pthread_setname_np(threads.back().native_handle(), name.c_str());
  }
  serve(*workers_.front());
  for (auto& t : threads) t.join();
  if (failure) std::rethrow_exception(failure);
  log_.info("stopped");
  return 0;
}

void server::watch_signals() {
  signals_->async_wait([this](const boost::system::error_code& ec, int signo) {
    if (ec) return;
    if (signo == SIGHUP) {
      log_.info("SIGHUP: reloading modules");
      // New sessions get the new certificate; open ones keep theirs.
      if (tls_) tls_->reload(log_);
      const auto now = std::chrono::duration_cast<std::chrono::microseconds>(
          std::chrono::steady_clock::now().time_since_epoch());
      notify_service_manager("RELOADING=1\nMONOTONIC_USEC=" + std::to_string(now.count()));
      // Here, on the first loop, while the other loops serve on: every
      // module's reload() is thread-safe (docs/modules.md).
      chain_->reload();
      notify_service_manager("READY=1\nSTATUS=serving");
      watch_signals();
      return;
    }
    log_.info(signo == SIGINT ? "SIGINT" : "SIGTERM", ": closing ", open_sessions_.load(), " session(s) without UPDATE");
    shutdown();
  });
}

void server::shutdown() {
  stopping_ = true;
  notify_service_manager("STOPPING=1");
  if (metrics_endpoint_) metrics_endpoint_->close();
  // Each loop closes its own acceptors and sessions: their objects belong
  // to its thread.
  for (auto& w : workers_) asio::post(w->io, [this, loop = w.get()] { close_loop(*loop); });
  boost::system::error_code ignored;
  signals_->cancel(ignored);
}

void server::close_loop(worker& w) {
  for (auto& acceptor : w.acceptors) {
    boost::system::error_code ignored;
    acceptor->close(ignored);
  }
  for (auto& [id, weak] : w.sessions)
    if (auto c = weak.lock()) {
      c->end_reason(session_end::shutdown);
      c->close();
    }
}

std::unique_ptr<address_limits::ticket> server::admit(asio::ip::tcp::socket& socket) {
  auto refuse = [&socket](const std::string& text) {
    boost::system::error_code ignored;
    socket.non_blocking(true, ignored);
    socket.write_some(asio::buffer(text), ignored);
  };
  // One count for every loop: a place is taken before anything else, so
  // loops admitting at the same moment never pass max_sessions together.
  std::size_t open = open_sessions_.load(std::memory_order_acquire);
  do {
    if (open >= config_.max_sessions) {
      log_.warning("refusing a connection: ", open, " sessions open (max_sessions)");
      refuse("-ERR [SYS/TEMP] too many connections, try again later\r\n");
      return nullptr;
    }
  } while (!open_sessions_.compare_exchange_weak(open, open + 1, std::memory_order_acq_rel));
  boost::system::error_code ec;
  const auto peer = socket.remote_endpoint(ec);
  if (ec) {  // already gone
    session_gone();
    return nullptr;
  }
  bool first_refusal = false;
  // A balancer's connections are limited by the client each one's PROXY
  // header names (connection::read_proxy_header rekeys the ticket).
  const bool balancer = contains(config_.proxy_protocol_from, peer.address());
  auto ticket = per_address_.admit(peer.address(), first_refusal, !balancer);
  if (!ticket) {
    session_gone();
    // Logged once per flood: the address is logged again only after its
    // count has dropped below the limit.
    if (first_refusal)
      log_.warning("refusing connections from ", address_limits::canonical(peer.address()), ": it holds ",
                   per_address_.max_per_address(), " sessions (max_sessions_per_address)");
    refuse("-ERR [SYS/TEMP] too many connections from your address, try again later\r\n");
  }
  return ticket;
}

awaitable<void> server::accept_loop(worker& w, asio::ip::tcp::acceptor& acceptor, const listener_policy& policy) {
  asio::steady_timer backoff(w.io);
  while (!stopping_) {
    boost::system::error_code ec;
    auto socket = co_await acceptor.async_accept(asio::redirect_error(asio::use_awaitable, ec));
    if (stopping_) break;  // accepted as shutdown began: closed unserved
    if (ec) {
      if (ec == asio::error::operation_aborted) break;
      // Out of descriptors or similar: say so and let the load pass.
      log_.warning("accept: ", ec.message());
      backoff.expires_after(std::chrono::milliseconds(100));
      co_await backoff.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      continue;
    }
    auto ticket = admit(socket);
    if (!ticket) {
      boost::system::error_code ignored;
      socket.close(ignored);
      continue;
    }
    // Replies are already gathered into one write per batch of commands;
    // Nagle's algorithm would only hold a reply back until the client's
    // delayed ACK (40ms) when it follows another one unacknowledged, which
    // stalls pipelining clients and front ends talking to back ends.
    {
      boost::system::error_code ignored;
      socket.set_option(asio::ip::tcp::no_delay(true), ignored);
    }
    const std::uint64_t id = next_id_.fetch_add(1, std::memory_order_relaxed);
    auto session = std::make_shared<connection>(std::move(socket), id, *chain_, limits_, config_.banner, log_, policy);
    session->hold(std::move(ticket));
    w.sessions[id] = session;
    log_.debug("session ", id, " on event loop ", w.index);
    asio::co_spawn(
        w.io,
        [this, &w, session, id]() -> awaitable<void> {
          co_await session->run();
          w.sessions.erase(id);
          session_gone();
        },
        asio::detached);
  }
}

}  // namespace sdps::core
