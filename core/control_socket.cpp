#include "control_socket.hpp"

#include "base/account.hpp"
#include "base/watchdog.hpp"
#include "pop3/user.hpp"

#include <boost/asio/read_until.hpp>
#include <boost/asio/write.hpp>

#include <grp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <stdexcept>

namespace sdps::core {

namespace {

/// Requests answered at once; more connections get `error code=busy`.
constexpr std::size_t max_connections = 8;
/// How long a client has to send its request line, and then how long the
/// answer (a kick's wait included) and its writing may take.
constexpr std::chrono::seconds request_limit{5};
constexpr std::chrono::seconds answer_limit{30};
/// How long a kick waits for the sessions it ended to be over.
constexpr std::chrono::milliseconds kick_wait{5000};
/// The longest `status` waits for the first probes after start-up.
constexpr std::chrono::milliseconds first_probe_wait{5000};

std::string system_error(const std::string& what, int error) {
  return std::string(what).append(": ").append(std::strerror(error));
}

std::optional<gid_t> find_group(const std::string& name) {
  std::vector<char> buffer(16384);
  group entry{};
  group* found = nullptr;
  if (::getgrnam_r(name.c_str(), &entry, buffer.data(), buffer.size(), &found) != 0 || !found) return std::nullopt;
  return found->gr_gid;
}

/// "uid 0, pid 1234" for the log: who asked (SO_PEERCRED).
std::string peer_of(int fd) {
  ucred cred{};
  socklen_t length = sizeof cred;
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &length) != 0) return "an unknown peer";
  return "uid " + std::to_string(cred.uid) + ", pid " + std::to_string(cred.pid);
}

/// `what 'text'`, the text made printable and cut short.
std::string naming(const char* what, std::string_view text) {
  std::string out = what;
  out.append(" '").append(printable(text, 80)).append("'");
  return out;
}

}  // namespace

bool session_filter::matches(std::uint64_t session_id, const identity* login) const {
  if (id) return *id == session_id;
  if (!login || login->host != host) return false;
  return !user || login->user == *user;
}

control_socket::control_socket(asio::io_context& loop, control_socket_config config, control_handler& handler,
                               punt_monitor* monitor, logger& log)
    : config_(std::move(config)), handler_(handler), monitor_(monitor), log_(log), acceptor_(loop) {
  const std::string where = config_.path.string();
  const std::string name = "control socket " + where;
  if (where.size() >= sizeof(sockaddr_un::sun_path))
    throw std::runtime_error(name + ": the path is too long for a unix socket (at most " +
                             std::to_string(sizeof(sockaddr_un::sun_path) - 1) + " octets)");
  const std::filesystem::path folder = config_.path.parent_path();
  std::error_code fs_error;
  if (!folder.empty() && !std::filesystem::is_directory(folder, fs_error)) {
    std::filesystem::create_directories(folder, fs_error);
    if (fs_error) throw std::runtime_error(name + ": cannot create its folder: " + fs_error.message());
  }

  // What is there already: the socket of an sdpsd that was killed (nothing
  // listens: replaced), of one that runs (refused), or no socket at all.
  struct stat st;
  if (::lstat(where.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode))
      throw std::runtime_error(name + " exists and is not a socket: remove it, or set 'control_socket:' elsewhere");
    stream::socket knock(loop);
    boost::system::error_code ec;
    knock.connect(stream::endpoint(where), ec);
    if (!ec)
      throw std::runtime_error(name + " is in use: another sdpsd (or some other process) listens on it");
    if (ec != asio::error::connection_refused) throw std::runtime_error(name + ": cannot check it: " + ec.message());
    if (::unlink(where.c_str()) != 0) throw std::runtime_error(system_error(name + ": cannot remove the stale socket", errno));
    log_.info("replaced the stale ", name, " (its sdpsd ended without removing it)");
  }

  std::optional<gid_t> group;
  if (!config_.group.empty()) {
    group = find_group(config_.group);
    if (!group) throw std::runtime_error(name + ": control_socket_group '" + config_.group + "' does not exist");
  }
  boost::system::error_code ec;
  acceptor_.open(stream(), ec);
  if (!ec) {
    // Mode 0660 from the moment it exists (the loops and the blocking
    // pool do not create files yet: the umask is ours for the moment).
    const mode_t old = ::umask(0117);
    acceptor_.bind(stream::endpoint(where), ec);
    ::umask(old);
  }
  if (ec) throw std::runtime_error(name + ": cannot bind: " + ec.message());
  // The socket belongs to who sdpsd runs as: started as root with a
  // `user:`, to that user (it could not remove it at exit otherwise).
  uid_t owner = static_cast<uid_t>(-1);
  gid_t owner_group = static_cast<gid_t>(-1);
  if (::geteuid() == 0 && !config_.user.empty())
    if (const auto account = base::find_account(config_.user)) {
      owner = account->uid;
      owner_group = account->gid;
    }
  if (group) owner_group = *group;
  if ((owner != static_cast<uid_t>(-1) || owner_group != static_cast<gid_t>(-1)) &&
      ::chown(where.c_str(), owner, owner_group) != 0) {
    const int error = errno;
    ::unlink(where.c_str());
    throw std::runtime_error(system_error(
        name + ": cannot give it to " + (group ? "group '" + config_.group + "'" : "user '" + config_.user + "'") +
            " (sdpsd must run as root, or as a member of that group)",
        error));
  }
  if (::chmod(where.c_str(), 0660) != 0) {
    const int error = errno;
    ::unlink(where.c_str());
    throw std::runtime_error(system_error(name + ": cannot set its mode", error));
  }
  acceptor_.listen(static_cast<int>(max_connections), ec);
  if (ec || ::lstat(where.c_str(), &st) != 0) {
    ::unlink(where.c_str());
    throw std::runtime_error(name + ": cannot listen: " + (ec ? ec.message() : std::strerror(errno)));
  }
  device_ = st.st_dev;
  inode_ = st.st_ino;
  log_.info("control socket on ", where);
}

control_socket::~control_socket() { close(); }

void control_socket::start() { asio::co_spawn(acceptor_.get_executor(), accept_loop(), asio::detached); }

void control_socket::close() {
  if (closed_) return;
  closed_ = true;
  boost::system::error_code ignored;
  acceptor_.close(ignored);
  // Only the file bound here: a later sdpsd may have replaced it.
  struct stat st;
  const std::string where = config_.path.string();
  if (::lstat(where.c_str(), &st) == 0 && st.st_dev == device_ && st.st_ino == inode_ && ::unlink(where.c_str()) != 0)
    log_.info("could not remove the control socket ", where, ": ", std::strerror(errno),
              " (the next start replaces it)");
}

awaitable<void> control_socket::accept_loop() {
  for (;;) {
    boost::system::error_code ec;
    auto socket = co_await acceptor_.async_accept(asio::redirect_error(asio::use_awaitable, ec));
    if (ec == asio::error::operation_aborted || closed_) co_return;
    if (ec) {
      log_.warning("control socket: accept: ", ec.message());
      asio::steady_timer pause(acceptor_.get_executor());
      pause.expires_after(std::chrono::milliseconds(100));
      co_await pause.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      continue;
    }
    if (serving_ >= max_connections) {
      const std::string busy = control::format(control::error(control::code::busy, "too many control requests at once"));
      socket.non_blocking(true, ec);
      socket.write_some(asio::buffer(busy), ec);
      socket.close(ec);
      continue;
    }
    auto shared = std::make_shared<stream::socket>(std::move(socket));
    asio::co_spawn(acceptor_.get_executor(), serve(this, shared), asio::detached);
  }
}

awaitable<void> control_socket::serve(control_socket* self, std::shared_ptr<stream::socket> socket) {
  ++self->serving_;
  // A silent client gets request_limit, the answer answer_limit; then the
  // socket is closed, which ends the read or write it is stuck in.
  base::watchdog dog(socket->get_executor());
  const auto deadline = dog.add([socket](base::watchdog::time_point) {
    boost::system::error_code ignored;
    socket->close(ignored);
  });
  dog.set_after(deadline, request_limit);
  std::string request;
  boost::system::error_code ec;
  std::size_t n = co_await asio::async_read_until(*socket, asio::dynamic_buffer(request, control::max_request_line + 1),
                                                  '\n', asio::redirect_error(asio::use_awaitable, ec));
  std::string reply;
  if (ec == asio::error::not_found) {
    reply = control::format(control::error(control::code::bad_request, "the request line is too long"));
  } else if (!ec) {
    request.resize(n - 1);
    dog.set_after(deadline, answer_limit);
    try {
      reply = co_await self->answer(std::move(request), peer_of(socket->native_handle()));
    } catch (const std::exception& e) {
      self->log_.error("control socket: ", e.what());
      reply = control::format(control::error(control::code::internal, "the server failed: see its log"));
    }
  }
  if (!reply.empty()) co_await asio::async_write(*socket, asio::buffer(reply), asio::redirect_error(asio::use_awaitable, ec));
  socket->shutdown(stream::socket::shutdown_both, ec);
  socket->close(ec);
  --self->serving_;
}

std::variant<session_filter, control::record> control_socket::filter_of(const control::selector& which) const {
  session_filter out;
  switch (which.what) {
    case control::selector::by::id: {
      out.id = control::decimal(which.value);
      if (!out.id) return control::error(control::code::bad_id, naming("not a session id:", which.value));
      return out;
    }
    case control::selector::by::host: {
      const auto who = pop3::parse_user(which.value, config_.customer_domain);
      if (!who || !who->host_login())
        return control::error(control::code::bad_host, naming("not a host name:", which.value));
      out.host = who->host;
      return out;
    }
    case control::selector::by::login: {
      const auto who = pop3::parse_user(which.value, config_.customer_domain);
      if (!who) return control::error(control::code::bad_login, naming("not a login:", which.value));
      out.host = who->host;
      out.user = who->user;
      return out;
    }
  }
  return control::error(control::code::bad_request, "");
}

awaitable<std::string> control_socket::answer(std::string line, std::string who) {
  const auto parsed = control::parse(line);
  if (!parsed) co_return control::format(control::error(control::code::bad_request, "not a control request line"));
  const auto request = control::read_request(*parsed);
  if (const auto* code = std::get_if<std::string>(&request))
    co_return control::format(control::error(*code, "not a request of protocol " +
                                                        std::to_string(control::protocol_version)));
  const control::request& r = std::get<control::request>(request);
  std::string out;
  switch (r.what) {
    case control::request::verb::who: {
      const std::vector<control::session_row> rows = co_await handler_.list_sessions();
      log_.debug("control socket: who, for ", who, ": ", rows.size(), " session(s)");
      out = control::format(control::ok());
      for (const auto& row : rows) out += control::format(control::to_record(row));
      break;
    }
    case control::request::verb::kick: {
      auto filter = filter_of(r.which);
      if (const auto* refused = std::get_if<control::record>(&filter)) co_return control::format(*refused);
      const session_filter which = std::get<session_filter>(filter);
      const std::vector<control::session_row> rows = co_await handler_.kick_sessions(which, kick_wait);
      // An admin's act on customers' sessions: always logged.
      std::string ids;
      for (const auto& row : rows) ids.append(ids.empty() ? "" : " ").append(std::to_string(row.id));
      log_.info("control socket: kick ", printable(line.substr(line.find('\t') + 1), 200), ", for ", who, ": ",
                rows.empty() ? std::string("no session matched") : "ended session(s) " + ids);
      out = control::format(control::ok());
      for (const auto& row : rows) out += control::format(control::to_record(row));
      break;
    }
    case control::request::verb::status:
      out = co_await status();
      log_.debug("control socket: status, for ", who);
      break;
  }
  out += control::format(control::end());
  co_return out;
}

awaitable<std::string> control_socket::status() {
  // Just after start-up the first probes may still be out.
  if (monitor_) co_await monitor_->settled(std::min(monitor_->interval(), first_probe_wait));
  std::string out = control::format(control::ok());
  control::server_row server;
  server.role = handler_.role();
  server.probe_interval_ms = monitor_ ? static_cast<std::uint64_t>(monitor_->interval().count()) : 0;
  server.sessions = handler_.open_sessions();
  out += control::format(control::to_record(server));
  if (!monitor_) co_return out;
  const auto now = punt_monitor::clock::now();
  for (const auto& reading : monitor_->readings()) {
    control::punt_row row;
    row.name = reading.punt;
    row.up = reading.probed && reading.up;
    row.sessions = reading.sessions;
    if (row.up && reading.latency) row.latency_us = static_cast<std::uint64_t>(reading.latency->count());
    if (reading.probed)
      row.checked_ms_ago = static_cast<std::uint64_t>(
          std::chrono::duration_cast<std::chrono::milliseconds>(now - reading.checked).count());
    row.detail = reading.probed || !reading.detail.empty() ? reading.detail : "not probed yet";
    out += control::format(control::to_record(row));
  }
  co_return out;
}

}  // namespace sdps::core
