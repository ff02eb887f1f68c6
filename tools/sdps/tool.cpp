// The admin tool's config and user: read when a subcommand first needs
// them, never for --help.

#include "admin.hpp"

#include "base/privileges.hpp"
#include "config/yaml_settings.hpp"

#include <sysexits.h>
#include <unistd.h>

namespace sdps::admin {

const admin::site& tool::read(bool need_hosts) {
  if (site_) return *site_;
  if (file_.empty()) throw tool_exit(EX_USAGE, "-c FILE (the config sdpsd reads) is required");
  const auto document = config::load_document(file_);
  const config::yaml_settings top(document.root, document.file, "");
  if (need_hosts && !top.has("hosts"))
    top.fail("hosts", "'hosts' (the hosts file or a postgresql:// URI) is required by the sdps tool");
  admin::site read = config::read_site(top);
  try {
    if (top.has("hosts")) hosts_location(read);
  } catch (const std::invalid_argument& e) {
    top.fail("hosts", e.what());
  }
  site_ = std::move(read);
  return *site_;
}

const admin::site& tool::site_as_started() { return read(true); }

const admin::site& tool::server_site() { return read(false); }

bool tool::become_user() {
  if (user_checked_) return switched_;
  const admin::site& s = site_as_started();
  user_checked_ = true;
  // Run as root with `user:` configured, the tool becomes that user before
  // touching anything, so the host database and spool files it writes
  // belong to the user sdpsd runs as. Run by anyone else, it works as who
  // runs it.
  switched_ = base::become_user(s.user, base::when_unprivileged::carry_on);
  return switched_;
}

const admin::site& tool::site(writes what) {
  const admin::site& s = site_as_started();
  if (become_user()) check_writable(what);
  return s;
}

void tool::check_writable(writes what) const {
  if (!switched_ || what == writes::nothing) return;
  const admin::site& s = *site_;
  // Say what to do before failing half way with "Permission denied".
  std::vector<std::filesystem::path> folders;
  if (what == writes::hosts && !s.hosts.empty()) folders.push_back(s.hosts.parent_path());
  if (what == writes::punts)
    for (const auto& entry : s.punts)
      folders.push_back(std::filesystem::exists(entry.second) ? entry.second : entry.second.parent_path());
  for (const auto& dir : folders)
    if (::access(dir.c_str(), W_OK | X_OK) != 0)
      throw tool_exit(EX_NOPERM, "run as root, sdps works as the config's user '" + s.user +
                                     "' so that sdpsd can use what it writes, but '" + s.user + "' cannot write " +
                                     dir.string() + ": run  chown -R " + s.user + ": " + dir.string() +
                                     "  and try again");
}

}  // namespace sdps::admin
