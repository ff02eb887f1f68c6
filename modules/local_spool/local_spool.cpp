#include "local_spool.hpp"

#include <sodium.h>
#include <sys/stat.h>

#include <stdexcept>

namespace sdps::local {

namespace {

/// A message file streamed to the client piece by piece.
class file_body final : public body_source {
 public:
  /// `whole`: the stream is the whole message (RETR), not a TOP cut.
  file_body(std::shared_ptr<message_file> file, std::string punt, bool whole)
      : file_(std::move(file)), punt_(std::move(punt)), whole_(whole) {}

  awaitable<std::size_t> read(std::span<char> buffer) override {
    // Page-cache reads of one chunk: short enough for the event loop.
    // (No suspension: the core's read costs no more than the copy.)
    try {
      co_return file_->read(buffer);
    } catch (const io_error& e) {
      throw spool_error("punt " + punt_ + ": " + e.what());
    }
  }

  /// What the file holds to send, even if its name says otherwise.
  std::optional<std::uint64_t> size() const override {
    if (!whole_) return std::nullopt;
    return file_->retr_size();
  }

 private:
  std::shared_ptr<message_file> file_;
  std::string punt_;
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

std::string local_maildrop::dummy(std::size_t index, std::optional<std::uint64_t> body_lines) const {
  dummy_details d;
  d.uidl = infos_[index].uidl;
  d.size = infos_[index].size;
  const auto seen = known_.find(index);
  d.to = seen != known_.end() ? seen->second.to : recipient_from_name(index);
  d.server_name = server_.server_name();
  d.now = now_us();
  std::string text = dummy_message(d);
  top_filter cut(body_lines);
  text.resize(cut.accept(text));
  return text;
}

awaitable<std::unique_ptr<body_source>> local_maildrop::retrieve(std::size_t index,
                                                                 std::optional<std::uint64_t> body_lines) {
  std::unique_ptr<message_file> opened;
  try {
    opened = message_file::open(file_text(index));
  } catch (const io_error& e) {
    log_.error("punt ", punt_, ": ", e.what());
    throw spool_error("punt " + punt_ + ": cannot read message " + infos_[index].uidl);
  }
  if (!opened) {
    log_.info("punt ", punt_, ": ", login_.display(), ": message ", infos_[index].uidl,
              " left the spool (SMTP delivered it): sending the dummy notice");
    co_return std::make_unique<string_body>(dummy(index, body_lines));
  }
  known_[index] = sdps::envelope{opened->read_flag(), punt_, opened->envelope().from, opened->envelope().to};
  if (opened->retr_size() != infos_[index].size)
    log_.warning("punt ", punt_, ": ", files_.file(index), " holds ", opened->retr_size(),
                 " octets to send, its name says ", infos_[index].size, " (changed by hand?)");
  opened->rewind(body_lines);
  std::shared_ptr<message_file> shared(std::move(opened));
  // RETR marks the message read right after this: through this same open
  // file, not a second open.
  retrieved_ = shared;
  retrieved_index_ = index;
  co_return std::make_unique<file_body>(std::move(shared), punt_, !body_lines);
}

awaitable<void> local_maildrop::mark_read(std::size_t index) {
  try {
    if (const auto opened = retrieved_.lock(); opened && retrieved_index_ == index) {
      opened->set_read_flag();
      if (const auto seen = known_.find(index); seen != known_.end()) seen->second.read = true;
    } else if (set_read_flag(file(index))) {
      if (const auto seen = known_.find(index); seen != known_.end()) seen->second.read = true;
    }
  } catch (const io_error& e) {
    log_.error("punt ", punt_, ": ", e.what());
    throw spool_error("punt " + punt_ + ": cannot set the read flag of message " + infos_[index].uidl);
  }
  co_return;
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

awaitable<removal_result> local_maildrop::remove_deleted() {
  std::vector<std::string> doomed;
  for (std::size_t i = 0; i < count(); ++i)
    if (deleted(i)) doomed.emplace_back(files_.file(i));
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

awaitable<lock_status> local_spool::lock(session& s) {
  auto& state = s.slot<session_state>(this);
  if (!locking_ || state.lock) co_return lock_status::acquired;
  const auto& login = s.login();
  if (!login || !valid_host(login->host)) {
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
  if (auto* state = s.find_slot<session_state>(this)) state->lock.reset();
}

awaitable<std::shared_ptr<sdps::maildrop>> local_spool::open(session& s) {
  {
    auto& state = s.slot<session_state>(this);
    if (state.drop) co_return state.drop;
    if (locking_ && !state.lock)
      throw spool_error("punt " + punt_ + ": the maildrop is not locked by this session");
  }
  if (!s.login() || !valid_host(s.login()->host)) throw spool_error("punt " + punt_ + ": no valid login to open");
  const identity login = *s.login();
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
    auto* state = s.find_slot<session_state>(this);
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
  // Look the slot up again: another module's state may have been added
  // while the scan ran.
  auto& state = s.slot<session_state>(this);
  if (!state.drop) {
    state.drop = std::make_shared<local_maildrop>(punt_, host_dir(root_, login.host), login, std::move(entries),
                                                  server_, log_);
    s.log().debug("punt ", punt_, ": ", login.display(), ": ", state.drop->count(), " message(s)");
  }
  co_return state.drop;
}

std::shared_ptr<sdps::maildrop> local_spool::current(session& s) {
  auto* state = s.find_slot<session_state>(this);
  return state ? state->drop : nullptr;
}

}  // namespace sdps::local
