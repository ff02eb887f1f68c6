#include "hostdb/file_store.hpp"

#include "hostdb/access.hpp"
#include "hostdb/table.hpp"

#include <malloc.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <mutex>
#include <ostream>
#include <shared_mutex>
#include <system_error>
#include <thread>
#include <utility>

namespace sdps::hostdb {

namespace {

constexpr std::size_t problems_logged = 20;
// More changed hosts than this in one version are announced as "every host".
constexpr std::size_t max_changes_named = 1000;

class file_store final : public host_store {
 public:
  file_store(std::filesystem::path file, store_options options, std::optional<uid_t> owner)
      : file_(std::move(file)), owner_(owner), options_(std::move(options)), log_(*options_.log) {
    // At start an unreadable or insecure file (its mode, its owner, its
    // folder's) is a config error (it throws from here); later the same
    // makes the store unavailable until fixed.
    check_place(file_, owner_);
    auto first = std::make_unique<host_table>(host_table::read(file_));
    log_problems(*first);
    usual_ = most_common_cost(*first);
    if (!first->stamp().exists)
      log_.warning("host store ", file_.string(), " does not exist: no host can log in until `sdps host add` creates it");
    else if (!first->problems().empty())
      log_.warning("host store ", file_.string(), ": loaded ", first->size(), " host(s), skipping ",
                   first->problems().size(), " malformed line(s)");
    else
      log_.info("host store ", file_.string(), ": loaded ", first->size(), " host(s)");
    table_ = std::move(first);
    watch();
    wake_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (wake_ < 0) throw std::system_error(errno, std::generic_category(), "eventfd");
    thread_ = std::thread([this] { run(); });
  }

  ~file_store() override {
    stopping_ = true;
    wake();
    thread_.join();
    ::close(wake_);
    if (inotify_ >= 0) ::close(inotify_);
  }

  file_store(const file_store&) = delete;
  file_store& operator=(const file_store&) = delete;

  awaitable<lookup_result> lookup(std::string host) override {
    const std::optional<file_stamp> now = current_stamp();
    lookup_result out = find(host, now);
    // The file changed and the reader has not swapped the new version in
    // yet. A small file's re-read takes a few milliseconds: the lookup
    // waits for it, and a change is seen by the very next login, as
    // `sdps host ...` users expect. A big one's takes seconds: logins go
    // on against the version in force, except that a host missing from it
    // (added a moment ago) waits rather than being refused.
    if (out.stale && (out.status != lookup_status::found || now->size <= options_.wait_for_reread_below)) {
      co_await catch_up();
      out = find(host, current_stamp());
    }
    co_return out;
  }

  awaitable<void> catch_up() override {
    if (!behind()) co_return;
    wake();
    // Polled rather than signalled: the reader thread never touches a
    // caller's executor, and the wait is rare (a host missing, or a
    // password refused, while a changed file is read) and short.
    asio::steady_timer tick(co_await asio::this_coro::executor);
    const auto deadline = std::chrono::steady_clock::now() + options_.query_timeout;
    auto pause = std::chrono::milliseconds(1);
    while (behind() && std::chrono::steady_clock::now() < deadline) {
      tick.expires_after(pause);
      boost::system::error_code ignored;
      co_await tick.async_wait(asio::redirect_error(asio::use_awaitable, ignored));
      pause = std::min(pause * 2, std::chrono::milliseconds(16));
    }
  }

  bool up() const override { return up_; }
  bool wait_ready(std::chrono::milliseconds) override { return up_; }
  std::optional<hash_cost> usual_cost() const override {
    std::shared_lock guard(mutex_);
    return usual_;
  }
  // --check runs this as the configured user already (base::lines_as_user):
  // the accesses are tried, whoever `user` names.
  std::vector<std::string> check(const base::account*) override { return check_access(file_); }
  std::string where() const override { return file_.string(); }
  void reload() override {
    forced_ = true;
    wake();
  }

 private:
  // The record in force; `stale` when `now` (the file's stamp) is a
  // version the reader has yet to deal with.
  lookup_result find(const std::string& host, const std::optional<file_stamp>& now) {
    lookup_result out;
    // Shared: lookups on every loop at once. The reader thread takes it
    // exclusively only to swap a pointer, and it stays the only owner of
    // a replaced table, so that freeing one never falls on a login.
    std::shared_lock guard(mutex_);
    out.stale = now && behind_locked(*now);
    if (!broken_.empty()) {
      out.status = lookup_status::unavailable;
      out.detail = broken_;
      out.untrusted = true;
      guard.unlock();
      // Fixed a moment ago (a chmod back): the reader may not have seen it.
      if (out.stale) wake();
      return out;
    }
    auto record = table_->find(host);
    guard.unlock();
    // The reader may still be waiting for its inotify event or timer.
    if (out.stale) wake();
    if (!record) {
      out.status = lookup_status::unknown;
      return out;
    }
    out.status = lookup_status::found;
    out.record = std::move(*record);
    return out;
  }

  // The file's stamp now; nullopt when stat fails (the reader reports that).
  std::optional<file_stamp> current_stamp() const {
    try {
      return stamp(file_);
    } catch (const std::exception&) {
      return std::nullopt;
    }
  }

  // True while the file in place is a version the reader has not dealt
  // with yet: neither the one in force nor one it refused nor, while the
  // store is broken, the one it found broken.
  bool behind() const {
    const std::optional<file_stamp> now = current_stamp();
    if (!now) return false;
    std::shared_lock guard(mutex_);
    return behind_locked(*now);
  }
  bool behind_locked(const file_stamp& now) const {
    if (!broken_.empty()) return !broken_at_ || now != *broken_at_;
    return now != table_->stamp() && !(refused_ && now == *refused_);
  }

  // The cost most hashes of `t` have; logs when they have several.
  std::optional<hash_cost> most_common_cost(const host_table& t) {
    const auto seen = t.costs();
    std::optional<hash_cost> wanted;
    std::size_t most = 0;
    for (const auto& c : seen)
      if (c.second >= most) {  // a tie goes to the dearer cost (later in the map)
        most = c.second;
        wanted = c.first;
      }
    if (seen.size() > 1)
      log_.warning("host store ", file_.string(), ": the password hashes have ", seen.size(),
                   " different costs; refusals for hosts whose hash is not at the most common cost take another "
                   "time than unknown hosts' (set their passwords again to give them the cost of password_cost)");
    return wanted;
  }

  void wake() {
    const std::uint64_t one = 1;
    [[maybe_unused]] const auto n = ::write(wake_, &one, sizeof one);
  }

  // Watches the file's folder: save() and editors replace the file by
  // rename, which a watch on the file itself would lose.
  void watch() {
    const std::filesystem::path folder = file_.has_parent_path() ? file_.parent_path() : std::filesystem::path(".");
    inotify_ = ::inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (inotify_ >= 0 &&
        ::inotify_add_watch(inotify_, folder.c_str(),
                            IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_CREATE | IN_DELETE | IN_ATTRIB |
                                IN_DELETE_SELF | IN_MOVE_SELF) >= 0)
      return;
    const int error = errno;
    if (inotify_ >= 0) ::close(inotify_);
    inotify_ = -1;
    log_.warning("host store ", file_.string(), ": cannot watch ", folder.string(), " (", std::strerror(error),
                 "): changes are noticed within ", options_.check_interval.count(), " ms");
  }

  // Empties the inotify queue; true if anything happened.
  bool drain(int fd) {
    alignas(inotify_event) std::array<char, 16384> buffer;
    bool any = false;
    for (;;) {
      const ssize_t n = ::read(fd, buffer.data(), buffer.size());
      if (n <= 0) return any;
      any = true;
    }
  }

  void run() {
    // Re-reading is background work: the event loops come first.
    ::setpriority(PRIO_PROCESS, static_cast<id_t>(::gettid()), 10);
    if (options_.health) options_.health(true);
    while (!stopping_) {
      std::array<pollfd, 2> fds{};
      fds[0] = {wake_, POLLIN, 0};
      fds[1] = {inotify_, POLLIN, 0};
      const int count = inotify_ >= 0 ? 2 : 1;
      const int n = ::poll(fds.data(), static_cast<nfds_t>(count), static_cast<int>(options_.check_interval.count()));
      if (n < 0 && errno != EINTR) {
        log_.error("host store ", file_.string(), ": poll failed: ", std::strerror(errno));
        std::this_thread::sleep_for(options_.check_interval);
      }
      if (fds[0].revents) drain(wake_);
      if (count == 2 && fds[1].revents) drain(inotify_);
      if (stopping_) break;
      // Any event in the folder, or the timer: one stat tells whether the
      // file is another version.
      check();
    }
  }

  void check() {
    file_stamp now;
    try {
      now = stamp(file_);
    } catch (const std::exception& e) {
      set_broken(e.what(), std::nullopt);
      return;
    }
    try {
      // Each time, not only for a new version: a chown or chmod of the
      // file's folder changes no stamp.
      check_place(file_, owner_);
    } catch (const std::exception& e) {
      set_broken(e.what(), now);
      return;
    }
    // SIGHUP: said what is in force even when nothing changed, and a
    // refused version is read (and its problems logged) again.
    const bool forced = forced_.exchange(false);
    if (now == table_->stamp()) {  // table_ is only ever replaced on this thread
      set_broken({}, std::nullopt);
      if (forced) log_.info("host store ", file_.string(), ": unchanged, ", table_->size(), " host(s)");
      return;
    }
    if (refused_ && now == *refused_ && !forced) return;  // refused_ is only ever written on this thread
    std::unique_ptr<host_table> fresh;
    try {
      fresh = std::make_unique<host_table>(host_table::read(file_));
    } catch (const std::exception& e) {
      // Fail closed: the file in place may have dropped a host or changed
      // a password, so the table in force is no longer trusted.
      set_broken(e.what(), now);
      return;
    }
    if (!fresh->problems().empty()) {
      log_problems(*fresh);
      log_.error("host store ", file_.string(), ": not reloading: it has ", fresh->problems().size(),
                 " malformed line(s); keeping the ", table_->size(), " host(s) loaded before");
      {
        std::unique_lock guard(mutex_);
        refused_ = fresh->stamp();
      }
      set_broken({}, std::nullopt);  // readable: the hosts loaded before stay in force
      return;
    }
    if (options_.before_swap) options_.before_swap();
    if (!fresh->stamp().exists)
      log_.warning("host store ", file_.string(), " was removed: no host can log in until it is back");
    const std::optional<hash_cost> usual = most_common_cost(*fresh);
    std::unique_ptr<host_table> old;
    {
      std::unique_lock guard(mutex_);
      old = std::exchange(table_, std::move(fresh));
      refused_.reset();
      usual_ = usual;
    }
    set_broken({}, std::nullopt);
    // Which hosts differ, then the old table goes (and its memory back to
    // the kernel) before anyone is told: a big change is announced as
    // "every host", as the database's trigger does.
    std::vector<std::string> changed;
    std::size_t count = 0;
    host_table::differences(*old, *table_, [&changed, &count](std::string_view host, host_table::difference) {
      if (++count <= max_changes_named) changed.emplace_back(host);
    });
    old.reset();
    // The tables' own buffers are unmapped already; this gives back what
    // parsing left in the allocator's arenas (problems, names).
    ::malloc_trim(0);
    log_.info("host store ", file_.string(), ": loaded ", table_->size(), " host(s), ", count, " changed");
    if (!options_.changed) return;
    if (count > max_changes_named) {
      options_.changed(host_change{{}, true});
      return;
    }
    for (std::string& host : changed) options_.changed(host_change{std::move(host), false});
  }

  void log_problems(const host_table& t) {
    const auto& problems = t.problems();
    for (std::size_t i = 0; i < problems.size() && i < problems_logged; ++i)
      log_.warning(describe(file_, problems[i]));
    if (problems.size() > problems_logged)
      log_.warning(file_.string(), ": ", problems.size() - problems_logged, " more malformed lines");
  }

  // `why` empty: usable again. `at`: the stamp of the file found broken
  // (nullopt when it could not be had), so that lookups wait for the
  // reader once it is another.
  void set_broken(const std::string& why, const std::optional<file_stamp>& at) {
    if (why.empty() && up_) return;  // the usual case: no lock
    {
      std::unique_lock guard(mutex_);
      broken_at_ = at;
      if (broken_ == why) return;
      broken_ = why;
    }
    const bool now_up = why.empty();
    if (now_up)
      log_.info("host store ", file_.string(), ": up again");
    else
      log_.error("host store ", file_.string(), ": down: ", why, "; logins answer [SYS/TEMP] until it is fixed");
    if (up_.exchange(now_up) != now_up && options_.health) options_.health(now_up);
  }

  const std::filesystem::path file_;
  const std::optional<uid_t> owner_;  // who besides root may own the file and its folder
  const store_options options_;
  logger& log_;

  // Guards table_ (the pointer), broken_, broken_at_, refused_ and usual_, which only
  // the reader thread writes.
  mutable std::shared_mutex mutex_;
  std::unique_ptr<host_table> table_;
  std::string broken_;  // why the file cannot be used now; empty when it can
  std::optional<file_stamp> broken_at_;  // the file's stamp when found broken
  std::optional<file_stamp> refused_;  // a version with malformed lines
  std::optional<hash_cost> usual_;     // the cost most of table_'s hashes have
  std::atomic<bool> up_{true};
  std::atomic<bool> stopping_{false};
  std::atomic<bool> forced_{false};  // reload() asked for a check
  int inotify_ = -1;
  int wake_ = -1;
  std::thread thread_;
};

class file_admin final : public host_admin {
 public:
  file_admin(std::filesystem::path file, std::chrono::milliseconds wait, std::optional<uid_t> owner)
      : file_(std::move(file)), wait_(wait), owner_(owner) {}

  std::string where() const override { return file_.string(); }

  std::string init() override {
    return std::string("hosts: ").append(file_.string()).append(
        " is a hosts file: there is no schema to create (`sdps host add` creates the file)");
  }

  std::optional<host_record> find(std::string_view name) override { return read().find(name); }

  std::vector<problem> list(const std::function<void(const host_record&)>& each) override {
    const host_table table = read();
    table.for_each(each);
    return table.problems();
  }

  bool add(const host_record& record) override {
    check_place(file_, owner_);
    return hostdb::edit(file_, [&record](database& db) { return db.add(record); }, wait_);
  }

  edit_outcome edit(std::string_view name, const std::function<bool(host_record&)>& change) override {
    edit_outcome outcome = edit_outcome::no_host;
    check_place(file_, owner_);
    hostdb::edit(
        file_,
        [&](database& db) {
          host_record* r = db.find(name);
          if (!r) return false;
          const bool changed = change(*r);
          outcome = changed ? edit_outcome::changed : edit_outcome::unchanged;
          return changed;
        },
        wait_);
    return outcome;
  }

  bool remove(std::string_view name) override {
    check_place(file_, owner_);
    return hostdb::edit(file_, [name](database& db) { return db.remove(name); }, wait_);
  }

  import_summary import_file(const std::filesystem::path& source) override {
    host_table incoming = host_table::read(source);
    if (!incoming.stamp().exists)
      throw std::system_error(ENOENT, std::generic_category(), "cannot open " + source.string());
    if (!incoming.problems().empty()) throw malformed_file(source, incoming.problems());
    check_place(file_, owner_);
    edit_lock lock(file_, wait_);
    const host_table current = read();
    import_summary out;
    out.hosts = incoming.size();
    host_table::differences(current, incoming, [&out](std::string_view, host_table::difference d) {
      switch (d) {
        case host_table::difference::added: ++out.added; break;
        case host_table::difference::changed: ++out.changed; break;
        case host_table::difference::removed: ++out.removed; break;
      }
    });
    save_text(file_, format(incoming));
    return out;
  }

  std::vector<problem> export_to(std::ostream& out) override {
    const host_table table = read();
    std::string text(format_header());
    table.for_each([&](const host_record& r) {
      append_line(text, r);
      if (text.size() >= (1u << 20)) {
        out << text;
        text.clear();
      }
    });
    out << text;
    out.flush();
    return table.problems();
  }

 private:
  // The database as it is, from a file and folder only trusted users can
  // change (check_place).
  host_table read() const {
    check_place(file_, owner_);
    return host_table::read(file_);
  }

  const std::filesystem::path file_;
  const std::chrono::milliseconds wait_;
  const std::optional<uid_t> owner_;
};

}  // namespace

std::unique_ptr<host_store> open_file_store(const std::filesystem::path& file, store_options options,
                                            std::optional<uid_t> owner) {
  if (!options.log) throw std::invalid_argument("host store: no logger");
  if (options.check_interval.count() <= 0) throw std::invalid_argument("host store: check_interval must be positive");
  return std::make_unique<file_store>(file, std::move(options), owner);
}

std::unique_ptr<host_admin> open_file_admin(const std::filesystem::path& file, std::chrono::milliseconds lock_wait,
                                            std::optional<uid_t> owner) {
  return std::make_unique<file_admin>(file, lock_wait, owner);
}

}  // namespace sdps::hostdb
