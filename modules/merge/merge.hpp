#pragma once
// The merge module: one maildrop over several punts' maildrops.

#include <sdps/maildrop.hpp>
#include <sdps/module.hpp>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace sdps::merge {

/// One session's maildrop made of the maildrops of several punts: every
/// message of every part, numbered oldest first (arrival, then UIDL, then
/// the parts' order). Reads and removals go to the part holding the
/// message. All calls on the session's event loop.
class merged_maildrop final : public maildrop {
 public:
  struct part {
    std::string punt;
    std::shared_ptr<maildrop> drop;
  };
  /// `missing`: the punts left out because they could not be opened.
  merged_maildrop(std::vector<part> parts, std::vector<std::string> missing, logger& log);

  std::size_t count() const override { return order_.size(); }
  const message_info& info(std::size_t index) const override;
  awaitable<std::unique_ptr<body_source>> retrieve(std::size_t index, retrieval how) override;
  awaitable<sdps::envelope> envelope(std::size_t index) override;
  /// Asks each part holding some of the messages to remove its own, one
  /// after another, and sums the results. A part that throws counts all
  /// its messages as not removed; the others go ahead.
  awaitable<removal_result> remove(std::vector<std::size_t> indexes) override;
  /// The punts left out at open, and whatever the parts report missing.
  std::vector<std::string> missing() const override;

 private:
  struct where {
    std::size_t part;
    std::size_t index;
    std::int64_t arrival;  // the message's, so that ordering seldom asks the part
  };
  const where& locate(std::size_t index) const;

  std::vector<part> parts_;
  std::vector<where> order_;
  std::vector<std::string> missing_;
  logger& log_;
};

/// The `merge` module. Provides sdps::maildrop_source over the
/// maildrop_sources of the spool instances (every spool in the chain, or
/// those its `punts:` setting lists): placed after them, it is where the
/// core opens the sessions' maildrops at login. A punt whose open throws
/// is left out, logged and reported by the maildrop's missing(). Only if
/// no punt at all can be read does open() throw (the login then gets
/// `-ERR [SYS/TEMP]`). No per-session state.
class merge_module final : public sdps::module, public maildrop_source {
 public:
  /// Reads `punts:` (optional); provides maildrop_source. Throws config_error.
  explicit merge_module(module_config& config);

  /// Finds each spool's maildrop_source; throws config_error.
  void start(const registry& services) override;

  /// Opens every part for `who` and merges them. Throws spool_error if no
  /// punt could be read.
  awaitable<std::shared_ptr<maildrop>> open(session& s, const identity& who) override;

 private:
  struct source {
    std::string instance;
    spool* punt;
    maildrop_source* maildrops;
  };

  logger& log_;
  std::string instance_;
  std::vector<std::string> punts_;
  std::vector<source> sources_;
};

}  // namespace sdps::merge
