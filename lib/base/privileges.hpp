#pragma once
/// @file
/// Giving up root for the config's `user:`, the one way both programs do
/// it: sdpsd once its listeners are bound, the admin tool before it
/// touches a file (so that what it writes belongs to the user sdpsd runs
/// as).

#include <functional>
#include <string>
#include <vector>

namespace sdps::base {

/// What become_user does when the process is not root, and so cannot
/// switch, and is not `user` already.
enum class when_unprivileged {
  carry_on,  ///< stay who it is (the admin tool run by an admin)
  refuse,    ///< throw: the process must run as `user` (sdpsd)
};

/// Becomes `user` for good when running as root: its supplementary groups
/// (initgroups), its group, then its user; then checks that setuid(0) and
/// setgid(0) both fail, so that nothing in the process can take root back.
/// Returns true if it switched; false when there is nothing to do: `user`
/// is empty or names root, or the process runs as `user` already, or is
/// not root and `when_not_root` is carry_on (then `user` is not even
/// looked up). Throws std::runtime_error with one line:
///   user 'NAME' (the config's 'user:') does not exist
///   cannot switch to user 'NAME': not running as root       (refuse)
///   cannot switch to user 'NAME': <the system's reason>
///   privileges were not dropped: setuid(0) still works      (or setgid(0))
bool become_user(const std::string& user, when_unprivileged when_not_root);

/// Runs `work` in a child process that first becomes `user` for good
/// (become_user), and returns the lines `work` returned, in order: how
/// sdpsd, started as root, checks what its `user:` can reach by trying it.
/// The caller waits for the child; nothing the child changes in memory
/// reaches the caller. Run as root: a process that is not root cannot
/// become another user (the child then says so). A child that cannot
/// switch, or whose `work` throws, returns one line saying why ("cannot
/// check as user 'sdps': ..."). Throws std::runtime_error when no child
/// can be made, or it dies.
std::vector<std::string> lines_as_user(const std::string& user, const std::function<std::vector<std::string>()>& work);

}  // namespace sdps::base
