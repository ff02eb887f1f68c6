#include "hostdb/pg_store.hpp"

#include "hostdb/table.hpp"

#include <libpq-fe.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>

#include <algorithm>
#include <cstdlib>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <ostream>
#include <random>
#include <thread>
#include <utility>

namespace sdps::hostdb {

namespace {

using clock = std::chrono::steady_clock;
using descriptor = asio::posix::stream_descriptor;

constexpr const char* lookup_statement = "sdps_lookup";
constexpr const char* lookup_sql =
    "SELECT dialup_hash, pop3_hash, array_to_string(dialup, ',') FROM sdps_hosts WHERE name = $1";
// Octet order, whatever the database's collation: the order of the file.
constexpr const char* list_sql =
    "SELECT name, dialup_hash, pop3_hash, array_to_string(dialup, ',') FROM sdps_hosts ORDER BY name COLLATE \"C\"";

struct result_free {
  void operator()(PGresult* r) const { PQclear(r); }
};
using result_ptr = std::unique_ptr<PGresult, result_free>;

// libpq's messages end in a newline and may hold several lines.
std::string one_line(const char* text) {
  std::string out = text ? text : "";
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
  std::replace(out.begin(), out.end(), '\n', ' ');
  return out.empty() ? "unknown error" : out;
}

std::string connection_error(const PGconn* c) { return c ? one_line(PQerrorMessage(c)) : "out of memory"; }

// The parameters every connection is made with: defaults first, then the
// admin's URI (expand_dbname), whose values win (libpq keeps the last).
struct conninfo {
  explicit conninfo(const std::string& uri, const char* application) {
    add("application_name", application);
    add("connect_timeout", "10");
    // A dead peer is noticed within a minute on TCP (ignored on a socket).
    add("keepalives_idle", "30");
    add("keepalives_interval", "10");
    add("keepalives_count", "3");
    add("dbname", uri.c_str());
    keys.push_back(nullptr);
    values.push_back(nullptr);
  }
  void add(const char* key, const char* value) {
    keys.push_back(key);
    values.push_back(value);
  }
  std::vector<const char*> keys, values;
};

// A row's columns (NULL as nullptr) into a record; nullopt and `why` when
// the row cannot be used. `why` names the field, never quotes a hash.
std::optional<host_record> decode_row(std::string name, const char* dialup_hash, const char* pop3_hash,
                                      const char* dialup, std::string& why) {
  host_record r;
  r.name = std::move(name);
  const struct {
    const char* text;
    std::string* field;
    const char* label;
  } hashes[] = {{dialup_hash, &r.dialup_hash, "dialup_hash"}, {pop3_hash, &r.pop3_hash, "pop3_hash"}};
  for (const auto& h : hashes) {
    if (!h.text || !*h.text) continue;
    if (!is_hash(h.text)) {
      why = std::string(h.label) + " is not an Argon2id hash string";
      return std::nullopt;
    }
    *h.field = h.text;
  }
  std::string_view rest = dialup ? dialup : "";
  while (!rest.empty()) {
    const auto comma = rest.find(',');
    const std::string_view item = rest.substr(0, comma);
    const auto p = prefix::parse(item);
    if (!p) {
      why = std::string("the dialup prefix '").append(item.substr(0, 80)).append("' is not an address or prefix");
      return std::nullopt;
    }
    r.dialup.push_back(*p);
    if (comma == std::string_view::npos) break;
    rest.remove_prefix(comma + 1);
  }
  return r;
}

// `{a,b}`: a cidr[] literal. Canonical prefixes need no quoting.
std::string array_literal(const std::vector<prefix>& dialup) {
  std::string out = "{";
  for (std::size_t i = 0; i < dialup.size(); ++i) {
    if (i) out += ',';
    out += dialup[i].to_string();
  }
  out += '}';
  return out;
}

const char* optional(const std::string& text) { return text.empty() ? nullptr : text.c_str(); }

// ---------------------------------------------------------------------------
// The server's store.

class pg_store final : public host_store {
 public:
  pg_store(std::string uri, store_options options)
      : uri_(std::move(uri)),
        options_(std::move(options)),
        log_(*options_.log),
        info_(uri_, "sdpsd"),
        work_(ctx_.get_executor()),
        random_(std::random_device{}()) {
    for (std::size_t i = 0; i < options_.pool_size; ++i) pool_.push_back(std::make_unique<link>(ctx_, i, false));
    listener_ = std::make_unique<link>(ctx_, options_.pool_size, true);
    for (auto& l : pool_) asio::co_spawn(ctx_, maintain(*l), asio::detached);
    asio::co_spawn(ctx_, maintain(*listener_), asio::detached);
    thread_ = std::thread([this] { ctx_.run(); });
  }

  ~pg_store() override {
    stopping_ = true;
    asio::post(ctx_, [this] {
      for (auto& l : pool_) shut(*l);
      shut(*listener_);
      for (asio::steady_timer* t : waiting_) t->cancel();
    });
    work_.reset();
    thread_.join();
  }

  pg_store(const pg_store&) = delete;
  pg_store& operator=(const pg_store&) = delete;

  awaitable<lookup_result> lookup(std::string host) override {
    if (!up_ || stopping_) co_return unavailable(down_reason());
    co_return co_await spawn_lookup(std::move(host));
  }

  // Every answer comes from the database as it is.
  awaitable<void> catch_up() override { co_return; }

  bool up() const override { return up_; }

  bool wait_ready(std::chrono::milliseconds limit) override {
    std::unique_lock guard(mutex_);
    ready_.wait_for(guard, limit, [this] { return decided_; });
    return up_;
  }

  // The hashes' costs would take a scan of the table: the auth module
  // uses the configured password_cost.
  std::optional<hash_cost> usual_cost() const override { return std::nullopt; }

  std::vector<std::string> check(const base::account*) override {
    {
      std::lock_guard guard(mutex_);
      if (!unprepared_.empty())
        return {"the host database " + uri_ + " " + unprepared_ +
                ": run  sdps -c CONFIG host init  (docs/hoststore.md), or check the URI's database"};
    }
    if (!up_) return {};  // down or unreachable: logged, and it may come back
    // One lookup as a login makes it: a role without SELECT on sdps_hosts
    // is refused here, not at the first login.
    asio::io_context io;
    std::optional<lookup_result> probe;
    asio::co_spawn(io, lookup("-"), [&probe](std::exception_ptr, lookup_result r) { probe = std::move(r); });
    io.run();
    if (probe && probe->status == lookup_status::unavailable && up_)
      return {"the host database " + uri_ + " refuses sdpsd's lookup (" + probe->detail +
              "): grant SELECT on sdps_hosts to sdpsd's role (docs/deployment.md)"};
    return {};
  }

  std::string where() const override { return uri_; }

  void reload() override {
    asio::post(ctx_, [this] {
      for (auto& l : pool_) l->retry.cancel();
      listener_->retry.cancel();
    });
  }

 private:
  // One libpq connection. Only ever touched on the store's thread.
  struct link {
    link(asio::io_context& ctx, std::size_t number, bool listens)
        : id(number), listener(listens), retry(ctx), lost(ctx) {}
    const std::size_t id;
    const bool listener;
    PGconn* conn = nullptr;
    std::unique_ptr<descriptor> socket;  // on PQsocket(conn); libpq owns the fd
    std::uint64_t generation = 0;        // bumped at each close: stale handlers see it
    bool ready = false;                  // connected, prepared, not lost
    bool busy = false;                   // a lookup is using it
    bool ever_listened = false;
    std::string error;                   // why it was lost, or could not connect
    asio::steady_timer retry;            // the backoff; reload() cuts it short
    asio::steady_timer lost;             // cancelled when the link breaks
  };

  static void notice(void* self, const char* message) {
    auto* store = static_cast<pg_store*>(self);
    store->log_.debug("host store ", store->uri_, ": the database says: ", one_line(message));
  }

  static lookup_result unavailable(std::string why) {
    lookup_result out;
    out.status = lookup_status::unavailable;
    out.detail = std::move(why);
    return out;
  }

  std::string down_reason() const {
    std::lock_guard guard(mutex_);
    return stopping_ ? "the host store is stopping" : "the host database is unavailable: " + down_reason_;
  }

  // Not a coroutine: the lookup runs on the store's thread and its result
  // resumes the caller on the caller's executor (docs/toolchain.md).
  awaitable<lookup_result> spawn_lookup(std::string host) {
    return asio::co_spawn(ctx_, run_lookup(std::move(host)), asio::use_awaitable);
  }

  // --- on the store's thread ------------------------------------------------

  awaitable<lookup_result> run_lookup(std::string host) {
    try {
      const auto deadline = clock::now() + options_.query_timeout;
      link* l = nullptr;
      for (;;) {
        if (stopping_) co_return unavailable("the host store is stopping");
        l = idle_link();
        if (l) break;
        if (!any_ready()) co_return unavailable(down_reason());
        if (waiting_.size() >= options_.max_waiting)
          co_return unavailable("too many lookups waiting for a database connection");
        asio::steady_timer turn(ctx_);
        turn.expires_at(deadline);
        waiting_.push_back(&turn);
        boost::system::error_code ec;
        co_await turn.async_wait(asio::redirect_error(asio::use_awaitable, ec));
        waiting_.erase(std::remove(waiting_.begin(), waiting_.end(), &turn), waiting_.end());
        if (!ec) co_return unavailable("no database connection was free within query_timeout");
      }
      l->busy = true;
      l->socket->cancel();  // ends the idle watch
      const std::uint64_t generation = l->generation;
      lookup_result out = co_await query(*l, host, deadline);
      if (l->generation == generation) {
        l->busy = false;
        if (l->ready) watch_idle(*l);
      }
      next_waiter();
      co_return out;
    } catch (const std::exception& e) {
      co_return unavailable(std::string("lookup failed: ") + e.what());
    }
  }

  link* idle_link() {
    for (auto& l : pool_)
      if (l->ready && !l->busy) return l.get();
    return nullptr;
  }

  bool any_ready() const {
    return std::any_of(pool_.begin(), pool_.end(), [](const auto& l) { return l->ready; });
  }

  void next_waiter() {
    if (!waiting_.empty()) waiting_.front()->cancel();
  }

  awaitable<lookup_result> query(link& l, const std::string& host, clock::time_point deadline) {
    const char* values[1] = {host.c_str()};
    const int lengths[1] = {static_cast<int>(host.size())};
    const int formats[1] = {0};
    if (!PQsendQueryPrepared(l.conn, lookup_statement, 1, values, lengths, formats, 0)) {
      const std::string why = connection_error(l.conn);
      broken(l, why);
      co_return unavailable(why);
    }
    std::string error;
    result_ptr result = co_await exchange(l, deadline, error);
    if (!result) {
      broken(l, error);
      co_return unavailable(error);
    }
    if (PQresultStatus(result.get()) != PGRES_TUPLES_OK) {
      const std::string why = std::string("the lookup failed: ").append(one_line(PQresultErrorMessage(result.get())));
      log_.error("host store ", uri_, ": ", why);
      if (PQstatus(l.conn) == CONNECTION_BAD) broken(l, why);
      co_return unavailable(why);
    }
    lookup_result out;
    if (PQntuples(result.get()) == 0) {
      out.status = lookup_status::unknown;
      co_return out;
    }
    const auto field = [&result](int column) {
      return PQgetisnull(result.get(), 0, column) ? nullptr : PQgetvalue(result.get(), 0, column);
    };
    std::string why;
    auto record = decode_row(host, field(0), field(1), field(2), why);
    if (!record) {
      out.status = lookup_status::malformed;
      out.detail = "host " + host + ": its row in sdps_hosts is malformed: " + why;
      log_.error("host store ", uri_, ": ", out.detail, "; refusing the host until the row is fixed");
      co_return out;
    }
    out.status = lookup_status::found;
    out.record = std::move(*record);
    co_return out;
  }

  // Waits until `l`'s socket is ready for `what`, or `deadline`. An error
  // (timed out, closed) when not ready.
  awaitable<std::string> wait(link& l, descriptor::wait_type what, clock::time_point deadline) {
    const std::uint64_t generation = l.generation;
    auto timed_out = std::make_shared<bool>(false);
    auto done = std::make_shared<bool>(false);
    asio::steady_timer timer(ctx_);
    timer.expires_at(deadline);
    timer.async_wait([&l, generation, timed_out, done](const boost::system::error_code& ec) {
      if (ec || *done || l.generation != generation || !l.socket) return;
      *timed_out = true;
      l.socket->cancel();
    });
    boost::system::error_code ec;
    co_await l.socket->async_wait(what, asio::redirect_error(asio::use_awaitable, ec));
    *done = true;
    timer.cancel();
    if (l.generation != generation || stopping_) co_return std::string("the connection was closed");
    if (*timed_out) co_return std::string("the database did not answer in time");
    if (ec) co_return ec.message();
    co_return std::string();
  }

  // Sends what was queued and reads the whole answer: its first result
  // (later ones are dropped). Null and `error` set when the connection
  // failed or the deadline passed.
  awaitable<result_ptr> exchange(link& l, clock::time_point deadline, std::string& error) {
    const std::uint64_t generation = l.generation;
    for (;;) {
      const int flushed = PQflush(l.conn);
      if (flushed == 0) break;
      if (flushed < 0) {
        error = connection_error(l.conn);
        co_return nullptr;
      }
      error = co_await wait(l, descriptor::wait_write, deadline);
      if (!error.empty()) co_return nullptr;
    }
    result_ptr first;
    for (;;) {
      while (PQisBusy(l.conn)) {
        error = co_await wait(l, descriptor::wait_read, deadline);
        if (!error.empty()) co_return nullptr;
        if (l.generation != generation) {
          error = "the connection was closed";
          co_return nullptr;
        }
        if (!PQconsumeInput(l.conn)) {
          error = connection_error(l.conn);
          co_return nullptr;
        }
      }
      PGresult* r = PQgetResult(l.conn);
      if (!r) break;
      if (!first)
        first.reset(r);
      else
        PQclear(r);
    }
    if (!first) error = connection_error(l.conn);
    co_return first;
  }

  // Connects `l` (and prepares the lookup, or LISTENs). Empty, or why not.
  awaitable<std::string> open(link& l) {
    l.conn = PQconnectStartParams(info_.keys.data(), info_.values.data(), 1);
    if (!l.conn || PQstatus(l.conn) == CONNECTION_BAD) co_return connection_error(l.conn);
    // The server's notices (a shutdown's FATAL among them) go to the log,
    // not to stderr as libpq would have it.
    PQsetNoticeProcessor(l.conn, &pg_store::notice, this);
    const auto deadline = clock::now() + options_.connect_timeout;
    PostgresPollingStatusType state = PGRES_POLLING_WRITING;
    while (state != PGRES_POLLING_OK) {
      if (state == PGRES_POLLING_FAILED) co_return connection_error(l.conn);
      const int fd = PQsocket(l.conn);
      if (fd < 0) co_return connection_error(l.conn);
      // A descriptor per wait: libpq may change sockets while it tries
      // the addresses of a host, and the fd number may come back.
      l.socket = std::make_unique<descriptor>(ctx_, fd);
      std::string error = co_await wait(l, state == PGRES_POLLING_READING ? descriptor::wait_read
                                                                          : descriptor::wait_write,
                                        deadline);
      if (l.socket) {
        l.socket->release();
        l.socket.reset();
      }
      if (!error.empty()) {
        if (error == "the database did not answer in time")
          error = std::string("no connection within ").append(std::to_string(options_.connect_timeout.count())).append(" ms");
        co_return error;
      }
      if (!l.conn) co_return std::string("the connection was closed");
      state = PQconnectPoll(l.conn);
    }
    if (PQsetnonblocking(l.conn, 1) != 0) co_return connection_error(l.conn);
    l.socket = std::make_unique<descriptor>(ctx_, PQsocket(l.conn));
    const auto ready_by = clock::now() + options_.connect_timeout;
    const bool sent = l.listener ? PQsendQuery(l.conn, "LISTEN sdps_hosts")
                                 : PQsendPrepare(l.conn, lookup_statement, lookup_sql, 1, nullptr);
    if (!sent) co_return connection_error(l.conn);
    std::string error;
    result_ptr result = co_await exchange(l, ready_by, error);
    if (!result) co_return error;
    if (PQresultStatus(result.get()) != PGRES_COMMAND_OK) {
      const std::string why = one_line(PQresultErrorMessage(result.get()));
      if (!l.listener) {
        // Connected, but the database is not one sdpsd can use: not a
        // passing fault (check() reports it).
        std::lock_guard guard(mutex_);
        unprepared_ = "has no lookup to prepare (" + why + ")";
      }
      co_return std::string(l.listener ? "LISTEN failed: "
                                       : "cannot prepare the lookup (has `sdps host init` created the schema?): ")
          .append(why);
    }
    if (!l.listener) {
      std::lock_guard guard(mutex_);
      unprepared_.clear();
    }
    co_return std::string();
  }

  // Keeps `l` connected for as long as the store runs: connect, serve
  // until lost, back off, again.
  awaitable<void> maintain(link& l) {
    auto backoff = options_.retry_min;
    while (!stopping_) {
      std::string error = co_await open(l);
      if (error.empty() && !stopping_) {
        backoff = options_.retry_min;
        if (l.listener) {
          listening(l);
          error = co_await listen(l);
        } else {
          l.ready = true;
          l.error.clear();
          pool_changed();
          watch_idle(l);
          l.lost.expires_at(clock::time_point::max());
          boost::system::error_code ec;
          co_await l.lost.async_wait(asio::redirect_error(asio::use_awaitable, ec));
          error = l.error;
        }
      }
      close(l);
      if (stopping_) break;
      l.error = error;
      log_.debug("host store ", uri_, ": connection ", l.id, ": ", error);
      if (l.listener)
        not_listening(l);
      else
        pool_changed();
      // Jitter, so that N front ends do not reconnect in step.
      std::uniform_int_distribution<long> spread(backoff.count() * 3 / 4, backoff.count() * 5 / 4);
      l.retry.expires_after(std::chrono::milliseconds(spread(random_)));
      boost::system::error_code ec;
      co_await l.retry.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      backoff = std::min(backoff * 2, options_.retry_max);
    }
  }

  // While a pool link is idle, reads what the server sends unasked: a
  // shutdown's FATAL, or the end of the connection, so that a database
  // gone is noticed before the next lookup finds it.
  void watch_idle(link& l) {
    const std::uint64_t generation = l.generation;
    l.socket->async_wait(descriptor::wait_read, [this, &l, generation](const boost::system::error_code& ec) {
      if (ec || l.generation != generation || l.busy || !l.ready) return;
      if (!PQconsumeInput(l.conn) || PQstatus(l.conn) == CONNECTION_BAD) {
        broken(l, connection_error(l.conn));
        return;
      }
      while (!PQisBusy(l.conn)) {
        PGresult* stray = PQgetResult(l.conn);
        if (!stray) break;
        PQclear(stray);
      }
      watch_idle(l);
    });
  }

  void broken(link& l, const std::string& why) {
    if (!l.ready) return;
    l.ready = false;
    l.error = why;
    l.lost.cancel();
    pool_changed();
  }

  // Reads notifications until the connection fails; returns why.
  awaitable<std::string> listen(link& l) {
    for (;;) {
      boost::system::error_code ec;
      co_await l.socket->async_wait(descriptor::wait_read, asio::redirect_error(asio::use_awaitable, ec));
      if (stopping_) co_return std::string("stopping");
      if (ec) co_return ec.message();
      if (!PQconsumeInput(l.conn)) co_return connection_error(l.conn);
      while (PGnotify* n = PQnotifies(l.conn)) {
        host_change change;
        change.host = n->extra ? n->extra : "";
        change.every = change.host.empty();
        PQfreemem(n);
        if (options_.changed) options_.changed(change);
      }
      while (!PQisBusy(l.conn)) {
        PGresult* stray = PQgetResult(l.conn);
        if (!stray) break;
        PQclear(stray);
      }
      if (PQstatus(l.conn) == CONNECTION_BAD) co_return connection_error(l.conn);
    }
  }

  void listening(link& l) {
    log_.info("host store ", uri_, l.ever_listened ? ": listening for changes again" : ": listening for changes");
    l.ever_listened = true;
    listener_up_ = true;
    // Whatever changed while nobody listened was not announced (at start
    // too: the pool may have answered lookups before the listener was up).
    if (options_.changed) options_.changed(host_change{{}, true});
  }

  void not_listening(link& l) {
    if (listener_up_)
      log_.warning("host store ", uri_, ": change notifications lost (", l.error,
                   "); cached logins may outlive a change until they come back");
    listener_up_ = false;
  }

  // Logs and reports each change of the pool's state once.
  void pool_changed() {
    const auto ready = static_cast<std::size_t>(
        std::count_if(pool_.begin(), pool_.end(), [](const auto& l) { return l->ready; }));
    const bool now_up = ready > 0;
    if (!now_up) {
      // The first link to fail says why; the others fail alike.
      const auto failed = std::find_if(pool_.begin(), pool_.end(), [](const auto& l) { return !l->error.empty(); });
      // Decided while all links have tried at least once, so that the
      // first state logged at start is not "down" for a pool still connecting.
      const bool all_tried =
          std::all_of(pool_.begin(), pool_.end(), [](const auto& l) { return !l->error.empty() || l->ready; });
      if (!all_tried && state_ == state_unknown) return;
      std::lock_guard guard(mutex_);
      down_reason_ = failed == pool_.end() ? std::string("not connected") : (*failed)->error;
    }
    const int state = now_up ? state_up : state_down;
    if (state == state_) return;
    state_ = state;
    {
      std::lock_guard guard(mutex_);
      up_ = now_up;
      decided_ = true;
    }
    ready_.notify_all();
    if (now_up) {
      log_.info("host store ", uri_, ": up (", ready, " of ", pool_.size(), " connection(s))");
      // Lookups waiting since the pool was down can go on.
      for (asio::steady_timer* t : waiting_) t->cancel();
    } else {
      log_.error("host store ", uri_, ": down: ", down_reason(), "; logins answer [SYS/TEMP] until it is back");
      // Nobody will free a link: the waiting lookups answer now.
      for (asio::steady_timer* t : waiting_) t->cancel();
    }
    if (options_.health) options_.health(now_up);
  }

  void close(link& l) {
    ++l.generation;
    l.ready = false;
    l.busy = false;
    if (l.socket) {
      l.socket->release();  // cancels its waits; libpq closes the fd
      l.socket.reset();
    }
    if (l.conn) PQfinish(l.conn);
    l.conn = nullptr;
  }

  void shut(link& l) {
    l.retry.cancel();
    l.lost.cancel();
    close(l);
  }

  enum { state_unknown = -1, state_down = 0, state_up = 1 };

  const std::string uri_;
  const store_options options_;
  logger& log_;
  const conninfo info_;

  asio::io_context ctx_;
  asio::executor_work_guard<asio::io_context::executor_type> work_;
  std::vector<std::unique_ptr<link>> pool_;
  std::unique_ptr<link> listener_;
  std::deque<asio::steady_timer*> waiting_;  // lookups waiting for a free link
  std::minstd_rand random_;
  int state_ = state_unknown;
  bool listener_up_ = false;

  std::atomic<bool> up_{false};
  std::atomic<bool> stopping_{false};
  mutable std::mutex mutex_;  // guards down_reason_, unprepared_ and decided_
  std::condition_variable ready_;  // decided_ became true
  std::string down_reason_ = "not connected yet";
  std::string unprepared_;  // why the last connection could not prepare the lookup
  bool decided_ = false;    // the first state (up or down) is known
  std::thread thread_;
};

// ---------------------------------------------------------------------------
// The admin tool's store.

class pg_admin final : public host_admin {
 public:
  explicit pg_admin(std::string uri) : uri_(std::move(uri)) {
    const conninfo info(uri_, "sdps");
    conn_ = PQconnectdbParams(info.keys.data(), info.values.data(), 1);
    if (!conn_ || PQstatus(conn_) != CONNECTION_OK) {
      const std::string why = connection_error(conn_);
      if (conn_) PQfinish(conn_);
      conn_ = nullptr;
      throw store_unavailable("cannot connect to the host database " + uri_ + ": " + why);
    }
    // Notices ("trigger ... does not exist, skipping" when init runs) are
    // not for the admin; errors come back as results.
    PQsetNoticeProcessor(conn_, [](void*, const char*) {}, nullptr);
  }
  ~pg_admin() override {
    if (conn_) PQfinish(conn_);
  }
  pg_admin(const pg_admin&) = delete;
  pg_admin& operator=(const pg_admin&) = delete;

  std::string where() const override { return uri_; }

  std::string init() override {
    result_ptr before = run("SELECT to_regclass('sdps_hosts') IS NOT NULL", {}, PGRES_TUPLES_OK, "init");
    const bool existed = std::string_view(PQgetvalue(before.get(), 0, 0)) == "t";
    const std::string sql(schema_sql());
    result_ptr done(PQexec(conn_, sql.c_str()));
    // A failed statement leaves the script's transaction open and aborted.
    if (PQresultStatus(done.get()) != PGRES_COMMAND_OK) PQclear(PQexec(conn_, "ROLLBACK"));
    check(done, PGRES_COMMAND_OK, "init");
    return existed ? "the host store's schema in " + uri_ + " was there already; its functions and triggers are up to date"
                   : "created the host store's schema in " + uri_ + " (table sdps_hosts and its triggers)";
  }

  std::optional<host_record> find(std::string_view name) override {
    const std::string host(name);
    result_ptr r = run(lookup_sql, {host.c_str()}, PGRES_TUPLES_OK, "find");
    if (PQntuples(r.get()) == 0) return std::nullopt;
    std::string why;
    auto record = decode_row(host, field(r, 0, 0), field(r, 0, 1), field(r, 0, 2), why);
    if (!record) throw malformed_row(malformed(host, why));
    return record;
  }

  std::vector<problem> list(const std::function<void(const host_record&)>& each) override {
    std::vector<problem> problems;
    stream(list_sql, [&](const PGresult* r) {
      std::string why;
      const std::string name = PQgetvalue(r, 0, 0);
      auto record = decode_row(name, field(r, 0, 1), field(r, 0, 2), field(r, 0, 3), why);
      if (record)
        each(*record);
      else
        problems.push_back({0, malformed(name, why)});
    });
    return problems;
  }

  bool add(const host_record& record) override {
    const std::string dialup = array_literal(record.dialup);
    result_ptr r = run(
        "INSERT INTO sdps_hosts (name, dialup, dialup_hash, pop3_hash) VALUES ($1, $2::cidr[], $3, $4) "
        "ON CONFLICT (name) DO NOTHING",
        {record.name.c_str(), dialup.c_str(), optional(record.dialup_hash), optional(record.pop3_hash)},
        PGRES_COMMAND_OK, "add " + record.name);
    return std::string_view(PQcmdTuples(r.get())) == "1";
  }

  edit_outcome edit(std::string_view name, const std::function<bool(host_record&)>& change) override {
    const std::string host(name);
    transaction t(*this);
    result_ptr r = run(std::string(lookup_sql) + " FOR UPDATE", {host.c_str()}, PGRES_TUPLES_OK, "edit " + host);
    if (PQntuples(r.get()) == 0) return edit_outcome::no_host;
    std::string why;
    auto record = decode_row(host, field(r, 0, 0), field(r, 0, 1), field(r, 0, 2), why);
    if (!record) throw malformed_row(malformed(host, why));
    if (!change(*record)) return edit_outcome::unchanged;
    const std::string dialup = array_literal(record->dialup);
    run("UPDATE sdps_hosts SET dialup = $2::cidr[], dialup_hash = $3, pop3_hash = $4 WHERE name = $1",
        {host.c_str(), dialup.c_str(), optional(record->dialup_hash), optional(record->pop3_hash)}, PGRES_COMMAND_OK,
        "edit " + host);
    t.commit();
    return edit_outcome::changed;
  }

  bool remove(std::string_view name) override {
    const std::string host(name);
    result_ptr r = run("DELETE FROM sdps_hosts WHERE name = $1", {host.c_str()}, PGRES_COMMAND_OK, "delete " + host);
    return std::string_view(PQcmdTuples(r.get())) == "1";
  }

  import_summary import_file(const std::filesystem::path& file) override {
    const host_table incoming = host_table::read(file);
    if (!incoming.stamp().exists)
      throw std::system_error(ENOENT, std::generic_category(), "cannot open " + file.string());
    if (!incoming.problems().empty()) throw malformed_file(file, incoming.problems());
    import_summary out;
    out.hosts = incoming.size();
    transaction t(*this);
    run("CREATE TEMP TABLE sdps_import (name text NOT NULL, dialup cidr[] NOT NULL, dialup_hash text, "
        "pop3_hash text) ON COMMIT DROP",
        {}, PGRES_COMMAND_OK, "import");
    copy_in("COPY sdps_import (name, dialup, dialup_hash, pop3_hash) FROM STDIN", incoming);
    run("ANALYZE sdps_import", {}, PGRES_COMMAND_OK, "import");
    out.removed = count(run("DELETE FROM sdps_hosts h WHERE NOT EXISTS "
                            "(SELECT 1 FROM sdps_import i WHERE i.name = h.name)",
                            {}, PGRES_COMMAND_OK, "import"));
    out.changed = count(run("UPDATE sdps_hosts h SET dialup = i.dialup, dialup_hash = i.dialup_hash, "
                            "pop3_hash = i.pop3_hash FROM sdps_import i WHERE h.name = i.name AND "
                            "(h.dialup, h.dialup_hash, h.pop3_hash) IS DISTINCT FROM "
                            "(i.dialup, i.dialup_hash, i.pop3_hash)",
                            {}, PGRES_COMMAND_OK, "import"));
    out.added = count(run("INSERT INTO sdps_hosts (name, dialup, dialup_hash, pop3_hash) "
                          "SELECT i.name, i.dialup, i.dialup_hash, i.pop3_hash FROM sdps_import i "
                          "WHERE NOT EXISTS (SELECT 1 FROM sdps_hosts h WHERE h.name = i.name)",
                          {}, PGRES_COMMAND_OK, "import"));
    t.commit();
    return out;
  }

  std::vector<problem> export_to(std::ostream& out) override {
    std::vector<problem> problems;
    std::string text(format_header());
    stream(list_sql, [&](const PGresult* r) {
      std::string why;
      const std::string name = PQgetvalue(r, 0, 0);
      auto record = decode_row(name, field(r, 0, 1), field(r, 0, 2), field(r, 0, 3), why);
      if (!record) {
        problems.push_back({0, malformed(name, why)});
        return;
      }
      append_line(text, *record);
      if (text.size() >= (1u << 20)) {
        out << text;
        text.clear();
      }
    });
    out << text;
    out.flush();
    return problems;
  }

 private:
  // BEGIN now, ROLLBACK unless commit() was called.
  class transaction {
   public:
    explicit transaction(pg_admin& a) : admin_(a) { admin_.run("BEGIN", {}, PGRES_COMMAND_OK, "begin"); }
    ~transaction() {
      if (!done_) PQclear(PQexec(admin_.conn_, "ROLLBACK"));
    }
    transaction(const transaction&) = delete;
    transaction& operator=(const transaction&) = delete;
    void commit() {
      admin_.run("COMMIT", {}, PGRES_COMMAND_OK, "commit");
      done_ = true;
    }

   private:
    pg_admin& admin_;
    bool done_ = false;
  };

  static const char* field(const result_ptr& r, int row, int column) { return field(r.get(), row, column); }
  static const char* field(const PGresult* r, int row, int column) {
    return PQgetisnull(r, row, column) ? nullptr : PQgetvalue(r, row, column);
  }

  static std::size_t count(const result_ptr& r) { return std::strtoull(PQcmdTuples(r.get()), nullptr, 10); }

  std::string malformed(const std::string& host, const std::string& why) const {
    return std::string("host ").append(printable(host, 80)) + ": its row in sdps_hosts (" + uri_ + ") is malformed: " + why;
  }

  // Throws store_unavailable when the connection is gone, store_error for
  // any other failure.
  void check(const result_ptr& r, ExecStatusType wanted, const std::string& what) {
    if (r && PQresultStatus(r.get()) == wanted) return;
    const std::string why = r ? one_line(PQresultErrorMessage(r.get())) : connection_error(conn_);
    if (PQstatus(conn_) == CONNECTION_BAD) throw store_unavailable("the host database " + uri_ + " is unavailable (" + what + "): " + why);
    throw store_error("the host database " + uri_ + " refused " + what + ": " + why);
  }

  result_ptr run(const std::string& sql, const std::vector<const char*>& params, ExecStatusType wanted,
                 const std::string& what) {
    result_ptr r(PQexecParams(conn_, sql.c_str(), static_cast<int>(params.size()), nullptr, params.data(), nullptr,
                              nullptr, 0));
    check(r, wanted, what);
    return r;
  }

  // Runs `sql` row by row (libpq's single-row mode): a million hosts
  // never sit in memory at once.
  void stream(const char* sql, const std::function<void(const PGresult*)>& row) {
    if (!PQsendQuery(conn_, sql) || !PQsetSingleRowMode(conn_)) check(nullptr, PGRES_TUPLES_OK, "list");
    std::string failure;
    bool lost = false;
    while (PGresult* raw = PQgetResult(conn_)) {
      result_ptr r(raw);
      const auto status = PQresultStatus(raw);
      if (status == PGRES_SINGLE_TUPLE) {
        if (failure.empty()) row(raw);
      } else if (status != PGRES_TUPLES_OK && failure.empty()) {
        failure = one_line(PQresultErrorMessage(raw));
        lost = PQstatus(conn_) == CONNECTION_BAD;
      }
    }
    if (failure.empty()) return;
    if (lost) throw store_unavailable("the host database " + uri_ + " is unavailable (list): " + failure);
    throw store_error("the host database " + uri_ + " refused list: " + failure);
  }

  void copy_in(const char* sql, const host_table& table) {
    result_ptr started(PQexec(conn_, sql));
    check(started, PGRES_COPY_IN, "import");
    std::string chunk;
    bool ok = true;
    const auto send = [&] {
      if (ok && !chunk.empty()) ok = PQputCopyData(conn_, chunk.data(), static_cast<int>(chunk.size())) == 1;
      chunk.clear();
    };
    // Names, prefixes and hashes hold no tab, newline or backslash: no
    // COPY escaping is needed.
    table.for_each([&](const host_record& r) {
      chunk += r.name;
      chunk += '\t';
      chunk += array_literal(r.dialup);
      chunk += '\t';
      chunk += r.dialup_hash.empty() ? "\\N" : r.dialup_hash;
      chunk += '\t';
      chunk += r.pop3_hash.empty() ? "\\N" : r.pop3_hash;
      chunk += '\n';
      if (chunk.size() >= (1u << 20)) send();
    });
    send();
    if (PQputCopyEnd(conn_, ok ? nullptr : "the import was cut short") != 1) check(nullptr, PGRES_COMMAND_OK, "import");
    result_ptr finished(PQgetResult(conn_));
    while (PGresult* extra = PQgetResult(conn_)) PQclear(extra);
    check(finished, PGRES_COMMAND_OK, "import");
  }

  const std::string uri_;
  PGconn* conn_ = nullptr;
};

}  // namespace

std::unique_ptr<host_store> open_pg_store(const std::string& uri, store_options options) {
  if (!options.log) throw std::invalid_argument("host store: no logger");
  if (options.pool_size < 1 || options.pool_size > 64)
    throw std::invalid_argument("host store: the connection pool must have 1 to 64 connections");
  if (options.query_timeout.count() <= 0 || options.connect_timeout.count() <= 0 || options.retry_min.count() <= 0 ||
      options.retry_max < options.retry_min)
    throw std::invalid_argument("host store: timeouts must be positive and retry_max at least retry_min");
  return std::make_unique<pg_store>(uri, std::move(options));
}

std::unique_ptr<host_admin> open_pg_admin(const std::string& uri) { return std::make_unique<pg_admin>(uri); }

}  // namespace sdps::hostdb
