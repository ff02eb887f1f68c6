#pragma once
// The sdps admin tool: what every subcommand gets from the command line
// and the config file.

#include "arguments.hpp"
#include "config/site.hpp"
#include "hostdb/store.hpp"

#include <sdps/log.hpp>

#include <filesystem>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace sdps::admin {

/// The parts of an sdps config the admin tool works on (lib/config reads
/// them as sdpsd does). Any of the shipped configs (embedded, back end,
/// front end) names the same hosts and spools.
using site = config::site;

/// Ends the tool with `status` (sysexits.h) after main() prints
/// "sdps: WHAT" on standard error.
class tool_exit : public std::runtime_error {
 public:
  tool_exit(int status, const std::string& what) : std::runtime_error(what), status_(status) {}
  int status() const { return status_; }

 private:
  int status_;
};

/// What a subcommand works on besides its words: the config file named by
/// `-c`, read only when the subcommand first asks for it (after its own
/// command line was parsed: --help and usage errors need no config), and
/// the switch to the config's `user:`. One per run of the tool.
class tool {
 public:
  /// What a subcommand is about to write: checked, once the tool has
  /// switched user, so that it says what to chown before failing half way.
  enum class writes { nothing, hosts, punts };

  /// `config_file` as given with -c; empty when none was given.
  explicit tool(std::filesystem::path config_file) : file_(std::move(config_file)) {}
  /// A tool over a site already read (unit tests): no file, no user switch.
  explicit tool(admin::site loaded) : site_(std::move(loaded)), user_checked_(true) {}

  /// The site, read at the first call. Run as root with `user:` set, the
  /// tool has become that user by the time this returns (so that what it
  /// writes belongs to the user sdpsd runs as) and checked that this user
  /// can write what `what` names. Throws config_error (exit 78),
  /// tool_exit: 64 without -c FILE, 77 when the user cannot write there.
  const admin::site& site(writes what = writes::nothing);
  /// The site without the switch of user: for `sdps lmtp`, which binds its
  /// sockets as root first and then calls become_user().
  const admin::site& site_as_started();
  /// The site for talking to the running server (`who`, `kick`,
  /// `status`): `hosts:` not required, no switch of user (the control
  /// socket's mode decides who may ask).
  const admin::site& server_site();
  /// Switches to the config's `user:` now, when running as root (it is
  /// for good). True if it switched. Throws std::runtime_error.
  bool become_user();
  /// After a switch: throws tool_exit (77) with the chown to run when the
  /// user cannot write what `what` names. site() calls it.
  void check_writable(writes what) const;

  /// Whether the tool runs as the config's user after a switch from root
  /// (main() then explains a "Permission denied").
  bool switched() const { return switched_; }
  /// The config's `user:` (empty before the site is read, or when unset).
  std::string user() const { return site_ ? site_->user : std::string(); }

 private:
  /// Reads the config file once; `need_hosts`: refuse it without `hosts:`.
  const admin::site& read(bool need_hosts);

  std::filesystem::path file_;
  std::optional<admin::site> site_;
  bool user_checked_ = false;
  bool switched_ = false;
};

/// Where `hosts:` points: a hosts file, or a PostgreSQL database.
/// Throws std::invalid_argument for a URI libpq refuses (or that holds a
/// password).
inline hostdb::location hosts_location(const site& s) {
  if (!s.hosts_uri.empty()) return hostdb::locate(s.hosts_uri, {});
  hostdb::location file;
  file.file = s.hosts;
  // The owner sdpsd trusts too (the tool run as another user than `user:`
  // reads the same file).
  if (!s.user.empty())
    if (const auto account = base::find_account(s.user)) file.owner = account->uid;
  return file;
}

/// The host store `s` names, for the mail commands' host checks (deliver,
/// lmtp, flush, spool list): one finder per store for the whole process,
/// so that lmtp's connections share its table or database connection
/// (queue.cpp).
hostdb::host_finder& host_finder_of(const site& s);

/// `'text'` for an error message, made printable and cut to `limit`.
/// Built by appending: GCC 12 at -O3 reports a false -Wrestrict on
/// `"'" + std::string` (operator+(const char*, string&&) inlined; GCC bug
/// 105651), so the tools do not write messages that way.
inline std::string quoted(std::string_view text, std::size_t limit) {
  std::string out = "'";
  out += printable(text, limit);
  out += '\'';
  return out;
}

/// Subcommands. `words` are the words after the subcommand's name
/// ("host", "deliver", ...). Each parses them with `arguments` (so --help
/// works without a config), then asks `t` for the site; it returns a
/// sysexits.h status and prints errors to stderr as "sdps: ...".
int host_main(tool& t, const std::vector<std::string>& words);     // host.cpp
int deliver_main(tool& t, const std::vector<std::string>& words);  // deliver.cpp
int spool_main(tool& t, const std::vector<std::string>& words);    // spool.cpp
int flush_main(tool& t, const std::vector<std::string>& words);    // flush.cpp
int expire_main(tool& t, const std::vector<std::string>& words);   // expire.cpp
int lmtp_main(tool& t, const std::vector<std::string>& words);     // lmtp.cpp
/// Questions to a running sdpsd over its `control_socket:` (control.cpp);
/// they read the config without `hosts:` and stay the user who runs them.
int who_main(tool& t, const std::vector<std::string>& words);
int kick_main(tool& t, const std::vector<std::string>& words);
int status_main(tool& t, const std::vector<std::string>& words);

}  // namespace sdps::admin
