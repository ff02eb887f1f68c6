// xhello: a small sdps module built outside the tree, against the public
// headers only. It answers XHELLO in any state, and optionally other
// commands too ("also:"), which shows that chain order decides who answers:
// placed before `commands`, it answers NOOP; placed after, it never sees it.
//
//   - module: xhello
//     greeting: "hello from the example"
//     also: [NOOP]
//     deny: [127.0.0.3]      # refuse these client addresses at connect

#include <sdps/module.hpp>

#include <algorithm>

namespace example {

class xhello final : public sdps::module {
 public:
  explicit xhello(sdps::module_config& config)
      : greeting_(config.options().string_or("greeting", "hello")),
        also_(config.options().strings_or("also", {})),
        deny_(config.options().strings_or("deny", {})) {
    for (auto& name : also_)
      std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return std::toupper(c); });
  }

  std::vector<sdps::command_spec> commands() const override {
    std::vector<sdps::command_spec> specs{{"XHELLO", sdps::any_state}};
    for (const auto& name : also_) specs.push_back({name, sdps::any_state});
    return specs;
  }

  sdps::awaitable<sdps::verdict> on_command(sdps::session& s, const sdps::command& cmd) override {
    if (cmd.name == "XHELLO")
      co_return sdps::verdict::answer(sdps::response::ok(greeting_ + ", " + s.remote_endpoint().address().to_string()));
    co_return sdps::verdict::answer(sdps::response::ok(greeting_ + " (" + cmd.name + " answered by xhello)"));
  }

  // Only `connect` reaches on_event: every other event costs nothing.
  sdps::event_set events() const override { return {sdps::event::connect}; }

  sdps::awaitable<sdps::verdict> on_event(sdps::session& s, sdps::event e) override {
    if (e == sdps::event::connect) {
      const auto address = s.remote_endpoint().address().to_string();
      if (std::find(deny_.begin(), deny_.end(), address) != deny_.end()) {
        s.log().info("refusing ", address, " by site policy");
        co_return sdps::verdict::answer(sdps::response::err("connections from your address are not accepted"));
      }
    }
    co_return sdps::verdict::next();
  }

  void capabilities(sdps::session&, std::vector<std::string>& lines) const override { lines.push_back("XHELLO"); }

 private:
  std::string greeting_;
  std::vector<std::string> also_;
  std::vector<std::string> deny_;
};

}  // namespace example

SDPS_MODULE("xhello", "example: answers XHELLO, and optionally other commands", example::xhello);
