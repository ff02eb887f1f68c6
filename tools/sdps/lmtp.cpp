// sdps lmtp: an LMTP server (RFC 2033) for the MTA, beside `sdps deliver`.
// The same checks and the same storage as deliver, one reply per
// recipient. Every connection is a coroutine on one event loop (Boost.Asio,
// as sdpsd); the conversation itself is lib/smtp's lmtp_protocol; what
// blocks (reading the host database, storing a copy with its fsyncs) runs
// on a small thread pool. docs/smtp.md explains the service and the
// Postfix wiring.

#include "admin.hpp"

#include "base/account.hpp"
#include "base/activation.hpp"
#include "base/descriptor.hpp"
#include "base/duration.hpp"
#include "base/endpoint.hpp"
#include "logging/sink.hpp"
#include "base/watchdog.hpp"
#include "queue.hpp"
#include "smtp/connection.hpp"
#include "smtp/lmtp.hpp"
#include "spoolstore/delivery.hpp"

#include <boost/asio/signal_set.hpp>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sysexits.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <iostream>
#include <set>

namespace sdps::admin {

namespace {

using acceptor_type = asio::basic_socket_acceptor<asio::generic::stream_protocol>;

/// Threads for the blocking work (host database reads, stored copies).
constexpr std::size_t blocking_threads = 4;
/// DATA octets gathered before they are written to the temporary file.
constexpr std::size_t spool_chunk = 64 * 1024;
/// How long a closing reply (421) may take to leave.
constexpr std::chrono::seconds goodbye_limit{5};
/// Pause after a failed accept (out of descriptors) before the next one.
constexpr std::chrono::milliseconds accept_pause{100};

/// Where to listen, as given with --listen.
struct listen_spec {
  std::string text;                    ///< as written, for messages
  std::optional<base::endpoint> tcp;   ///< ADDR:PORT
  std::filesystem::path unix_path;     ///< unix:PATH
};

/// How unix sockets are made.
struct socket_rights {
  mode_t mode = 0660;
  std::optional<uid_t> owner;
  std::optional<gid_t> group;
};

/// A listening socket, and how the log names it.
struct listener {
  base::unique_fd fd;
  std::string name;
  std::filesystem::path unix_path;  ///< removed at the end when we made it
};

std::string errno_text(int code) { return std::strerror(code); }

/// "127.0.0.1:24", "[::1]:24", "unix:/path": the socket's own address.
std::string local_name(int fd) {
  sockaddr_storage storage{};
  socklen_t length = sizeof storage;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&storage), &length) != 0) return "?";
  return base::socket_address_text(reinterpret_cast<const sockaddr*>(&storage));
}

/// A bound, listening TCP socket for a numeric ADDR:PORT. Throws
/// tool_exit (69) when it cannot be had.
listener open_tcp(const base::endpoint& e) {
  const asio::ip::tcp::endpoint address = e.tcp();
  const int family = address.data()->sa_family;
  base::unique_fd fd(::socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0));
  const int one = 1;
  if (fd.valid()) {
    ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (family == AF_INET6) ::setsockopt(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
  }
  if (!fd.valid() || ::bind(fd.get(), address.data(), static_cast<socklen_t>(address.size())) < 0 ||
      ::listen(fd.get(), SOMAXCONN) < 0)
    throw tool_exit(EX_UNAVAILABLE, "cannot listen on " + e.to_string() + ": " + errno_text(errno));
  listener out;
  out.name = local_name(fd.get());
  out.fd = std::move(fd);
  return out;
}

/// A unix socket at `path` with `rights`: a stale socket file there is
/// replaced, anything else is refused. Throws tool_exit (69).
listener open_unix(const std::filesystem::path& path, const socket_rights& rights) {
  const auto failed = [&path](const std::string& why) {
    return tool_exit(EX_UNAVAILABLE, "cannot listen on unix:" + path.string() + ": " + why);
  };
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  if (path.native().size() >= sizeof address.sun_path) throw failed("the path is too long for a unix socket");
  std::memcpy(address.sun_path, path.c_str(), path.native().size());
  struct stat st{};
  if (::lstat(path.c_str(), &st) == 0) {
    // What a previous run left: a socket nobody listens on any more (two
    // servers on one path would be a configuration mistake either way).
    if (!S_ISSOCK(st.st_mode)) throw failed("it exists and is not a socket");
    ::unlink(path.c_str());
  }
  base::unique_fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) throw failed(errno_text(errno));
  // Born with its mode: no moment when others may connect.
  const mode_t saved = ::umask(static_cast<mode_t>(0777 & ~rights.mode));
  const int bound = ::bind(fd.get(), reinterpret_cast<const sockaddr*>(&address), sizeof address);
  const int bind_error = errno;
  ::umask(saved);
  if (bound < 0) throw failed(errno_text(bind_error));
  listener out;
  out.unix_path = path;
  if (::chmod(path.c_str(), rights.mode) < 0) throw failed("chmod: " + errno_text(errno));
  if ((rights.owner || rights.group) &&
      ::chown(path.c_str(), rights.owner ? *rights.owner : static_cast<uid_t>(-1),
              rights.group ? *rights.group : static_cast<gid_t>(-1)) < 0)
    throw failed("chown: " + errno_text(errno) + " (setting the owner takes root)");
  if (::listen(fd.get(), SOMAXCONN) < 0) throw failed(errno_text(errno));
  out.name = local_name(fd.get());
  out.fd = std::move(fd);
  return out;
}

/// Runs `fn` on `pool` and resumes the caller on its own executor with the
/// result (or the exception). Not a coroutine itself, and `fn` is named by
/// the caller first: docs/toolchain.md (1, 2).
template <typename F>
awaitable<std::invoke_result_t<F>> on_pool(asio::thread_pool& pool, F fn) {
  using result = std::invoke_result_t<F>;
  return asio::co_spawn(
      pool, [fn = std::move(fn)]() mutable -> awaitable<result> { co_return fn(); }, asio::use_awaitable);
}

/// An unlinked temporary file holding one DATA message, written from the
/// event loop in chunks (page-cache writes) and read by the pool's stores.
class spool_file {
 public:
  spool_file() {
    std::string path = (std::filesystem::temp_directory_path() / "sdps-lmtp-XXXXXX").string();
    fd_.reset(::mkostemp(path.data(), O_CLOEXEC));
    if (!fd_.valid()) throw std::runtime_error("temporary file: " + errno_text(errno));
    ::unlink(path.c_str());
  }
  void write(std::string_view data) {
    while (!data.empty()) {
      const ssize_t n = ::write(fd_.get(), data.data(), data.size());
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) throw std::runtime_error("temporary file: " + errno_text(n < 0 ? errno : ENOSPC));
      data.remove_prefix(static_cast<std::size_t>(n));
    }
  }
  /// A reader of `prefix`, then the file from its start (one per copy).
  spoolstore::input_reader reader(std::string prefix) const {
    auto offset = std::make_shared<off_t>(0);
    auto head = std::make_shared<std::string>(std::move(prefix));
    const int fd = fd_.get();
    return [fd, offset, head](std::span<char> buffer) -> std::size_t {
      if (!head->empty()) {
        const std::size_t n = head->copy(buffer.data(), buffer.size());
        head->erase(0, n);
        return n;
      }
      for (;;) {
        const ssize_t n = ::pread(fd, buffer.data(), buffer.size(), *offset);
        if (n >= 0) {
          *offset += n;
          return static_cast<std::size_t>(n);
        }
        if (errno != EINTR) throw std::runtime_error("temporary file: " + errno_text(errno));
      }
    };
  }

 private:
  base::unique_fd fd_;
};

struct server_settings {
  std::chrono::milliseconds timeout{std::chrono::minutes(5)};
  std::size_t max_connections = 20;
};

class lmtp_session;

/// The service: listeners, sessions, the pool, signals. All on one event
/// loop, one thread; the pool's threads only run the jobs they are given.
class lmtp_server {
 public:
  lmtp_server(const site& s, server_settings settings, logging::source_log& log, std::vector<listener> listeners)
      : site_(s), settings_(settings), log_(log), listeners_(std::move(listeners)), pool_(blocking_threads) {}
  ~lmtp_server() {
    // Jobs still running finish first; then the loop (declared last) goes,
    // with every session frame still queued in it (sessions let go here
    // end with those frames, while the loop is being shut down).
    pool_.join();
    sessions_.clear();
    for (const auto& l : listeners_)
      if (!l.unix_path.empty()) ::unlink(l.unix_path.c_str());
  }

  /// Serves until SIGTERM or SIGINT; returns the exit status.
  int run();

  const site& site_config() const { return site_; }
  const server_settings& settings() const { return settings_; }
  logging::source_log& log() { return log_; }
  asio::thread_pool& pool() { return pool_; }
  bool stopping() const { return stopping_; }

 private:
  awaitable<void> accept_loop(std::size_t index);
  void spawn_accept_loop(std::size_t index);
  void start_session(smtp::connection::socket_type socket);
  void stop(int signal);
  void session_ended(lmtp_session* s);

  const site& site_;
  server_settings settings_;
  logging::source_log& log_;
  std::vector<listener> listeners_;
  asio::thread_pool pool_;
  bool stopping_ = false;
  std::set<std::shared_ptr<lmtp_session>> sessions_;
  asio::io_context loop_{1};
  std::vector<std::unique_ptr<acceptor_type>> acceptors_;
  std::unique_ptr<base::watchdog> dog_;
  base::watchdog::id give_up_ = 0;
  std::vector<base::watchdog::id> resume_;  ///< per listener: accept again after a pause
  std::unique_ptr<asio::signal_set> signals_;
};

/// One LMTP conversation, from greeting to QUIT or a dropped connection.
class lmtp_session : public std::enable_shared_from_this<lmtp_session> {
 public:
  lmtp_session(lmtp_server& server, smtp::connection::socket_type socket)
      : server_(server),
        c_(std::make_unique<smtp::connection>(std::move(socket), server.settings().timeout)),
        peer_(c_->peer()),
        protocol_(limits(server)) {}

  awaitable<void> run();
  /// The server is stopping: a session waiting for a command ends now
  /// (421); one in a transaction ends after it.
  void stop() {
    if (waiting_for_command_) c_->cancel();
  }

 private:
  static smtp::lmtp_protocol::limits limits(const lmtp_server& server) {
    smtp::lmtp_protocol::limits l;
    l.server_name = server.site_config().server_name;
    l.max_message_size = server.site_config().max_message_size;
    l.usable_sender = [](std::string_view sender) { return spoolstore::valid_address(sender); };
    return l;
  }

  /// Does what a request asks, on the pool, and answers the protocol.
  awaitable<void> check_recipient();
  awaitable<void> store();
  /// DATA octets the protocol handed out: to the temporary file.
  void keep(bool final);
  /// Sends the replies written so far (at once when `now`, else when the
  /// client has sent nothing more: a pipelined batch gets one write).
  awaitable<void> answer(bool now);
  /// The last words: a 421 (or the QUIT reply), bounded by goodbye_limit.
  awaitable<void> goodbye();
  void log_transactions();

  lmtp_server& server_;
  std::unique_ptr<smtp::connection> c_;
  std::string peer_;
  smtp::lmtp_protocol protocol_;
  /// The recipients the site accepted, as the protocol's recipients().
  std::vector<spoolstore::recipient> accepted_;
  std::string message_;
  std::shared_ptr<spool_file> file_;
  bool waiting_for_command_ = false;
};

awaitable<void> lmtp_session::run() {
  try {
    c_->write(protocol_.greeting());
    co_await c_->flush();
    for (;;) {
      if (server_.stopping() && !protocol_.in_data()) {
        c_->write("421 4.3.2 " + server_.site_config().server_name + " Service shutting down\r\n");
        co_await goodbye();
        break;
      }
      const bool data = protocol_.in_data();
      std::string piece;
      waiting_for_command_ = !data;
      bool broken = false;
      try {
        piece = co_await c_->read_line(data ? smtp::max_data_piece : smtp::max_command_line);
      } catch (const smtp::network_error& e) {
        broken = true;
        if (!c_->timed_out() && !server_.stopping()) server_.log().info(peer_, ": ", e.what());
      }
      waiting_for_command_ = false;
      if (broken && c_->timed_out()) {
        server_.log().info(peer_, ": idle for ", server_.settings().timeout.count() / 1000, "s",
                           data ? " in DATA" : "", ": closing with 421");
        protocol_.timed_out();
        c_->write(protocol_.take_replies());
        co_await goodbye();
        break;
      }
      if (broken && server_.stopping()) continue;  // says 421 above
      if (broken || piece.empty()) break;          // the client left

      const auto request = protocol_.feed(piece, message_);
      if (protocol_.in_data()) keep(false);
      switch (request) {
        case smtp::lmtp_protocol::request::none:
          break;
        case smtp::lmtp_protocol::request::check_recipient:
          co_await check_recipient();
          break;
        case smtp::lmtp_protocol::request::store:
          keep(true);
          co_await store();
          break;
        case smtp::lmtp_protocol::request::close:
          c_->write(protocol_.take_replies());
          log_transactions();
          co_await goodbye();
          co_return;
      }
      if (protocol_.recipients().empty()) accepted_.clear();
      if (!protocol_.in_data()) {
        file_.reset();
        message_.clear();
      }
      log_transactions();
      co_await answer(false);
    }
  } catch (const std::exception& e) {
    server_.log().info(peer_, ": ", e.what());
  }
  protocol_.ended();
  log_transactions();
}

void lmtp_session::keep(bool final) {
  if (message_.size() < spool_chunk && !final) return;
  try {
    if (!file_) file_ = std::make_shared<spool_file>();
    file_->write(message_);
  } catch (const std::exception& e) {
    server_.log().error(peer_, ": ", e.what());
    protocol_.spool_failed();
  }
  message_.clear();
}

awaitable<void> lmtp_session::check_recipient() {
  // The host database is a file: read on the pool.
  const site* s = &server_.site_config();
  auto job = [s, address = protocol_.recipient_asked()]() { return check_customer_address(*s, address); };
  const address_check checked = co_await on_pool(server_.pool(), std::move(job));
  smtp::recipient_verdict verdict;
  if (checked.status == EX_OK) {
    accepted_.push_back(checked.recipient);
  } else {
    verdict.result = checked.status == EX_TEMPFAIL ? smtp::recipient_verdict::kind::unavailable
                                                   : smtp::recipient_verdict::kind::unknown;
    verdict.reason = checked.error;
  }
  protocol_.recipient_checked(verdict);
}

awaitable<void> lmtp_session::store() {
  if (!file_) file_ = std::make_shared<spool_file>();  // an empty message
  // accepted_ follows the protocol's recipients() one for one (run() keeps
  // them in step); at() would end the session on a mismatch.
  for (std::size_t i = 0; i < protocol_.recipients().size(); ++i) {
    // Each copy on the pool (it fsyncs): one recipient at a time, so the
    // replies come in order. A per-recipient Delivered-To: as Postfix's
    // flags=D, so copies for several users of one host differ (fetchmail
    // multidrop keeps them).
    const site* s = &server_.site_config();
    logging::source_log* log = &server_.log();
    auto job = [s, log, from = protocol_.sender(), r = accepted_.at(i), file = file_]() {
      smtp::store_outcome outcome;
      try {
        const auto copies =
            spoolstore::deliver(shuffled_punts(*s), from, {r}, file->reader("Delivered-To: " + r.address + "\r\n"), log);
        outcome.result = smtp::store_outcome::kind::stored;
        if (!copies.empty()) {
          outcome.uidl = copies.front().uidl;
          outcome.detail = "on " + copies.front().punt;
        }
      } catch (const spoolstore::delivery_error& e) {
        outcome.result = smtp::store_outcome::kind::failed;
        outcome.detail = e.what();
      } catch (const std::invalid_argument& e) {
        outcome.result = smtp::store_outcome::kind::refused;
        outcome.detail = e.what();
      } catch (const std::exception& e) {
        outcome.result = smtp::store_outcome::kind::failed;
        outcome.detail = e.what();
      }
      return outcome;
    };
    const smtp::store_outcome outcome = co_await on_pool(server_.pool(), std::move(job));
    if (outcome.result == smtp::store_outcome::kind::failed)
      server_.log().error(peer_, ": <", printable(accepted_[i].address, 100), ">: ", outcome.detail);
    protocol_.stored(outcome);
  }
}

awaitable<void> lmtp_session::answer(bool now) {
  c_->write(protocol_.take_replies());
  if (now || c_->buffered() == 0) co_await c_->flush();
}

awaitable<void> lmtp_session::goodbye() {
  c_->set_timeout(goodbye_limit);
  try {
    co_await c_->flush();
  } catch (const smtp::network_error&) {
  }
  c_->close();
}

void lmtp_session::log_transactions() {
  for (const smtp::lmtp_transaction& t : protocol_.take_transactions()) {
    std::string outcomes;
    bool deferred = false;
    for (const auto& r : t.recipients) {
      if (!outcomes.empty()) outcomes += "; ";
      outcomes.append(r.first).append(" ").append(r.second);
      deferred = deferred || r.second.starts_with("deferred");
    }
    std::string from = "<";
    from += printable(t.from, 200);
    from += '>';
    const logging::fields fields{logging::text_field("client", peer_), logging::text_field("from", from),
                                 logging::number_field("size", t.size),
                                 logging::text_field("data", t.data ? "complete" : "none"),
                                 logging::text_field("recipients", outcomes)};
    server_.log().write_event(deferred ? log_level::warning : log_level::info, "delivery", fields);
  }
}

int lmtp_server::run() {
  dog_ = std::make_unique<base::watchdog>(loop_.get_executor());
  // Stopping waits for the transactions in progress, but not for ever.
  give_up_ = dog_->add([this](base::watchdog::time_point) {
    log_.warning(sessions_.size(), " session(s) still open after ", settings_.timeout.count() / 1000,
                 "s; leaving them");
    loop_.stop();
  });
  for (std::size_t i = 0; i < listeners_.size(); ++i) {
    const int fd = listeners_[i].fd.get();
    sockaddr_storage storage{};
    socklen_t length = sizeof storage;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&storage), &length);
    int protocol = 0;
    socklen_t size = sizeof protocol;
    ::getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &protocol, &size);
    auto acceptor = std::make_unique<acceptor_type>(loop_);
    acceptor->assign(asio::generic::stream_protocol(storage.ss_family, protocol), listeners_[i].fd.release());
    acceptors_.push_back(std::move(acceptor));
    resume_.push_back(dog_->add([this, i](base::watchdog::time_point) { spawn_accept_loop(i); }));
  }
  signals_ = std::make_unique<asio::signal_set>(loop_, SIGTERM, SIGINT);
  signals_->async_wait([this](const boost::system::error_code& ec, int signal) {
    if (!ec) stop(signal);
  });
  for (std::size_t i = 0; i < acceptors_.size(); ++i) spawn_accept_loop(i);
  loop_.run();
  log_.info("stopped");
  return EX_OK;
}

void lmtp_server::spawn_accept_loop(std::size_t index) {
  if (!stopping_) asio::co_spawn(loop_, accept_loop(index), asio::detached);
}

awaitable<void> lmtp_server::accept_loop(std::size_t index) {
  acceptor_type& acceptor = *acceptors_[index];
  for (;;) {
    boost::system::error_code ec;
    smtp::connection::socket_type socket = co_await acceptor.async_accept(asio::redirect_error(asio::use_awaitable, ec));
    if (stopping_) co_return;
    if (ec) {
      if (ec == asio::error::operation_aborted) co_return;
      // Out of descriptors or the like: let the load pass, then go on.
      log_.warning("accept on ", listeners_[index].name, ": ", ec.message());
      dog_->set_after(resume_[index], accept_pause);
      co_return;
    }
    if (sessions_.size() >= settings_.max_connections) {
      boost::system::error_code ignored;
      socket.non_blocking(true, ignored);
      const std::string busy = "421 4.3.2 Too many connections, try again later\r\n";
      socket.write_some(asio::buffer(busy), ignored);
      log_.warning("refusing a connection: ", sessions_.size(), " open (--max-connections)");
      continue;
    }
    start_session(std::move(socket));
  }
}

void lmtp_server::start_session(smtp::connection::socket_type socket) {
  auto session = std::make_shared<lmtp_session>(*this, std::move(socket));
  sessions_.insert(session);
  asio::co_spawn(
      loop_,
      [this, session]() -> awaitable<void> {
        co_await session->run();
        session_ended(session.get());
      },
      asio::detached);
}

void lmtp_server::session_ended(lmtp_session* s) {
  for (auto it = sessions_.begin(); it != sessions_.end(); ++it)
    if (it->get() == s) {
      sessions_.erase(it);
      break;
    }
  if (stopping_ && sessions_.empty()) {
    dog_->stop();  // nothing left to wait for: the loop runs out
    boost::system::error_code ignored;
    signals_->cancel(ignored);
  }
}

void lmtp_server::stop(int signal) {
  log_.info(signal == SIGINT ? "SIGINT" : "SIGTERM", ": stopping; ", sessions_.size(),
            " session(s) finish their transaction");
  stopping_ = true;
  for (auto& acceptor : acceptors_) {
    boost::system::error_code ignored;
    acceptor->close(ignored);
  }
  for (const auto& session : sessions_) session->stop();
  if (sessions_.empty()) {
    dog_->stop();
    return;
  }
  dog_->set_after(give_up_, settings_.timeout);
}

/// --listen ADDR:PORT or unix:PATH.
std::optional<listen_spec> parse_listen(const std::string& text, std::string& error) {
  listen_spec out;
  out.text = text;
  if (text.starts_with("unix:")) {
    out.unix_path = text.substr(5);
    if (out.unix_path.empty()) {
      error = "unix:PATH needs a path";
      return std::nullopt;
    }
    return out;
  }
  try {
    out.tcp = base::parse_endpoint(text, {base::endpoint_host::address, false, true, 0});
  } catch (const std::invalid_argument& e) {
    error = e.what();
    return std::nullopt;
  }
  return out;
}

}  // namespace

int lmtp_main(tool& t, const std::vector<std::string>& words) {
  arguments args("lmtp",
                 "--listen ADDR:PORT|unix:PATH [--listen ...] [--socket-mode MODE] [--socket-owner USER]\n"
                 "                  [--socket-group GROUP] [--max-connections N] [--timeout DUR] [--quiet]",
                 "Serves LMTP (RFC 2033) until SIGTERM or SIGINT: the MTA's way into the spool, one reply\n"
                 "per recipient. Listens on numeric addresses ([::1]:24 for IPv6) and unix sockets, or on\n"
                 "the sockets systemd passes (socket activation, LISTEN_FDS); binds before it switches to\n"
                 "the config's user. Logs as sdpsd does (log_level, log_format): one line per transaction.\n"
                 "Exit status: 0 stopped by a signal; 69 cannot listen; 77 the user cannot write the\n"
                 "spools; 78 configuration; 64 usage.\n");
  std::vector<std::string> listen_text;
  std::string mode_text, owner_text, group_text, max_text, timeout_text;
  bool quiet = false;
  args.options()("listen", po::value(&listen_text)->value_name("ADDR:PORT|unix:PATH"),
                 "where to listen (repeatable); with socket activation, in addition")(
      "socket-mode", po::value(&mode_text)->value_name("MODE"), "unix sockets' mode, octal (default 0660)")(
      "socket-owner", po::value(&owner_text)->value_name("USER"),
      "unix sockets' owner (default: the config's user: when started as root)")(
      "socket-group", po::value(&group_text)->value_name("GROUP"),
      "unix sockets' group (the MTA's, e.g. postfix)")(
      "max-connections", po::value(&max_text)->value_name("N"), "connections served at once, 1 to 1000 (default 20)")(
      "timeout", po::value(&timeout_text)->value_name("DUR"),
      "the limit for each wait for the client (default 5m); then 421")(
      "quiet,q", po::bool_switch(&quiet), "log warnings and errors only");
  if (const auto status = args.parse(words)) return *status;

  std::vector<listen_spec> listen;
  for (const std::string& text : listen_text) {
    std::string error;
    auto spec = parse_listen(text, error);
    if (!spec) return args.usage_error("--listen " + error);
    listen.push_back(std::move(*spec));
  }
  server_settings settings;
  if (args.given("max-connections")) {
    std::size_t n = 0;
    const auto parsed = std::from_chars(max_text.data(), max_text.data() + max_text.size(), n);
    if (parsed.ec != std::errc() || parsed.ptr != max_text.data() + max_text.size() || n == 0 || n > 1000)
      return args.usage_error("--max-connections needs 1 to 1000");
    settings.max_connections = n;
  }
  if (args.given("timeout")) {
    const auto limit = base::parse_duration(timeout_text, base::zero_duration::refused);
    if (!limit)
      return args.usage_error(std::string("--timeout ").append(base::duration_expected(base::zero_duration::refused)));
    settings.timeout = *limit;
  }
  socket_rights rights;
  if (args.given("socket-mode")) {
    unsigned mode = 0;
    const auto parsed = std::from_chars(mode_text.data(), mode_text.data() + mode_text.size(), mode, 8);
    if (mode_text.empty() || parsed.ec != std::errc() || parsed.ptr != mode_text.data() + mode_text.size() ||
        mode > 0777)
      return args.usage_error("--socket-mode needs an octal mode, 0000 to 0777 (0660)");
    rights.mode = static_cast<mode_t>(mode);
  }
  if (args.given("socket-group")) {
    rights.group = base::find_group(group_text);
    if (!rights.group) return args.usage_error("--socket-group: no group " + quoted(group_text, 40));
  }
  if (args.given("socket-owner")) {
    const auto who = base::find_account(owner_text);
    if (!who) return args.usage_error("--socket-owner: no user " + quoted(owner_text, 40));
    rights.owner = who->uid;
  }

  // Taken first, before any thread: it edits the environment.
  std::vector<base::activated_socket> activated = base::take_activated_sockets();
  if (listen.empty() && activated.empty())
    return args.usage_error("--listen ADDR:PORT or unix:PATH is required (or sockets from systemd)");

  const site& s = t.site_as_started();
  if (s.punts.empty()) throw config_error(s.config_file.string() + " names no punts");
  logging::options log_options = s.log;
  log_options.ident = "sdps";
  if (quiet) log_options.minimum = log_level::warning;
  logging::source_log log(std::make_shared<logging::sink>(log_options), "sdps lmtp");

  if (!rights.owner && ::geteuid() == 0 && !s.user.empty()) {
    if (const auto who = base::find_account(s.user)) rights.owner = who->uid;
  }
  // Bound as started (root may take port 24 and chown the sockets), then
  // the config's user for everything else.
  std::vector<listener> listeners;
  for (const auto& a : activated) {
    listener l;
    l.fd.reset(a.fd);
    l.name = local_name(a.fd);
    log.info("listening on ", l.name, " (from systemd", a.name.empty() ? "" : ", " + a.name, ")");
    listeners.push_back(std::move(l));
  }
  for (const auto& spec : listen) {
    listener l = spec.tcp ? open_tcp(*spec.tcp) : open_unix(spec.unix_path, rights);
    log.info("listening on ", l.name);
    listeners.push_back(std::move(l));
  }
  if (t.become_user()) log.info("running as user ", s.user);
  t.check_writable(tool::writes::punts);

  ::signal(SIGPIPE, SIG_IGN);
  lmtp_server server(s, settings, log, std::move(listeners));
  return server.run();
}

}  // namespace sdps::admin
