#include "server.hpp"

#include <boost/asio/ip/v6_only.hpp>
#include <boost/asio/write.hpp>

#include "base/account.hpp"
#include "base/privileges.hpp"
#include "notify.hpp"

#include <algorithm>
#include <mutex>
#include <optional>
#include <sstream>
#include <thread>

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace sdps::core {

namespace {

/// The event loop the calling thread runs, if it runs one.
thread_local asio::io_context* this_loop = nullptr;

}  // namespace

server::server(server_config config)
    : config_(std::move(config)),
      in_force_(config_text::of(config_)),
      pool_(config_.blocking_threads),
      sink_(std::make_shared<logging::sink>(config_.site.log)),
      log_(sink_, "sdpsd"),
      max_sessions_(config_.max_sessions),
      per_address_(config_.max_sessions_per_address) {
  for (unsigned i = 0; i < std::max(config_.threads, 1u); ++i) workers_.push_back(std::make_unique<worker>(i));
  signals_ = std::make_unique<asio::signal_set>(workers_.front()->io, SIGINT, SIGTERM, SIGHUP);
  apply_live_settings();
}

void server::apply_live_settings() {
  auto fresh = std::make_shared<connection_settings>();
  fresh->session.idle_timeout = config_.idle_timeout;
  fresh->session.login_timeout = config_.login_timeout;
  fresh->session.banner = config_.banner;
  fresh->session.plaintext = config_.plaintext_auth;
  fresh->session.trusted = config_.trusted_networks;
  fresh->proxy_protocol_from = config_.proxy_protocol_from;
  fresh->proxy_header_timeout = config_.proxy_protocol_timeout;
  {
    std::lock_guard guard(settings_lock_);
    settings_ = std::move(fresh);
  }
  max_sessions_.store(config_.max_sessions, std::memory_order_release);
  per_address_.set_max_per_address(config_.max_sessions_per_address);
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
  chain_facts facts;
  chain_ = build_chain(config_, *this, log_, services_, &facts);
  role_ = facts.role;
  process_metrics().set_role(facts.role);
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

std::string server::adopt(const base::activated_socket& socket) {
  sockaddr_storage address{};
  socklen_t length = sizeof address;
  ::getsockname(socket.fd, reinterpret_cast<sockaddr*>(&address), &length);
  if (address.ss_family != AF_INET && address.ss_family != AF_INET6)
    throw std::runtime_error("socket activation: descriptor " + std::to_string(socket.fd) + " is not a TCP socket");
  const auto protocol = address.ss_family == AF_INET ? asio::ip::tcp::v4() : asio::ip::tcp::v6();
  const bool implicit_tls = socket.name == "pop3s";
  if (implicit_tls && !tls_)
    throw config_error("socket activation: the socket named pop3s is implicit TLS, but there is no top-level 'tls:'");
  for (std::size_t i = 0; i < workers_.size(); ++i) {
    const int fd = i == 0 ? socket.fd : ::fcntl(socket.fd, F_DUPFD_CLOEXEC, 0);
    if (fd < 0) throw std::runtime_error("socket activation: dup: " + std::string(std::strerror(errno)));
    auto acceptor = std::make_unique<asio::ip::tcp::acceptor>(workers_[i]->io);
    acceptor->assign(protocol, fd);
    workers_[i]->acceptors.push_back(std::move(acceptor));
  }
  auto policy = std::make_unique<listener_policy>();
  policy->tls = tls_.get();
  policy->implicit_tls = implicit_tls;
  policies_.push_back(std::move(policy));
  std::ostringstream line;
  line << "listening on " << workers_.front()->acceptors.back()->local_endpoint() << " (from systemd"
       << (implicit_tls ? ", implicit TLS)" : tls_ ? ", STLS offered)" : ")");
  return line.str();
}

void server::bind(std::vector<base::activated_socket> activated) {
  // Said once everything is bound, the control socket included: whoever
  // waits for these lines may use all of it.
  std::vector<std::string> listening;
  for (const auto& socket : activated) listening.push_back(adopt(socket));
  // Sockets from systemd replace the config's listeners.
  const std::vector<listener> none;
  for (const listener& l : activated.empty() ? config_.listen : none) {
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
    std::ostringstream line;
    line << "listening on " << bound << (l.implicit_tls ? " (implicit TLS)" : tls_ ? " (STLS offered)" : "");
    listening.push_back(line.str());
    policies_.push_back(std::move(policy));
  }
  if (config_.metrics_listen)
    metrics_endpoint_ =
        std::make_unique<metrics_endpoint>(workers_.front()->io, *config_.metrics_listen, config_.metrics_allow,
                                           process_metrics(), log_);
  open_control();
  for (const std::string& line : listening) log_.info(line);
}

std::vector<std::string> server::check() const {
  std::vector<std::string> out = base::check_readable(config_.file, "the config file (SIGHUP reads it again)");
  if (tls_) {
    const tls_config tls = tls_->config();
    for (auto& line : base::check_readable(tls.certificate, "the TLS certificate (read again at SIGHUP)"))
      out.push_back(std::move(line));
    for (auto& line : base::check_readable(tls.key, "the TLS key (read again at SIGHUP)"))
      out.push_back(std::move(line));
  }
  for (auto& line : chain_->check()) out.push_back(std::move(line));
  return out;
}

void server::drop_privileges() {
  if (base::become_user(config_.site.user, base::when_unprivileged::refuse))
    log_.info("running as user ", config_.site.user);
}

int server::run() {
  ::signal(SIGPIPE, SIG_IGN);
  watch_signals();
  for (auto& w : workers_)
    for (std::size_t i = 0; i < w->acceptors.size(); ++i)
      asio::co_spawn(w->io, accept_loop(*w, *w->acceptors[i], *policies_[i]), asio::detached);
  if (metrics_endpoint_) metrics_endpoint_->start();
  if (monitor_) monitor_->start();
  if (control_) control_->start();
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
      const auto now = std::chrono::duration_cast<std::chrono::microseconds>(
          std::chrono::steady_clock::now().time_since_epoch());
      notify_service_manager("RELOADING=1\nMONOTONIC_USEC=" + std::to_string(now.count()));
      reload();
      notify_service_manager("READY=1\nSTATUS=serving");
      watch_signals();
      return;
    }
    log_.info(signo == SIGINT ? "SIGINT" : "SIGTERM", ": closing ", open_sessions_.load(), " session(s) without UPDATE");
    shutdown();
  });
}

void server::reload() {
  log_.info("SIGHUP: reading ", config_.file.string(), " again and reloading the modules' files");
  std::optional<server_config> fresh;
  reload_plan plan;
  try {
    fresh = load_config(config_.file);
    if (config_.listen_from_command_line) {
      fresh->listen = config_.listen;
      fresh->listen_from_command_line = true;
    }
    plan = plan_reload(in_force_, config_, *fresh, *chain_);
  } catch (const std::exception& e) {
    // config_error from the file, or an unreadable file: nothing changes.
    log_.error("reload: ", e.what(), "; keeping the configuration in force");
    fresh.reset();
  }
  std::optional<tls_config> tls;
  if (fresh) {
    // The lines about the change come out at the more talkative of the two
    // log levels, so that a level raised or lowered says so.
    logging::options during = fresh->site.log;
    during.minimum = std::min(config_.site.log.minimum, fresh->site.log.minimum);
    sink_->configure(during);
    for (const std::string& line : plan.applied) log_.info("reload: applied ", line);
    for (const std::string& line : plan.restart) log_.warning("reload: ", line);
    if (plan.applied.empty() && plan.restart.empty()) log_.info("reload: no setting changed");
    config_.site.log = fresh->site.log;
    sink_->configure(config_.site.log);
    config_.banner = fresh->banner;
    config_.idle_timeout = fresh->idle_timeout;
    config_.login_timeout = fresh->login_timeout;
    config_.plaintext_auth = fresh->plaintext_auth;
    config_.trusted_networks = fresh->trusted_networks;
    config_.proxy_protocol_from = fresh->proxy_protocol_from;
    config_.proxy_protocol_timeout = fresh->proxy_protocol_timeout;
    config_.max_sessions = fresh->max_sessions;
    config_.max_sessions_per_address = fresh->max_sessions_per_address;
    config_.metrics_allow = fresh->metrics_allow;
    // The endpoint accepts on this loop (the first), where SIGHUP is handled.
    if (metrics_endpoint_) metrics_endpoint_->allow(config_.metrics_allow);
    apply_live_settings();
    if (config_.tls && fresh->tls) tls = fresh->tls;  // added or removed: at the next restart
    for (auto& change : plan.module_changes) {
      try {
        change();
      } catch (const std::exception& e) {
        log_.error("reload: a module failed to apply its new settings: ", e.what());
      }
    }
    in_force_ = std::move(plan.in_force);
  }
  // New sessions get the new certificate; open ones keep theirs.
  if (tls_) {
    tls_->reload(log_, tls);
    if (tls) config_.tls = tls_->config();
  }
  // Here, on the first loop, while the other loops serve on: every
  // module's reload() is thread-safe (docs/modules.md).
  chain_->reload();
}

void server::shutdown() {
  stopping_ = true;
  notify_service_manager("STOPPING=1");
  if (metrics_endpoint_) metrics_endpoint_->close();
  close_control();
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
    if (auto c = weak.lock()) c->end(session_end::shutdown);
}

std::unique_ptr<address_limits::ticket> server::admit(asio::ip::tcp::socket& socket,
                                                     const connection_settings& settings) {
  auto refuse = [&socket](const std::string& text) {
    boost::system::error_code ignored;
    socket.non_blocking(true, ignored);
    socket.write_some(asio::buffer(text), ignored);
  };
  // One count for every loop: a place is taken before anything else, so
  // loops admitting at the same moment never pass max_sessions together.
  std::size_t open = open_sessions_.load(std::memory_order_acquire);
  do {
    if (open >= max_sessions_.load(std::memory_order_acquire)) {
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
  const bool balancer = contains(settings.proxy_protocol_from, peer.address());
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
    // What the session works under, as configured now (SIGHUP changes it
    // for the sessions that come after).
    auto settings = connection_defaults();
    auto ticket = admit(socket, *settings);
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
    auto session = std::make_shared<connection>(std::move(socket), id, *chain_, std::move(settings), log_, policy);
    session->hold(std::move(ticket));
    w.sessions[id] = session;
    log_.debug("session ", id, " on event loop ", w.index);
    asio::co_spawn(
        w.io,
        [this, &w, session, id]() -> awaitable<void> {
          co_await session->run();
          w.sessions.erase(id);
          for (asio::steady_timer* watcher : w.end_watchers) watcher->cancel();
          session_gone();
        },
        asio::detached);
  }
}

// -- the punt probes and the control socket ----------------------------------------

void server::open_control() {
  const auto spools = services_.named<spool>();
  if (!spools.empty())
    monitor_ = std::make_unique<punt_monitor>(workers_.front()->io.get_executor(), spools, config_.probe_interval,
                                              log_, process_metrics());
  if (config_.site.control_socket.empty()) return;
  control_socket_config c;
  c.path = config_.site.control_socket;
  c.group = config_.control_socket_group;
  c.user = config_.site.user;
  c.customer_domain = config_.site.customer_domain;
  control_handler& handler = *this;
  control_ = std::make_unique<control_socket>(workers_.front()->io, std::move(c), handler, monitor_.get(), log_);
}

void server::close_control() {
  // The probes and the socket live on the first loop.
  asio::post(workers_.front()->io, [this] {
    if (monitor_) monitor_->stop();
    if (control_) control_->close();
  });
}

namespace {

control::session_row row_of(connection& c) {
  control::session_row row;
  session_engine& session = c.session();
  row.id = session.id();
  if (const identity* who = session.login()) {
    row.login = who->display();
    row.host = who->host;
    if (!who->host_login()) row.user = who->user;
  }
  std::ostringstream client;
  client << c.remote_endpoint();
  row.client = client.str();
  row.tls = c.secure();
  row.state = to_string(session.state());
  row.since = std::chrono::duration_cast<std::chrono::seconds>(c.connected_at().time_since_epoch()).count();
  row.sent = c.octets_sent();
  return row;
}

}  // namespace

awaitable<std::vector<control::session_row>> server::on_loop(worker& w, std::shared_ptr<const session_filter> which,
                                                             bool kick) {
  return asio::co_spawn(w.io, loop_sessions(&w, std::move(which), kick), asio::use_awaitable);
}

awaitable<std::vector<control::session_row>> server::loop_sessions(worker* w,
                                                                   std::shared_ptr<const session_filter> which,
                                                                   bool kick) {
  // On w's own thread: its sessions are touched nowhere else.
  std::vector<control::session_row> rows;
  for (const auto& entry : w->sessions) {
    const std::shared_ptr<connection> c = entry.second.lock();
    if (!c) continue;
    if (which && !which->matches(c->session().id(), c->session().login())) continue;
    rows.push_back(row_of(*c));
    if (kick) c->end(session_end::kicked);
  }
  co_return rows;
}

awaitable<std::vector<std::uint64_t>> server::wait_on_loop(worker& w, std::vector<std::uint64_t> ids,
                                                           std::chrono::steady_clock::time_point deadline) {
  return asio::co_spawn(w.io, loop_wait(&w, std::move(ids), deadline), asio::use_awaitable);
}

awaitable<std::vector<std::uint64_t>> server::loop_wait(worker* w, std::vector<std::uint64_t> ids,
                                                        std::chrono::steady_clock::time_point deadline) {
  // A kicked session is over once its disconnect event has run (its
  // locks released) and it has left w->sessions.
  asio::steady_timer wake(w->io);
  for (;;) {
    std::erase_if(ids, [w](std::uint64_t id) { return !w->sessions.contains(id); });
    if (ids.empty() || std::chrono::steady_clock::now() >= deadline) co_return ids;
    wake.expires_at(deadline);
    w->end_watchers.push_back(&wake);
    boost::system::error_code ignored;
    co_await wake.async_wait(asio::redirect_error(asio::use_awaitable, ignored));
    std::erase(w->end_watchers, &wake);
  }
}

awaitable<std::vector<control::session_row>> server::list_sessions() {
  std::vector<control::session_row> out;
  for (auto& w : workers_) {
    // Once shutdown has begun a loop may have ended: nothing more is asked
    // of the loops (stopping_ is set on this loop, before any loop is told).
    if (stopping_) break;
    std::shared_ptr<const session_filter> all;
    std::vector<control::session_row> rows = co_await on_loop(*w, all, false);
    for (auto& row : rows) out.push_back(std::move(row));
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.id < b.id; });
  co_return out;
}

awaitable<std::vector<control::session_row>> server::kick_sessions(session_filter which,
                                                                   std::chrono::milliseconds wait) {
  const auto selected = std::make_shared<const session_filter>(std::move(which));
  // Every loop ends its sessions first; then the waits overlap.
  std::vector<std::vector<control::session_row>> ended;
  for (auto& w : workers_) {
    if (stopping_) break;  // as in list_sessions()
    ended.push_back(co_await on_loop(*w, selected, true));
  }
  const auto deadline = std::chrono::steady_clock::now() + wait;
  std::vector<control::session_row> out;
  for (std::size_t i = 0; i < ended.size(); ++i) {
    if (ended[i].empty()) continue;
    std::vector<std::uint64_t> ids;
    for (const auto& row : ended[i]) ids.push_back(row.id);
    std::vector<std::uint64_t> left = ids;
    if (!stopping_) left = co_await wait_on_loop(*workers_[i], ids, deadline);
    for (auto& row : ended[i]) {
      row.gone = std::find(left.begin(), left.end(), row.id) == left.end();
      out.push_back(std::move(row));
    }
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.id < b.id; });
  co_return out;
}

}  // namespace sdps::core
