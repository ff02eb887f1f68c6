#pragma once
// systemd's readiness protocol (sd_notify(3)) without libsystemd: one
// datagram of "KEY=VALUE" lines to the AF_UNIX socket named by
// $NOTIFY_SOCKET ("@name" is an abstract socket).

#include <string>
#include <string_view>

namespace sdps::core {

/// Sends `state` ("READY=1", "STOPPING=1", "RELOADING=1", "STATUS=...") to
/// `socket_path`. Returns false when the socket cannot be reached.
bool notify_socket(const std::string& socket_path, std::string_view state);

/// Sends `state` to $NOTIFY_SOCKET; does nothing (and returns false) when
/// the variable is unset, i.e. when not started by systemd as Type=notify.
bool notify_service_manager(std::string_view state);

}  // namespace sdps::core
