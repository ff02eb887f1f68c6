// login_hours: a site's login policy, built outside the tree against the
// public headers only. It takes part in the `authorize` stage of every
// login (USER/PASS and AUTH PLAIN alike): after the password has been
// verified, before anything is locked. Wherever it stands in the chain,
// no way of logging in skips it.
//
//   - module: login_hours
//     hours: "08:00-20:00"   # when logins are open, local time; "22:00-06:00" crosses midnight
//     hosts: [sample]        # the hosts it applies to (default: every host)

#include <sdps/module.hpp>

#include <algorithm>
#include <cstdio>
#include <ctime>
#include <string>
#include <vector>

namespace example {

class login_hours final : public sdps::module {
 public:
  explicit login_hours(sdps::module_config& config)
      : hosts_(config.options().strings_or("hosts", {})), log_(config.log()) {
    const std::string hours = config.options().string("hours");
    unsigned h1 = 0, m1 = 0, h2 = 0, m2 = 0;
    char end = 0;
    if (std::sscanf(hours.c_str(), "%2u:%2u-%2u:%2u%c", &h1, &m1, &h2, &m2, &end) != 4 || h1 > 23 || h2 > 23 ||
        m1 > 59 || m2 > 59)
      config.options().fail("hours", "'hours' must be HH:MM-HH:MM, as \"08:00-20:00\"");
    open_ = h1 * 60 + m1;
    close_ = h2 * 60 + m2;
  }

  // The stage it runs in: the core calls on_login() for every login there.
  sdps::stage_set login_stages() const override { return {sdps::login_stage::authorize}; }

  sdps::awaitable<sdps::login_verdict> on_login(sdps::session&, sdps::login_stage,
                                                sdps::login_attempt& attempt) override {
    const std::string& host = attempt.who().host;  // verified: the verify stage has passed
    if (!hosts_.empty() && std::find(hosts_.begin(), hosts_.end(), host) == hosts_.end())
      co_return sdps::login_verdict::proceed();
    if (is_open(minute_of_day())) co_return sdps::login_verdict::proceed();
    log_.info("refusing a login of ", attempt.who().display(), " outside its hours");
    co_return sdps::login_verdict::refuse(
        sdps::response::err("[SYS/TEMP] logins are closed at this hour, try again later"), "outside hours");
  }

 private:
  static unsigned minute_of_day() {
    const std::time_t now = std::time(nullptr);
    std::tm local{};
    localtime_r(&now, &local);
    return static_cast<unsigned>(local.tm_hour * 60 + local.tm_min);
  }
  bool is_open(unsigned minute) const {
    if (open_ <= close_) return minute >= open_ && minute < close_;
    return minute >= open_ || minute < close_;  // across midnight
  }

  std::vector<std::string> hosts_;
  sdps::logger& log_;
  unsigned open_ = 0, close_ = 0;
};

}  // namespace example

SDPS_MODULE("login_hours", "example: logins only at the configured hours", example::login_hours);
