#pragma once
/// @file
/// Socket activation: the listening sockets a service manager (systemd's
/// `.socket` units) opened for the process, found the way sd_listen_fds(3)
/// finds them, without libsystemd: LISTEN_PID names this process,
/// LISTEN_FDS counts descriptors from 3 on, LISTEN_FDNAMES (optional)
/// names them, colon-separated. Used by `sdps lmtp` and sdpsd.

#include <string>
#include <vector>

namespace sdps::base {

/// One socket passed by the service manager.
struct activated_socket {
  int fd = -1;       ///< owned by the caller from now on
  std::string name;  ///< its FileDescriptorName= ("" when none was given)
};

/// The sockets passed to this process, in order; empty when none were
/// (LISTEN_PID unset or another process's, LISTEN_FDS unset or 0). Each
/// gets FD_CLOEXEC, and the three variables are removed from the
/// environment, so that nothing the process starts takes them for its own.
/// Call once, early, before any thread starts (it changes the
/// environment). Throws std::runtime_error when the variables are
/// malformed, or a descriptor is not an open stream socket in the
/// listening state.
std::vector<activated_socket> take_activated_sockets();

}  // namespace sdps::base
