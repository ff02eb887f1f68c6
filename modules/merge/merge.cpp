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

// Not coroutines: the part's own awaitable is handed on (no frame of its
// own per message). The part lives as long as this maildrop, which the
// caller holds while it awaits.
awaitable<std::unique_ptr<body_source>> merged_maildrop::retrieve(std::size_t index, retrieval how) {
  const where& w = locate(index);
  return parts_[w.part].drop->retrieve(w.index, how);
}

awaitable<sdps::envelope> merged_maildrop::envelope(std::size_t index) {
  const where& w = locate(index);
  return parts_[w.part].drop->envelope(w.index);
}

awaitable<removal_result> merged_maildrop::remove(std::vector<std::size_t> indexes) {
  // Each part's own indexes, ascending (the merged order keeps each part's
  // messages in their own order).
  std::vector<std::vector<std::size_t>> mine(parts_.size());
  for (const std::size_t i : indexes) {
    const where& w = locate(i);
    mine[w.part].push_back(w.index);
  }
  removal_result total;
  for (std::size_t p = 0; p < parts_.size(); ++p) {
    if (mine[p].empty()) continue;
    std::sort(mine[p].begin(), mine[p].end());
    const std::size_t asked = mine[p].size();
    const std::shared_ptr<maildrop> drop = parts_[p].drop;
    try {
      const removal_result r = co_await drop->remove(std::move(mine[p]));
      total.removed += r.removed;
      total.failed += r.failed;
    } catch (const std::exception& e) {
      log_.error("removing ", asked, " deleted message(s) on punt ", parts_[p].punt, ": ", e.what());
      total.failed += asked;
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

merge_module::merge_module(module_config& config)
    : log_(config.log()),
      instance_(config.instance()),
      punts_(config.options().strings_or("punts", {})) {
  if (config.options().has("punts") && punts_.empty())
    config.options().fail("punts", "'punts' must list at least one punt (or be left out: every spool)");
  config.require<spool>();
  config.provide<maildrop_source>(this);
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

awaitable<std::shared_ptr<maildrop>> merge_module::open(session& s, const identity& who) {
  std::vector<merged_maildrop::part> parts;
  std::vector<std::string> missing;
  for (const source& src : sources_) {
    std::shared_ptr<maildrop> drop;
    try {
      drop = co_await src.maildrops->open(s, who);
    } catch (const spool_error& e) {
      log_.warning("session ", s.id(), ": punt ", src.punt->punt(), " left out: ", e.what());
    } catch (const std::exception& e) {
      log_.error("session ", s.id(), ": punt ", src.punt->punt(), " left out after an unexpected error: ", e.what());
    }
    if (drop)
      parts.push_back({src.punt->punt(), std::move(drop)});
    else
      missing.push_back(src.punt->punt());
  }
  if (parts.empty()) throw spool_error("no punt could be read (" + join(missing) + ")");
  co_return std::make_shared<merged_maildrop>(std::move(parts), std::move(missing), log_);
}

}  // namespace sdps::merge
