#pragma once
// Reading sdps YAML files: the server's own keys and each chain entry.

#include "networks.hpp"

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

/// settings over one YAML mapping. Records which keys were read so the
/// loader can refuse unknown ones.
class yaml_settings final : public sdps::settings {
 public:
  /// `ignored` keys are consumed by the caller (module, name, timeout).
  yaml_settings(YAML::Node node, std::filesystem::path file, std::string owner,
                std::set<std::string> ignored = {});

  bool has(const std::string& key) const override;
  std::vector<std::string> keys() const override;
  std::string string(const std::string& key) const override;
  std::string string_or(const std::string& key, const std::string& fallback) const override;
  std::int64_t integer_or(const std::string& key, std::int64_t fallback) const override;
  bool boolean_or(const std::string& key, bool fallback) const override;
  std::chrono::milliseconds duration_or(const std::string& key,
                                        std::chrono::milliseconds fallback) const override;
  std::filesystem::path path(const std::string& key) const override;
  std::filesystem::path path_or(const std::string& key,
                                const std::filesystem::path& fallback) const override;
  std::vector<std::string> strings_or(const std::string& key,
                                      const std::vector<std::string>& fallback) const override;
  std::unique_ptr<sdps::settings> child(const std::string& key) const override;
  std::string where(const std::string& key = {}) const override;

  /// Keys present but never read, for the unknown-key check.
  std::vector<std::string> unread() const;
  /// Throws config_error naming the first unread key.
  void refuse_unread(const std::string& what) const;

 private:
  YAML::Node get(const std::string& key) const;
  [[noreturn]] void bad(const std::string& key, const std::string& expected) const;
  YAML::Node peek(const std::string& key) const;

  YAML::Node node_;
  std::filesystem::path file_;
  std::string owner_;
  mutable std::set<std::string> read_;
};

/// Parses "250ms", "30s", "5m", "2h", "1d" or a bare number of seconds.
/// Returns false on anything else.
bool parse_duration(const std::string& text, std::chrono::milliseconds& out);

/// Parses "127.0.0.1:110", "[::1]:110", "*:110" (all IPv4), "[::]:110".
/// Throws config_error on anything else.
asio::ip::tcp::endpoint parse_endpoint(const std::string& text);

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
  std::vector<network> trusted_networks;
  std::string customer_domain = "demon.co.uk";
  std::string server_name;  // defaults to the machine's host name
  std::string banner;       // greeting text after "+OK "
  std::chrono::milliseconds idle_timeout{std::chrono::minutes(30)};
  std::size_t max_sessions = 1000;
  /// Peers (load balancers) whose connections must begin with a PROXY
  /// protocol header, and how long they have to send it.
  std::vector<network> proxy_protocol_from;
  std::chrono::milliseconds proxy_protocol_timeout{std::chrono::seconds(5)};
  /// Sessions one client address may hold at once; 0 is no limit.
  std::size_t max_sessions_per_address = 20;
  /// From connect to a successful login, whatever the client sends; 0 is none.
  std::chrono::milliseconds login_timeout{std::chrono::seconds(60)};
  std::string user;  // drop privileges to this user after binding
  std::string log_level = "info";
  std::string log_format = "text";  // or "json": one JSON object per line
  /// Where to serve GET /metrics (Prometheus text format); none by default.
  std::optional<asio::ip::tcp::endpoint> metrics_listen;
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
};

/// The most `threads:` may ask for.
inline constexpr unsigned max_threads = 256;
/// The default of `threads:`: the number of cores (1 if unknown), at most
/// max_threads.
unsigned default_threads();

/// Reads and validates FILE. Throws config_error with file and line.
server_config load_config(const std::filesystem::path& file);

}  // namespace sdps::core
