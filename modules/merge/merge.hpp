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
/// the parts' order). Reads and marks go to the part holding the message.
/// All calls on the session's event loop.
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
  awaitable<std::unique_ptr<body_source>> retrieve(std::size_t index,
                                                   std::optional<std::uint64_t> body_lines) override;
  awaitable<void> mark_read(std::size_t index) override;
  awaitable<sdps::envelope> envelope(std::size_t index) override;
  /// Copies this maildrop's deletion marks onto the parts, then asks each
  /// part holding a deleted message to remove its own, one after another,
  /// and sums the results. A part that throws counts all its deletions as
  /// failed; the others go ahead.
  awaitable<removal_result> remove_deleted() override;
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
/// those its `punts:` setting lists). On PASS (after lock) it takes the
/// session's snapshot, which later open() calls return, and passes PASS
/// on; a punt whose open throws is left out, logged and reported by the
/// maildrop's missing(). Only if no punt at all can be read does PASS get
/// `-ERR [SYS/TEMP]`.
class merge_module final : public sdps::module, public maildrop_source {
 public:
  /// Reads `punts:` (optional); provides maildrop_source. Throws config_error.
  explicit merge_module(module_config& config);

  std::vector<command_spec> commands() const override;
  event_set events() const override { return {event::command_failed}; }
  /// Finds each spool's maildrop_source; throws config_error.
  void start(const registry& services) override;
  awaitable<verdict> on_command(session& s, const command& cmd) override;
  /// command_failed (a PASS refused after merge): drops the snapshot.
  awaitable<verdict> on_event(session& s, event e) override;

  /// The session's merged maildrop: opened once per PASS (a new PASS opens
  /// afresh), then the same one. Throws spool_error if no punt could be
  /// read.
  awaitable<std::shared_ptr<maildrop>> open(session& s) override;
  std::shared_ptr<maildrop> current(session& s) override;

 private:
  struct source {
    std::string instance;
    spool* punt;
    maildrop_source* maildrops;
  };
  struct opened;

  logger& log_;
  sdps::metrics& metrics_;  // punt availability
  std::string instance_;
  std::vector<std::string> punts_;
  std::vector<source> sources_;
};

}  // namespace sdps::merge
