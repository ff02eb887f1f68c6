#include "merge.hpp"

#include <algorithm>

namespace sdps::merge {

namespace {

std::string join(const std::vector<std::string>& names) {
  std::string out;
  for (const auto& n : names) out += (out.empty() ? "" : ", ") + n;
  return out;
}

}  // namespace

// -- merged_maildrop ----------------------------------------------------------

merged_maildrop::merged_maildrop(std::vector<part> parts, std::vector<std::string> missing, logger& log)
    : parts_(std::move(parts)), missing_(std::move(missing)), log_(log) {
  // Oldest first; equal arrival times by UIDL, then in the parts' order
  // (the order a stable sort of the parts one after another gives), so the
  // numbering is the same in every session that sees the same messages.
  const auto before = [this](const where& a, const where& b) {
    if (a.arrival != b.arrival) return a.arrival < b.arrival;
    return parts_[a.part].drop->info(a.index).uidl < parts_[b.part].drop->info(b.index).uidl;
  };
  std::size_t total = 0;
  for (const part& p : parts_) total += p.drop->count();
  order_.reserve(total);
  // Each part is a sorted run as a rule (a spool lists by UIDL): check it,
  // sort only a run that is not, and merge the runs. Both are stable, so
  // the result is exactly the stable sort's, in linear time.
  for (std::size_t p = 0; p < parts_.size(); ++p) {
    const auto run = static_cast<std::ptrdiff_t>(order_.size());
    const maildrop& drop = *parts_[p].drop;
    for (std::size_t i = 0; i < drop.count(); ++i) order_.push_back({p, i, drop.info(i).arrival});
    if (!std::is_sorted(order_.begin() + run, order_.end(), before))
      std::stable_sort(order_.begin() + run, order_.end(), before);
    std::inplace_merge(order_.begin(), order_.begin() + run, order_.end(), before);
  }
}

const merged_maildrop::where& merged_maildrop::locate(std::size_t index) const { return order_.at(index); }

const message_info& merged_maildrop::info(std::size_t index) const {
  const where& w = locate(index);
  return parts_[w.part].drop->info(w.index);
}

awaitable<std::unique_ptr<body_source>> merged_maildrop::retrieve(std::size_t index,
                                                                  std::optional<std::uint64_t> body_lines) {
  const where w = locate(index);
  const std::shared_ptr<maildrop> drop = parts_[w.part].drop;
  co_return co_await drop->retrieve(w.index, body_lines);
}

awaitable<void> merged_maildrop::mark_read(std::size_t index) {
  const where w = locate(index);
  const std::shared_ptr<maildrop> drop = parts_[w.part].drop;
  co_await drop->mark_read(w.index);
}

awaitable<sdps::envelope> merged_maildrop::envelope(std::size_t index) {
  const where w = locate(index);
  const std::shared_ptr<maildrop> drop = parts_[w.part].drop;
  co_return co_await drop->envelope(w.index);
}

awaitable<removal_result> merged_maildrop::remove_deleted() {
  // The parts' marks become exactly this maildrop's.
  std::vector<std::size_t> marked(parts_.size(), 0);
  for (const part& p : parts_) p.drop->reset();
  for (std::size_t i = 0; i < order_.size(); ++i) {
    if (!deleted(i)) continue;
    const where& w = order_[i];
    parts_[w.part].drop->mark_deleted(w.index);
    ++marked[w.part];
  }
  removal_result total;
  for (std::size_t p = 0; p < parts_.size(); ++p) {
    if (marked[p] == 0) continue;
    const std::shared_ptr<maildrop> drop = parts_[p].drop;
    try {
      const removal_result r = co_await drop->remove_deleted();
      total.removed += r.removed;
      total.failed += r.failed;
    } catch (const std::exception& e) {
      log_.error("removing ", marked[p], " deleted message(s) on punt ", parts_[p].punt, ": ", e.what());
      total.failed += marked[p];
    }
  }
  co_return total;
}

std::vector<std::string> merged_maildrop::missing() const {
  std::vector<std::string> out = missing_;
  for (const part& p : parts_)
    for (auto& name : p.drop->missing())
      if (std::find(out.begin(), out.end(), name) == out.end()) out.push_back(std::move(name));
  return out;
}

// -- merge_module -------------------------------------------------------------

/// The session's snapshot.
struct merge_module::opened {
  std::shared_ptr<merged_maildrop> drop;
};

merge_module::merge_module(module_config& config)
    : log_(config.log()),
      metrics_(config.server().metrics()),
      instance_(config.instance()),
      punts_(config.options().strings_or("punts", {})) {
  if (config.options().has("punts") && punts_.empty())
    config.options().fail("punts", "'punts' must list at least one punt (or be left out: every spool)");
  config.require<spool>();
  config.provide<maildrop_source>(this);
}

std::vector<command_spec> merge_module::commands() const {
  return {{"PASS", static_cast<state_mask>(pop3_state::authorization)}};
}

void merge_module::start(const registry& services) {
  const auto spools = services.named<spool>();
  auto make = [&](const std::pair<std::string, spool*>& e) {
    maildrop_source* maildrops = services.find<maildrop_source>(e.first);
    if (!maildrops)
      throw config_error("module instance '" + instance_ + "': spool instance '" + e.first +
                         "' provides no maildrop source");
    return source{e.first, e.second, maildrops};
  };
  sources_.clear();
  if (punts_.empty()) {
    for (const auto& e : spools) sources_.push_back(make(e));
  } else {
    for (const std::string& name : punts_) {
      const auto it = std::find_if(spools.begin(), spools.end(),
                                   [&](const auto& e) { return e.second->punt() == name || e.first == name; });
      if (it == spools.end())
        throw config_error("module instance '" + instance_ + "': no spool instance serves punt '" + name + "'");
      if (std::none_of(sources_.begin(), sources_.end(), [&](const source& s) { return s.instance == it->first; }))
        sources_.push_back(make(*it));
    }
  }
  if (sources_.empty()) throw config_error("module instance '" + instance_ + "': no spool to merge");
}

awaitable<verdict> merge_module::on_command(session& s, const command& cmd) {
  if (cmd.name != "PASS") co_return verdict::next();
  // A new PASS takes a new snapshot.
  s.drop_slot(this);
  try {
    co_await open(s);
  } catch (const spool_error& e) {
    log_.warning("session ", s.id(), ": ", e.what());
    co_return verdict::answer(response::err("[SYS/TEMP] your mail cannot be read just now, try again later"));
  }
  co_return verdict::next();
}

awaitable<verdict> merge_module::on_event(session& s, event e) {
  // The PASS that took the snapshot failed later in the chain: nothing of
  // it is kept.
  if (e == event::command_failed) s.drop_slot(this);
  co_return verdict::next();
}

awaitable<std::shared_ptr<maildrop>> merge_module::open(session& s) {
  if (opened* o = s.find_slot<opened>(this); o && o->drop) co_return o->drop;
  std::vector<merged_maildrop::part> parts;
  std::vector<std::string> missing;
  for (const source& src : sources_) {
    std::shared_ptr<maildrop> drop;
    try {
      drop = co_await src.maildrops->open(s);
    } catch (const spool_error& e) {
      log_.warning("session ", s.id(), ": punt ", src.punt->punt(), " left out: ", e.what());
    } catch (const std::exception& e) {
      log_.error("session ", s.id(), ": punt ", src.punt->punt(), " left out after an unexpected error: ", e.what());
    }
    // Availability as this login found it: 1 read, 0 left out.
    metrics_.set("sdps_punt_up", {{"punt", src.punt->punt()}}, drop ? 1 : 0);
    if (drop)
      parts.push_back({src.punt->punt(), std::move(drop)});
    else
      missing.push_back(src.punt->punt());
  }
  if (parts.empty()) throw spool_error("no punt could be read (" + join(missing) + ")");
  auto drop = std::make_shared<merged_maildrop>(std::move(parts), std::move(missing), log_);
  s.slot<opened>(this).drop = drop;
  co_return drop;
}

std::shared_ptr<maildrop> merge_module::current(session& s) {
  opened* o = s.find_slot<opened>(this);
  return o ? o->drop : nullptr;
}

}  // namespace sdps::merge
