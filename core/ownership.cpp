#include "ownership.hpp"

#include "base/account.hpp"
#include "base/privileges.hpp"

#include <sys/resource.h>
#include <unistd.h>

namespace sdps::core {

access_report check_as_user(const std::string& user, const std::function<std::vector<std::string>()>& checks) {
  access_report out;
  if (user.empty()) {
    out.problems = checks();
    return out;
  }
  const auto who = base::find_account(user);
  if (!who) {
    out.problems.push_back("user '" + user +
                           "' (the config's 'user:') does not exist: create it, e.g. adduser --system --group " + user);
    return out;
  }
  if (::geteuid() == who->uid) {
    out.problems = checks();
  } else if (::geteuid() == 0) {
    out.problems = base::lines_as_user(user, checks);
  } else {
    out.note = "not running as root or as user '" + user + "' (the config's 'user:'): the access checks ran as user '" +
               base::current_user_name() + "'";
    out.problems = checks();
  }
  return out;
}

void check_descriptor_limit(const server_config& config, logging::source_log& log) {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0) return;
  if (limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &limit);
    ::getrlimit(RLIMIT_NOFILE, &limit);
  }
  // A session holds its socket, plus a spool file while a message is read,
  // and per punt a back-end link (front end) or, for a host login, a lock
  // file: the worst case is counted. (A user login shares its lock file
  // with the host's other user logins: docs/spool.md, Locks.)
  const std::size_t punts = config.site.punts.empty() ? 1 : config.site.punts.size();
  const rlim_t needed = static_cast<rlim_t>(config.max_sessions * (2 + punts) + 64);
  if (limit.rlim_cur != RLIM_INFINITY && limit.rlim_cur < needed)
    log.warning("the open-file limit is ", limit.rlim_cur, ", fewer than the ", needed, " that max_sessions ",
                config.max_sessions, " may need: raise LimitNOFILE (systemd) or ulimit -n");
}

}  // namespace sdps::core
