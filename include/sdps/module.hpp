#pragma once
/// @file
/// The module interface: what one YAML entry of the chain is, what it is
/// given at start-up, and how it answers commands and session events.
///
/// Life cycle, all on the main thread before the first client connects:
///  1. the loader dlopens the module's .so and checks its ABI;
///  2. `create(config)` builds the instance from its settings (it may call
///     config.provide(), config.require() and config.terminal());
///  3. the loader checks unread settings, declared requirements and
///     terminal placement, and the order of the chain (docs/modules.md,
///     "Ordering");
///  4. `start(registry)` runs on every instance in chain order, so modules
///     can find the services of the others;
///  5. `check()` runs on every instance (sdpsd --check, and at start-up),
///     as the configured `user:`.
/// SIGHUP later calls reload() (external files) and, for an instance whose
/// settings changed in the file, reconfigure().
/// Afterwards sdpsd serves on several event loops at once (`threads:`, one
/// thread each). A session belongs to one loop for its whole life, and
/// every on_command(), on_event() and capabilities() call for it runs on
/// that loop's thread: session::get_executor(). One call at a time per
/// session: no call for a session starts before the previous one has
/// returned, even one the core stopped waiting for (see
/// module::on_command()). But one module instance serves every loop:
/// calls for different sessions run on different threads at the same
/// time, so whatever an instance shares across sessions (tables, caches,
/// files it re-reads) must be thread-safe: immutable after start(), or
/// behind a mutex, or atomic. State kept in a session slot needs nothing.
/// docs/modules.md, "Threads", says more.

#include <sdps/abi.hpp>
#include <sdps/asio.hpp>
#include <sdps/log.hpp>
#include <sdps/login.hpp>
#include <sdps/metrics.hpp>
#include <sdps/response.hpp>
#include <sdps/session.hpp>
#include <sdps/settings.hpp>

#include <algorithm>
#include <array>
#include <chrono>
#include <functional>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sdps {

/// The words of a command's argument, split on runs of spaces: a small
/// sequence that holds the first eight without a heap allocation (POP3's
/// commands take two at most) and counts them all, so a check such as
/// `args.size() != 1` sees every word.
class words {
 public:
  static constexpr std::size_t kept = 8;
  /// How many words the argument has (all of them, also beyond kept).
  std::size_t size() const { return count_; }
  bool empty() const { return count_ == 0; }
  /// Word `i` (i < size() and i < kept).
  std::string_view operator[](std::size_t i) const { return items_[i]; }
  std::string_view front() const { return items_[0]; }
  /// The words kept, in order.
  const std::string_view* begin() const { return items_.data(); }
  const std::string_view* end() const { return items_.data() + std::min(count_, kept); }
  void push_back(std::string_view word) {
    if (count_ < kept) items_[count_] = word;
    ++count_;
  }

 private:
  std::array<std::string_view, kept> items_{};
  std::size_t count_ = 0;
};

/// One client command line, split into verb and argument.
struct command {
  std::string name;      ///< the verb in upper case: "RETR", "*ENV"
  std::string argument;  ///< everything after the first space, verbatim (spaces kept)

  /// The argument split on runs of spaces, for commands with numeric arguments.
  sdps::words args() const {
    sdps::words out;
    std::string_view rest = argument;
    while (!rest.empty()) {
      const auto start = rest.find_first_not_of(' ');
      if (start == std::string_view::npos) break;
      rest.remove_prefix(start);
      const auto end = rest.find(' ');
      out.push_back(rest.substr(0, end));
      rest.remove_prefix(end == std::string_view::npos ? rest.size() : end);
    }
    return out;
  }
};

/// Session events, delivered in chain order to the instances that name
/// them in module::events().
enum class event {
  /// A client connected. Answering with a response replaces the greeting;
  /// a negative answer is sent and the connection closed (site policy).
  connect,
  /// The session entered TRANSACTION (after the login's +OK was sent).
  authenticated,
  /// The session entered UPDATE (the client sent QUIT in TRANSACTION) and
  /// the QUIT handler has done its work; fired before the QUIT reply is
  /// sent, so resources released here (locks) are free when the client
  /// hears the reply.
  quit,
  /// The connection is over, whatever the reason. Answers are ignored.
  disconnect,
  /// The login ended and the session goes on in AUTHORIZATION (a back
  /// end's link handed back to its front end's pool: session::end_login()).
  /// Fired before the reply of the command that ended it: give back what
  /// the login held (locks), as at quit. Answers are ignored.
  logout,
};

const char* to_string(event e);

/// A set of events: what module::events() returns.
class event_set {
 public:
  /// The empty set.
  constexpr event_set() = default;
  constexpr event_set(std::initializer_list<event> events) {
    for (const event e : events) bits_ |= bit(e);
  }
  /// Every event, also any added to `event` later.
  static constexpr event_set all() {
    event_set s;
    s.bits_ = ~0u;
    return s;
  }
  constexpr bool contains(event e) const { return (bits_ & bit(e)) != 0; }

 private:
  static constexpr unsigned bit(event e) { return 1u << static_cast<unsigned>(e); }
  unsigned bits_ = 0;
};

/// A module's answer to a command or event: pass it on to the next module,
/// answer it (which ends the chain), or hand the core a login. "Stopping"
/// a command is answering it with -ERR. The single return value is what
/// makes answering twice, or not at all, impossible.
class verdict {
 public:
  /// Same as next().
  verdict() = default;
  /// Not mine: let the next module in the chain see it.
  static verdict next() { return verdict{}; }
  /// Mine: send this reply; later modules do not see the command.
  static verdict answer(response r) {
    verdict v;
    v.reply_ = std::move(r);
    return v;
  }
  /// Mine, and it is a login (PASS, AUTH PLAIN): the core runs `c`
  /// through the login stages (sdps/login.hpp) and answers the client with
  /// their outcome. Valid in AUTHORIZATION only.
  static verdict login(credentials c) {
    verdict v;
    v.login_.emplace(std::move(c));
    return v;
  }
  bool answered() const { return reply_.has_value(); }
  response& reply() { return *reply_; }
  bool is_login() const { return login_.has_value(); }
  credentials& login_credentials() { return *login_; }

 private:
  std::optional<response> reply_;
  std::optional<credentials> login_;
};

/// A command a module takes part in, and the states in which it is valid:
/// `{"XCOUNT", pop3_state::transaction}`. The core refuses a command in a
/// state that no module declared it for, and answers -ERR to a verb nobody
/// declared. The name "*" asks to see every command (a logging module);
/// it does not make any verb valid.
struct command_spec {
  std::string name;
  state_mask states;
};

/// Services one module offers the others, found by instance name or kind.
/// A service type T declares `static constexpr const char* service_id`.
class registry {
 public:
  struct entry {
    std::string instance;  ///< the providing instance's name
    std::string service;   ///< T::service_id
    void* object;          ///< a T*
    std::size_t position;  ///< the instance's index in the chain
  };

  /// One instance of the chain, as start() may look at it.
  struct instance_info {
    std::string instance;  ///< its name
    std::string module;    ///< its module (the .so's name)
    std::size_t position;  ///< its index in the chain
    stage_set stages;      ///< the login stages it takes part in
  };

  virtual ~registry() = default;
  virtual const std::vector<entry>& entries() const = 0;
  /// The whole chain, in order.
  virtual const std::vector<instance_info>& instances() const = 0;
  /// The instances taking part in login stage `stage`, in chain order.
  std::vector<const instance_info*> in_stage(login_stage stage) const {
    std::vector<const instance_info*> out;
    for (const instance_info& i : instances())
      if (i.stages.contains(stage)) out.push_back(&i);
    return out;
  }

  /// The service T of the named instance, or null.
  template <typename T>
  T* find(std::string_view instance) const {
    for (const entry& e : entries())
      if (e.instance == instance && e.service == T::service_id) return static_cast<T*>(e.object);
    return nullptr;
  }
  /// Every provider of T, in chain order.
  template <typename T>
  std::vector<T*> all() const {
    std::vector<T*> out;
    for (const entry& e : entries())
      if (e.service == T::service_id) out.push_back(static_cast<T*>(e.object));
    return out;
  }
  /// Every provider of T with its instance name, in chain order.
  template <typename T>
  std::vector<std::pair<std::string, T*>> named() const {
    std::vector<std::pair<std::string, T*>> out;
    for (const entry& e : entries())
      if (e.service == T::service_id) out.emplace_back(e.instance, static_cast<T*>(e.object));
    return out;
  }
  /// The nearest provider of T before chain position `position`, or null.
  template <typename T>
  T* nearest_before(std::size_t position) const {
    T* found = nullptr;
    for (const entry& e : entries())
      if (e.service == T::service_id && e.position < position) found = static_cast<T*>(e.object);
    return found;
  }
};

/// Process-wide facilities, alive for the life of the server.
class server_context {
 public:
  virtual ~server_context() = default;
  /// The event loop of the calling thread when that is one of sdpsd's
  /// loops, else the first loop. A session's own work (timers, sockets,
  /// anything that resumes it) belongs on session::get_executor() instead.
  virtual executor get_executor() = 0;
  /// Threads for blocking or CPU-heavy work (password hashing, big directory
  /// scans), shared by every event loop. Use run_blocking() rather than
  /// posting by hand.
  virtual asio::thread_pool& blocking_pool() = 0;
  /// `customer_domain` from the config, without a leading dot ("demon.co.uk").
  virtual const std::string& customer_domain() const = 0;
  /// This server's name, for banners and synthesised Message-IDs.
  virtual const std::string& server_name() const = 0;
  /// The config file's top level, for the site sections that several
  /// modules and the admin tool share: `hosts` (the host database),
  /// `punts` (punt name -> spool folder), `password_cost`,
  /// `max_message_size`. Paths resolve against the config file's folder.
  /// A module may read other top-level keys of its own (auth's per-address
  /// limits): reading a key declares it, and sdpsd refuses a top-level key
  /// that neither the core nor any module of the chain reads. Read it in
  /// create() or start() only.
  virtual const settings& site() const = 0;
  virtual logger& log() = 0;
  /// Where the module's counters go (see sdps/metrics.hpp); sdpsd serves
  /// them on `metrics_listen:`. Declare your families (metrics::declare)
  /// in create(), so that a scrape shows them from the start. The default
  /// drops everything.
  virtual sdps::metrics& metrics() { return null_metrics(); }
};

/// What create() receives for one YAML entry of the chain.
class module_config {
 public:
  virtual ~module_config() = default;
  /// The instance name: the entry's `name:`, or the module name.
  virtual const std::string& instance() const = 0;
  /// The entry's settings (every key besides module, name and timeout).
  virtual settings& options() = 0;
  virtual server_context& server() = 0;
  /// A logger whose lines carry the instance name.
  virtual logger& log() = 0;
  /// This instance's position in the chain (0 = first).
  virtual std::size_t position() const = 0;

  /// Offers service T (implemented by `object`, usually `this`) to the others.
  template <typename T>
  void provide(T* object) { provide_service(T::service_id, object); }
  /// Refuses to start unless some instance provides T (earlier in the
  /// chain when `earlier` is true).
  template <typename T>
  void require(bool earlier = false) { require_service(T::service_id, earlier); }
  /// Declares that this instance answers everything that reaches it, so it
  /// must be the last in the chain.
  virtual void terminal() = 0;
  /// Says what this instance makes of the process: "frontend" (its spools
  /// are back ends elsewhere) or "backend" (it serves front ends): the
  /// `role` label of the session metrics, "embedded" when no instance
  /// says. Instances saying different things are a configuration error.
  virtual void declare_role(const std::string& role) = 0;

 protected:
  virtual void provide_service(const char* id, void* object) = 0;
  virtual void require_service(const char* id, bool earlier) = 0;
};

/// One instance of a module: one entry of the YAML chain.
class module {
 public:
  virtual ~module() = default;

  /// The commands this instance takes part in. Called once, after create().
  virtual std::vector<command_spec> commands() const { return {}; }

  /// The events on_event() is called for. Called once, after create().
  /// None by default: name the ones you override on_event() for.
  virtual event_set events() const { return {}; }

  /// The login stages on_login() is called for (sdps/login.hpp). Called
  /// once, after create(). None by default.
  virtual stage_set login_stages() const { return {}; }

  /// Called after every instance exists, in chain order, on the main thread,
  /// before any event loop runs.
  /// Look up other modules' services here. Throw config_error to refuse.
  virtual void start(const registry&) {}

  /// A command declared in commands() (or every command, for "*"), valid
  /// in the current state. Runs on the session's event loop thread
  /// (session::get_executor()); other sessions' calls may run on other
  /// threads at the same time. The core turns an
  /// exception into -ERR [SYS/TEMP], and bounds the call with the
  /// instance's `timeout`: a call that overruns it ends the session. The
  /// client gets -ERR [SYS/TEMP] and the connection closes at once; the
  /// late call runs on to its end (its result is ignored), and only then
  /// does the session go on to `disconnect`. So a module never sees two
  /// calls at once for one session, nor a call after `disconnect`, and
  /// needs no guard against its own late calls.
  virtual awaitable<verdict> on_command(session&, const command&) { co_return verdict::next(); }

  /// A session event (see `event`). Same rules as on_command().
  virtual awaitable<verdict> on_event(session&, event) { co_return verdict::next(); }

  /// One stage of a login (sdps/login.hpp), for a stage login_stages()
  /// names: proceed, or refuse the login. Same rules as on_command() (the
  /// instance's time limit; an exception refuses the login with -ERR
  /// [SYS/TEMP]).
  virtual awaitable<login_verdict> on_login(session&, login_stage, login_attempt&) {
    co_return login_verdict::proceed();
  }
  /// The login whose stage `stage` this instance let through was refused
  /// later (by a later stage, or a later instance of the same stage): give
  /// back what on_login() took for it (lock releases its locks). Called
  /// latest first, on the session's loop; it must not wait. Exceptions
  /// are logged and ignored.
  virtual void undo_login(session&, login_stage) {}

  /// Lines this instance adds to the CAPA listing for this session.
  virtual void capabilities(session&, std::vector<std::string>&) const {}

  /// SIGHUP: re-read whatever external files the instance uses. Runs on
  /// the first event loop's thread while sessions go on on the others (and
  /// between the first loop's own calls): swap the new state in under a
  /// lock, or atomically. Log problems and keep the old state.
  virtual void reload() {}

  /// SIGHUP, when this instance's settings in the re-read file differ from
  /// those it runs with: its entry (`options`, every key besides module,
  /// name and timeout), or a top-level key it read in create() (`site`,
  /// the new file's top level). Read and check every setting as create()
  /// does, throwing config_error for a bad value, and change nothing yet.
  /// Return the change to make: the core calls it once the whole file has
  /// been accepted, on the first event loop's thread while sessions go on
  /// on the others (thread-safe, as reload() is). Return an empty function
  /// when a changed setting can take effect only at a restart: the core
  /// logs that the instance's new settings wait for one, and applies none
  /// of them. When a function is returned, a key of `options` left unread
  /// is refused as at start-up, and then nothing of the file is applied.
  /// Main thread. The default: an empty function (nothing changes live).
  virtual std::function<void()> reconfigure(const settings& /*options*/, const settings& /*site*/) { return {}; }

  /// `sdpsd --check` and start-up, after start(): what would stop this
  /// instance from serving, one line each saying what to fix (a spool
  /// folder the configured `user:` cannot write, say). It runs as the
  /// configured `user:`: in a child process that switched to it when
  /// sdpsd runs as root, so try the accesses (open the file, list the
  /// folder) rather than reading mode bits. It must not change anything
  /// (the child's changes are lost, and the files stay root's otherwise).
  /// Empty when all is well; the default checks nothing.
  virtual std::vector<std::string> check() const { return {}; }
};

/// Runs `fn` on the blocking pool and resumes the caller on its own
/// executor (the session's loop thread) with the result (or exception). For Argon2id, fsync and other
/// work that must not stall the event loop. `fn` must own what it uses.
/// Name the lambda first, then move it in:
///
///     auto job = [check] { return check->run(); };
///     const auto result = co_await run_blocking(server, std::move(job));
///
/// NOT `co_await run_blocking(server, [check] { ... })`, and deliberately
/// not a coroutine itself: GCC 12's coroutine rules, docs/toolchain.md.
template <typename F>
awaitable<std::invoke_result_t<F>> run_blocking(server_context& server, F fn) {
  using result = std::invoke_result_t<F>;
  return asio::co_spawn(
      server.blocking_pool(), [fn = std::move(fn)]() mutable -> awaitable<result> { co_return fn(); },
      asio::use_awaitable);
}

inline const char* to_string(event e) {
  switch (e) {
    case event::connect: return "connect";
    case event::authenticated: return "authenticated";
    case event::quit: return "quit";
    case event::disconnect: return "disconnect";
    case event::logout: return "logout";
  }
  return "?";
}

}  // namespace sdps
