#pragma once
/// @file
/// The site part of an sdps config: what every program that reads one
/// needs besides the server's own keys (listeners, TLS, limits, the
/// chain, which only sdpsd reads). sdpsd, the admin tool and any of the
/// shipped configs (embedded, back end, front end) agree on it.

#include "config/yaml_settings.hpp"
#include "logging/sink.hpp"

#include <cstdint>
#include <filesystem>
#include <map>
#include <set>
#include <string>

namespace sdps::config {

/// The site's files, names and limits, checked and resolved.
struct site {
  std::filesystem::path config_file;                   ///< the file read, absolute
  std::filesystem::path hosts;                         ///< `hosts:` naming a file, resolved; empty when absent or a URI
  std::string hosts_uri;                               ///< `hosts:` naming a PostgreSQL database (postgresql:// or
                                                       ///< postgres://), as written (lib/hostdb checks it); else empty
  std::map<std::string, std::filesystem::path> punts;  ///< `punts:`, resolved, by name
  std::string customer_domain = "demon.co.uk";         ///< `customer_domain:`, lower case, no leading dot
  std::string server_name;                             ///< `server_name:` (default: the machine's name)
  std::string user;                                    ///< `user:`, the account sdps runs as; empty: none
  std::string password_cost = "interactive";           ///< `password_cost:` (Argon2id), checked by lib/hostdb
  std::uint64_t max_message_size = 50ull << 20;        ///< `max_message_size:` (sdps lmtp), octets
  /// `log_level`, `log_format`, `log_target`, `syslog_facility`,
  /// `syslog_socket`: how sdpsd and `sdps lmtp` log (the program sets
  /// `log.ident`).
  logging::options log;
  /// `control_socket:`, resolved: the unix socket sdpsd answers `sdps
  /// who`, `kick` and `status` on; empty when absent (none).
  std::filesystem::path control_socket;
};

/// The top-level keys read_site() reads (a static list the reader and the
/// documentation test, `sdpsd --list-keys`, share).
extern const std::set<std::string> site_keys;

/// The least `max_message_size:` may be: a bounce's header and a few lines.
inline constexpr std::uint64_t min_message_size = 1024;

/// Reads the site from `top`, the file's top-level mapping (its keys
/// count as read there). Paths resolve against the file's folder. Throws
/// config_error with file and line for a value of the wrong type or out
/// of range.
site read_site(const yaml_settings& top);

}  // namespace sdps::config
