#include "local_spool.hpp"

#include "spoolstore/access.hpp"

#include <fcntl.h>
#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

namespace sdps::local {

namespace {

/// A message file streamed to the client piece by piece.
class file_body final : public body_source {
 public:
  /// `whole`: the stream is the whole message (RETR), not a TOP cut.
  /// `punt` names the punt in errors (the maildrop outlives the body).
  file_body(std::unique_ptr<message_file> file, const std::string& punt, bool whole)
      : file_(std::move(file)), punt_(punt), whole_(whole) {}

  awaitable<std::size_t> read(std::span<char> buffer) override { co_return take(buffer); }
  // Page-cache reads of one chunk: short enough for the event loop, and
  // taken without a coroutine.
  std::optional<std::size_t> read_now(std::span<char> buffer) override { return take(buffer); }

  /// What the file holds to send, even if its name says otherwise.
  std::optional<std::uint64_t> size() const override {
    if (!whole_) return std::nullopt;
    return file_->retr_size();
  }

 private:
  std::size_t take(std::span<char> buffer) {
    try {
      return file_->read(buffer);
    } catch (const io_error& e) {
      throw spool_error("punt " + punt_ + ": " + e.what());
    }
  }
  std::unique_ptr<message_file> file_;
  const std::string& punt_;
  bool whole_;
};

std::filesystem::path configured_root(module_config& config, const std::string& punt) {
  settings& options = config.options();
  if (options.has("path")) return options.path("path");
  const settings& site = config.server().site();
  if (!site.has("punts"))
    options.fail("punt", "no spool folder for punt '" + punt +
                             "': the config has no top-level 'punts:' mapping (punt name -> folder); add one or "
                             "set 'path:' here");
  const auto punts = site.child("punts");
  if (!punts->has(punt))
    options.fail("punt", "no spool folder for punt '" + punt + "': it is not listed under 'punts:' (" +
                             punts->where() + "); add it there or set 'path:' here");
  return punts->path(punt);
}

/// list_messages() on the blocking pool. Not a coroutine (see remove_blocking).
awaitable<listing> list_blocking(server_context& server, const std::filesystem::path& root, const identity& login,
                                 logger& log) {
  return run_blocking(server, [root, host = login.host, user = login.user, log = &log]() {
    return list_messages(root, host, user, log);
  });
}

}  // namespace

// -- local_maildrop -------------------------------------------------------------

local_maildrop::local_maildrop(std::string punt, std::filesystem::path folder, const identity& login, listing files,
                               server_context& server, logger& log)
    : punt_(std::move(punt)),
      folder_(std::move(folder)),
      login_(login),
      files_(std::move(files)),
      server_(server),
      log_(log) {
  infos_.resize(files_.size());
  for (std::size_t i = 0; i < files_.size(); ++i) {
    const listing::message& m = files_.messages[i];
    message_info& info = infos_[i];
    info.uidl = files_.uidl(i);
    info.size = m.size;
    info.arrival = m.arrival;
    info.punt = punt_;
  }
}

std::string local_maildrop::file_text(std::size_t index) const {
  if (index >= files_.size()) throw std::out_of_range("local_maildrop::file");
  const std::string& folder = folder_.native();
  const std::string_view name = files_.file(index);
  std::string path;
  path.reserve(folder.size() + 1 + name.size());
  path += folder;
  path += '/';
  path += name;
  return path;
}

std::string local_maildrop::recipient_from_name(std::size_t index) const {
  const auto name = parse_name_view(files_.file(index));
  const auto user = name ? decode_user(name->user) : std::nullopt;
  if (!user) return {};
  const std::string& domain = server_.customer_domain();
  return *user + "@" + login_.host + (domain.empty() ? std::string() : "." + domain);
}

std::string local_maildrop::dummy(std::size_t index, std::optional<std::uint64_t> body_lines) {
  // The same notice at every RETR and TOP of the message in this session:
  // its Message-ID is random, so it is made once.
  auto made = notices_.find(index);
  if (made == notices_.end()) {
    dummy_details d;
    d.uidl = infos_[index].uidl;
    d.size = infos_[index].size;
    const auto seen = known_.find(index);
    d.to = seen != known_.end() ? seen->second.to : recipient_from_name(index);
    d.server_name = server_.server_name();
    d.now = now_us();
    // Why it left, if flush or expire said so (docs/spool.md, "Departure
    // records"); read once, with the notice.
    d.why = recorded_departure(folder_, d.uidl);
    made = notices_.emplace(index, dummy_message(d)).first;
  }
  std::string text = made->second;
  top_filter cut(body_lines);
  text.resize(cut.accept(text));
  return text;
}

awaitable<std::unique_ptr<body_source>> local_maildrop::retrieve(std::size_t index, retrieval how) {
  const std::optional<std::uint64_t> body_lines = how.body_lines;
  std::unique_ptr<message_file> opened;
  try {
    opened = message_file::open(file_text(index));
  } catch (const io_error& e) {
    log_.error("punt ", punt_, ": ", e.what());
    throw spool_error("punt " + punt_ + ": cannot read message " + infos_[index].uidl);
  }
  if (!opened) {
    log_.info("punt ", punt_, ": ", login_.display(), ": message ", infos_[index].uidl,
              " left the spool since the login: sending the dummy notice");
    co_return std::make_unique<string_body>(dummy(index, body_lines));
  }
  if (how.mark_read) {
    // Through the file just opened: no second open.
    try {
      opened->set_read_flag();
    } catch (const io_error& e) {
      log_.error("punt ", punt_, ": ", e.what());
      throw spool_error("punt " + punt_ + ": cannot set the read flag of message " + infos_[index].uidl);
    }
  }
  known_[index] = sdps::envelope{opened->read_flag(), punt_, opened->envelope().from, opened->envelope().to};
  if (opened->retr_size() != infos_[index].size)
    log_.warning("punt ", punt_, ": ", files_.file(index), " holds ", opened->retr_size(),
                 " octets to send, its name says ", infos_[index].size, " (changed by hand?)");
  opened->rewind(body_lines);
  co_return std::make_unique<file_body>(std::move(opened), punt_, !body_lines);
}

awaitable<sdps::envelope> local_maildrop::envelope(std::size_t index) {
  std::unique_ptr<message_file> opened;
  try {
    opened = message_file::open(file_text(index));
  } catch (const io_error& e) {
    log_.error("punt ", punt_, ": ", e.what());
    throw spool_error("punt " + punt_ + ": cannot read message " + infos_[index].uidl);
  }
  if (!opened) {
    if (const auto seen = known_.find(index); seen != known_.end()) co_return seen->second;
    // SMTP took the message before its envelope was read. Answer anyway:
    // fetchmail does not check *ENV for -ERR and would wait for a "."
    // line until it times out. The recipient is in the file name; the
    // sender is not known any more, so it reads as empty.
    co_return sdps::envelope{false, punt_, {}, recipient_from_name(index)};
  }
  sdps::envelope& seen = known_[index];
  seen = sdps::envelope{opened->read_flag(), punt_, opened->envelope().from, opened->envelope().to};
  co_return seen;
}

namespace {

removal_result remove_files(const std::filesystem::path& folder, const std::vector<std::string>& files,
                            logger* log, const std::string& punt) {
  removal_result result;
  for (const auto& name : files) {
    std::string error;
    if (remove_message(folder / name, error)) {
      ++result.removed;
    } else {
      ++result.failed;
      log->error("punt ", punt, ": ", error);
    }
  }
  if (result.removed > 0) {
    try {
      sync_dir(folder);
    } catch (const std::exception& e) {
      // The removals happened; at worst a crash brings a message back,
      // which loses nothing.
      log->warning("punt ", punt, ": ", e.what());
    }
  }
  return result;
}

// Not coroutines: they build the closures for run_blocking outside any
// coroutine frame, copying what the blocking work uses (docs/toolchain.md).
awaitable<removal_result> remove_blocking(server_context& server, const std::filesystem::path& folder,
                                          const std::vector<std::string>& files, logger& log,
                                          const std::string& punt) {
  return run_blocking(server, [folder, files, log = &log, punt]() { return remove_files(folder, files, log, punt); });
}

}  // namespace

awaitable<removal_result> local_maildrop::remove(std::vector<std::size_t> indexes) {
  std::vector<std::string> doomed;
  doomed.reserve(indexes.size());
  for (const std::size_t i : indexes)
    if (i < files_.size()) doomed.emplace_back(files_.file(i));
  if (doomed.empty()) co_return removal_result{};
  const removal_result result = co_await remove_blocking(server_, folder_, doomed, log_, punt_);
  log_.info("punt ", punt_, ": ", login_.display(), ": removed ", result.removed, " message(s)",
            result.failed ? ", " + std::to_string(result.failed) + " could not be removed" : std::string());
  co_return result;
}

// -- local_spool ----------------------------------------------------------------

local_spool::local_spool(module_config& config)
    : punt_(config.options().string_or("punt", config.instance())),
      root_(configured_root(config, punt_)),
      locking_(config.options().boolean_or("locking", true)),
      server_(config.server()),
      log_(config.log()) {
  if (punt_.empty()) config.options().fail("punt", "the punt name must not be empty");
  if (sodium_init() < 0) throw std::runtime_error("libsodium failed to initialise");
  config.provide<sdps::spool>(this);
  config.provide<sdps::maildrop_source>(this);
  // Nothing is created here: this runs for `sdpsd --check` too, and
  // before sdpsd switches to its `user:`.
  std::error_code ec;
  seen_ = std::filesystem::is_directory(root_, ec);
  if (!seen_)
    log_.info("punt ", punt_, ": spool folder ", root_.string(),
              " does not exist yet; it is created at the first login or delivery");
}

bool local_spool::punt_folder_seen() {
  if (seen_.load()) return true;
  std::error_code ec;
  if (std::filesystem::is_directory(root_, ec)) seen_ = true;
  return seen_.load();
}

awaitable<lock_status> local_spool::lock(session& s, const identity& who) {
  auto& state = s.slot(state_);
  if (!locking_ || state.lock) co_return lock_status::acquired;
  const identity* login = &who;
  if (!valid_host(login->host)) {
    log_.error("session ", s.id(), ": lock without a valid login");
    co_return lock_status::unavailable;
  }
  const bool create_punt = !punt_folder_seen();
  auto attempt = lock_maildrop(root_, login->host, login->user, create_punt);
  if (attempt.result != lock_attempt::outcome::failed && create_punt && !seen_.exchange(true))
    log_.info("punt ", punt_, ": created the spool folder ", root_.string());
  switch (attempt.result) {
    case lock_attempt::outcome::acquired:
      if (!attempt.note.empty())
        log_.warning("session ", s.id(), ": punt ", punt_, ": ", login->display(), ": ", attempt.note);
      state.lock = std::move(attempt.lock);
      state.held = session_count::hold(holders_);
      s.log().debug("punt ", punt_, ": locked ", login->display());
      co_return lock_status::acquired;
    case lock_attempt::outcome::in_use:
      log_.info("session ", s.id(), ": ", login->display(), " is locked by another session");
      co_return lock_status::in_use;
    case lock_attempt::outcome::failed:
      break;
  }
  log_.error("session ", s.id(), ": ", attempt.error);
  co_return lock_status::unavailable;
}

void local_spool::unlock(session& s) {
  if (auto* state = s.find_slot(state_)) {
    state->lock.reset();
    state->held.reset();
  }
}

// -- the health probe -------------------------------------------------------------

namespace {

/// local_spool's probe: look_at_folder() on the blocking pool, so that a
/// hung file system (an NFS punt) holds a pool thread, never a loop.
class folder_probe final : public punt_probe {
 public:
  folder_probe(local_spool& spool, server_context& server) : spool_(spool), server_(server) {}
  awaitable<punt_health> check() override {
    local_spool* spool = &spool_;
    // Named, then moved in: docs/toolchain.md.
    auto job = [spool] { return spool->look_at_folder(); };
    co_return co_await run_blocking(server_, std::move(job));
  }

 private:
  local_spool& spool_;
  server_context& server_;
};

}  // namespace

std::unique_ptr<punt_probe> local_spool::make_probe(executor) {
  return std::make_unique<folder_probe>(*this, server_);
}

punt_health local_spool::look_at_folder() {
  punt_health out;
  struct stat st;
  if (::stat(root_.c_str(), &st) != 0) {
    const int error = errno;
    if (error == ENOENT && !seen_.load()) {
      out.up = true;
      out.detail = "the spool folder does not exist yet: the first login or delivery creates it";
    } else {
      // (Appended, not "literal" + string: docs/toolchain.md.)
      out.detail = std::string("the spool folder ").append(root_.string());
      if (error == ENOENT)
        out.detail.append(" is missing");
      else
        out.detail.append(" cannot be reached: ").append(std::strerror(error));
    }
    return out;
  }
  if (!S_ISDIR(st.st_mode)) {
    out.detail = root_.string().append(" is not a folder");
    return out;
  }
  seen_ = true;
  // What a login needs of it (locks/, read flags, removals), with this
  // process's own identity.
  if (::faccessat(AT_FDCWD, root_.c_str(), R_OK | W_OK | X_OK, AT_EACCESS) != 0) {
    const int error = errno;
    out.detail = std::string("cannot use the spool folder ").append(root_.string()).append(": ").append(std::strerror(error));
    return out;
  }
  out.up = true;
  return out;
}

awaitable<std::shared_ptr<sdps::maildrop>> local_spool::open(session& s, const identity& who) {
  if (locking_) {
    const session_state* state = s.find_slot(state_);
    if (!state || !state->lock) throw spool_error("punt " + punt_ + ": the maildrop is not locked by this session");
  }
  if (!valid_host(who.host)) throw spool_error("punt " + punt_ + ": no valid login to open");
  const identity login = who;
  if (!locking_) {
    // With locks, lock() already refused a punt folder that vanished.
    std::error_code ec;
    if (std::filesystem::is_directory(root_, ec)) {
      seen_ = true;
    } else if (seen_.load()) {
      log_.error("session ", s.id(), ": punt ", punt_, ": the spool folder ", root_.string(), " is missing");
      throw spool_error("punt " + punt_ + ": the spool folder is missing");
    }
  }
  listing entries;
  // A host without a folder at lock time has an empty maildrop for the
  // whole session: its lock protects nothing that arrives later.
  const bool no_folder = [&] {
    auto* state = s.find_slot(state_);
    return locking_ && state && state->lock && state->lock->no_folder();
  }();
  if (!no_folder) try {
    // A small folder is read here (a few getdents calls from the page
    // cache); a big one, or one that cannot be looked at, on the pool.
    struct stat folder;
    const bool small = ::stat(host_dir(root_, login.host).c_str(), &folder) == 0 && S_ISDIR(folder.st_mode) &&
                       static_cast<std::uintmax_t>(folder.st_size) <= loop_listing_max;
    if (small) {
      entries = list_messages(root_, login.host, login.user, &log_);
    } else {
      entries = co_await list_blocking(server_, root_, login, log_);
    }
    log_.debug("session ", s.id(), ": punt ", punt_, ": listed ", entries.size(), " message(s) on ",
               small ? "the session's loop" : "the blocking pool");
  } catch (const std::exception& e) {
    log_.error("session ", s.id(), ": punt ", punt_, ": ", e.what());
    throw spool_error("punt " + punt_ + ": cannot read the spool");
  }
  auto drop =
      std::make_shared<local_maildrop>(punt_, host_dir(root_, login.host), login, std::move(entries), server_, log_);
  s.log().debug("punt ", punt_, ": ", login.display(), ": ", drop->count(), " message(s)");
  co_return drop;
}

std::vector<std::string> local_spool::check() const { return spoolstore::check_access({{punt_, root_}}); }

}  // namespace sdps::local
