// xcount: a command of a site's own, built outside the tree against the
// public headers only. XCOUNT, in TRANSACTION, tells the client how its
// maildrop stands: the messages, those marked deleted, and LAST. It reads
// the session's maildrop and marks, so it sees exactly what the standard
// commands see, wherever it stands in the chain.
//
//   - module: xcount

#include <sdps/maildrop.hpp>
#include <sdps/module.hpp>

#include <string>

namespace example {

class xcount final : public sdps::module {
 public:
  explicit xcount(sdps::module_config&) {}

  std::vector<sdps::command_spec> commands() const override {
    return {{"XCOUNT", sdps::pop3_state::transaction}};
  }

  sdps::awaitable<sdps::verdict> on_command(sdps::session& s, const sdps::command& cmd) override {
    if (!cmd.args().empty()) co_return sdps::verdict::answer(sdps::response::err("syntax: XCOUNT"));
    const auto drop = s.maildrop();
    if (!drop) co_return sdps::verdict::answer(sdps::response::err("[SYS/TEMP] no maildrop, try again later"));
    const std::size_t deleted = s.marks().deleted_count();
    co_return sdps::verdict::answer(sdps::response::ok(std::to_string(drop->count()) + " messages, " +
                                                       std::to_string(deleted) + " marked deleted, last " +
                                                       std::to_string(s.marks().last())));
  }

  void capabilities(sdps::session& s, std::vector<std::string>& lines) const override {
    if (s.state() == sdps::pop3_state::transaction) lines.push_back("XCOUNT");
  }
};

}  // namespace example

SDPS_MODULE("xcount", "example: XCOUNT, the maildrop's counts", example::xcount);
