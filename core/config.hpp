#pragma once
// Reading sdps YAML files: the server's own keys and each chain entry,
// on lib/config (documents, settings, the site part every program reads).

#include "base/address_prefix.hpp"
#include "config/site.hpp"
#include "config/yaml_settings.hpp"

#include <sdps/asio.hpp>
#include <sdps/settings.hpp>

#include <yaml-cpp/yaml.h>

#include <chrono>
#include <filesystem>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace sdps::core {

/// The settings implementation is lib/config's; the core's code names it
/// as its own.
using config::yaml_settings;

/// The listeners' endpoint rules: "127.0.0.1:110", "[::1]:110", "*:110"
/// (every IPv4 address), "[::]:110", port 0 for any free port. Throws
/// config_error with base::parse_endpoint's message.
asio::ip::tcp::endpoint parse_listen_endpoint(const std::string& text);

/// The warning for a metrics endpoint on a non-loopback address `where`:
/// names the risk and `metrics_allow` (`allow`, as given when
/// `allow_given`, else its loopback default).
std::string metrics_exposure(const asio::ip::tcp::endpoint& where, const std::vector<base::address_prefix>& allow,
                             bool allow_given);

/// A listening address and how clients there start.
struct listener {
  asio::ip::tcp::endpoint endpoint;
  /// Implicit TLS (POP3S, RFC 8314): the handshake comes before the greeting.
  bool implicit_tls = false;
};

/// The top-level `tls:` section.
struct tls_config {
  std::filesystem::path certificate;  ///< PEM chain, leaf first
  std::filesystem::path key;          ///< PEM private key
  /// OpenSSL cipher list for TLS 1.2 (TLS 1.3 suites are OpenSSL's
  /// defaults); empty: Mozilla's "intermediate" list.
  std::string ciphers;
  std::chrono::milliseconds handshake_timeout{std::chrono::seconds(30)};
  /// How long a session ticket key seals new tickets (a ticket is valid
  /// that long); the key before still opens them for as long again.
  std::chrono::milliseconds ticket_key_rotation{std::chrono::hours(1)};
};

/// When USER/PASS and AUTH PLAIN are allowed (Dovecot's disable_plaintext_auth).
enum class plaintext_policy { always, tls_or_trusted };

/// One entry of the `modules:` list, before loading.
struct chain_entry {
  std::string module;    // module name: the .so file's stem
  std::string instance;  // `name:`, defaults to module
  std::chrono::milliseconds timeout{std::chrono::seconds(60)};
  std::shared_ptr<yaml_settings> options;
  std::string where;  // "file:line" of the entry
};

/// The whole configuration file.
struct server_config {
  std::filesystem::path file;
  std::vector<listener> listen;
  /// Set when the file has `tls:`: STLS on plain listeners, and what
  /// implicit-TLS listeners serve.
  std::optional<tls_config> tls;
  plaintext_policy plaintext_auth = plaintext_policy::tls_or_trusted;
  std::vector<base::address_prefix> trusted_networks;
  /// hosts, punts, customer_domain, server_name, user ...: what the admin
  /// tool reads too.
  config::site site;
  std::string banner;       // greeting text after "+OK "
  std::chrono::milliseconds idle_timeout{std::chrono::minutes(30)};
  std::size_t max_sessions = 1000;
  /// Peers (load balancers) whose connections must begin with a PROXY
  /// protocol header, and how long they have to send it.
  std::vector<base::address_prefix> proxy_protocol_from;
  std::chrono::milliseconds proxy_protocol_timeout{std::chrono::seconds(5)};
  /// Sessions one client address may hold at once; 0 is no limit.
  std::size_t max_sessions_per_address = 20;
  /// From connect to a successful login, whatever the client sends; 0 is none.
  std::chrono::milliseconds login_timeout{std::chrono::seconds(60)};
  /// Where to serve GET /metrics (Prometheus text format); none by default.
  std::optional<asio::ip::tcp::endpoint> metrics_listen;
  /// The clients the metrics endpoint answers (`metrics_allow:`; default:
  /// loopback only); others get 403.
  std::vector<base::address_prefix> metrics_allow;
  /// The group given the control socket (`site.control_socket`), if set.
  std::string control_socket_group;
  /// How often every punt is probed in the background (`sdps status`,
  /// sdps_punt_up).
  std::chrono::milliseconds probe_interval{std::chrono::seconds(5)};
  /// Extra folders searched for modules, before the one next to the binary.
  std::vector<std::filesystem::path> module_path;
  unsigned blocking_threads = 2;
  /// Event loops serving sessions, one thread each (`threads:`; default:
  /// default_threads()).
  unsigned threads = 1;
  std::vector<chain_entry> chain;
  /// The top-level mapping, for site sections that modules and the admin
  /// tool share (`hosts`, `punts`).
  std::shared_ptr<yaml_settings> globals;
  /// The whole file as read: what a reload compares, key by key.
  YAML::Node root;
  /// `--listen`/`--listen-tls` replaced the file's `listen:`.
  bool listen_from_command_line = false;
  /// What the file allows but the admin should hear about (a metrics
  /// endpoint on a non-loopback address): logged as warnings at start,
  /// printed by `sdpsd --check`.
  std::vector<std::string> warnings;
};

/// The top-level keys sdpsd itself reads, besides the site's
/// (config::site_keys); modules may read others (a static list that the
/// reader and `sdpsd --list-keys` share).
extern const std::set<std::string> server_keys;

/// The most `threads:` may ask for.
inline constexpr unsigned max_threads = 256;
/// The default of `threads:`: the number of cores (1 if unknown), at most
/// max_threads.
unsigned default_threads();

/// Reads and validates FILE. Throws config_error with file and line.
server_config load_config(const std::filesystem::path& file);

/// Validates a document already read (load_config after reading the
/// file). Throws config_error with file and line.
server_config read_config(const config::document& doc);

}  // namespace sdps::core
