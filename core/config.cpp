#include "config.hpp"

#include "base/endpoint.hpp"

#include <algorithm>
#include <cctype>
#include <sstream>
#include <stdexcept>
#include <thread>

namespace sdps::core {

namespace {

using config::location;
using base::zero_duration;

/// A list of ADDRESS or ADDRESS/PREFIX entries under `key`.
std::vector<base::address_prefix> prefixes(const yaml_settings& top, const std::string& key,
                                           const std::vector<std::string>& fallback) {
  std::vector<base::address_prefix> out;
  for (const std::string& text : top.strings_or(key, fallback)) {
    const auto prefix = base::address_prefix::parse(text);
    if (!prefix) top.fail(key, "'" + key + "': '" + text + "' is not an address or ADDRESS/PREFIX");
    out.push_back(*prefix);
  }
  return out;
}

}  // namespace

// The top-level keys the server reads, besides the site part
// (config::site_keys); modules see the rest through globals.
const std::set<std::string> server_keys = {
    "listen",        "tls",          "plaintext_auth", "trusted_networks",         "banner",
    "idle_timeout",  "max_sessions", "proxy_protocol_from", "proxy_protocol_timeout", "max_sessions_per_address",
    "login_timeout", "metrics_listen", "module_path",  "threads",                  "blocking_threads",
    "modules",       "control_socket_group", "probe_interval", "metrics_allow",
};

unsigned default_threads() {
  const unsigned cores = std::thread::hardware_concurrency();
  return std::clamp(cores, 1u, max_threads);
}

std::string metrics_exposure(const asio::ip::tcp::endpoint& where, const std::vector<base::address_prefix>& allow,
                             bool allow_given) {
  std::ostringstream text;
  text << "metrics_listen " << where << " is not a loopback address: the metrics (sessions, logins, punts) are "
       << "served in plain HTTP without authentication to every client 'metrics_allow' admits";
  if (!allow_given) {
    text << "; it is not set, so only loopback clients are answered (others get 403): list the networks of the "
            "Prometheus servers there, e.g. metrics_allow: [127.0.0.0/8, 10.1.0.0/16]";
    return text.str();
  }
  text << " (";
  for (std::size_t i = 0; i < allow.size(); ++i) text << (i ? ", " : "") << allow[i].to_string();
  text << "): keep it to the Prometheus servers' networks";
  return text.str();
}

asio::ip::tcp::endpoint parse_listen_endpoint(const std::string& text) {
  try {
    return base::parse_endpoint(text, {base::endpoint_host::address, true, true, 0}).tcp();
  } catch (const std::invalid_argument& e) {
    throw config_error(e.what());
  }
}

server_config load_config(const std::filesystem::path& given) { return read_config(config::load_document(given)); }

server_config read_config(const config::document& doc) {
  const YAML::Node& root = doc.root;
  server_config config;
  config.file = doc.file;
  config.root = root;

  yaml_settings top(root, config.file, "");
  config.site = config::read_site(top);
  config.site.log.ident = "sdpsd";
  const YAML::Node listen = root["listen"];
  if (!listen.IsDefined() || listen.IsNull()) {
    config.listen.push_back({parse_listen_endpoint("127.0.0.1:110"), false});
  } else {
    // Each entry is ADDR:PORT (plain, STLS offered when tls: is set) or
    // {address: ADDR:PORT, tls: implicit}.
    std::vector<YAML::Node> entries;
    if (listen.IsSequence())
      for (const YAML::Node& item : listen) entries.push_back(item);
    else
      entries.push_back(listen);
    for (const YAML::Node& item : entries) {
      const std::string at = location(config.file, item);
      try {
        if (item.IsScalar()) {
          config.listen.push_back({parse_listen_endpoint(item.Scalar()), false});
        } else if (item.IsMap()) {
          yaml_settings entry(item, config.file, "");
          listener l{parse_listen_endpoint(entry.string("address")), false};
          const std::string mode = entry.string_or("tls", "no");
          if (mode == "implicit") l.implicit_tls = true;
          else if (mode != "no" && mode != "false")
            throw config_error("'tls' of a listener must be 'implicit' (or absent)");
          entry.refuse_unread("a listener");
          config.listen.push_back(l);
        } else {
          throw config_error("an entry must be ADDRESS:PORT or {address: ADDRESS:PORT, tls: implicit}");
        }
      } catch (const config_error& e) {
        const std::string text = e.what();
        throw config_error(text.rfind(config.file.filename().string(), 0) == 0 ? text : at + ": listen: " + text);
      }
    }
    // Sockets from systemd replace the list, but without them an empty one
    // would start a server nobody can reach.
    if (config.listen.empty())
      throw config_error(location(config.file, listen) +
                         ": listen: an empty list: name at least one ADDRESS:PORT (sockets from systemd, when "
                         "given, replace the list)");
  }
  if (top.has("tls")) {
    const auto section = top.mapping("tls");
    tls_config tls;
    tls.certificate = section->path("certificate");
    tls.key = section->path("key");
    tls.ciphers = section->string_or("ciphers", "");
    tls.handshake_timeout = section->duration("handshake_timeout", tls.handshake_timeout, zero_duration::refused);
    tls.ticket_key_rotation = section->duration_or("ticket_key_rotation", tls.ticket_key_rotation);
    if (tls.ticket_key_rotation < std::chrono::seconds(1))
      section->fail("ticket_key_rotation", "'ticket_key_rotation' must be at least 1s");
    for (const std::string& key : section->keys())
      if (key != "certificate" && key != "key" && key != "ciphers" && key != "handshake_timeout" &&
          key != "ticket_key_rotation")
        section->fail(key, "unknown setting '" + key + "' in 'tls'");
    config.tls = std::move(tls);
  }
  const std::string policy = top.string_or("plaintext_auth", "tls_or_trusted");
  if (policy == "always") config.plaintext_auth = plaintext_policy::always;
  else if (policy == "tls_or_trusted") config.plaintext_auth = plaintext_policy::tls_or_trusted;
  else top.fail("plaintext_auth", "'plaintext_auth' must be always or tls_or_trusted");
  config.trusted_networks = prefixes(top, "trusted_networks", {"127.0.0.0/8", "::1/128"});
  config.banner = top.string_or("banner", "SDPS POP3 server ready");
  config.idle_timeout = top.duration("idle_timeout", config.idle_timeout, zero_duration::allowed);
  const auto max_sessions = top.integer_or("max_sessions", static_cast<std::int64_t>(config.max_sessions));
  if (max_sessions < 1) top.fail("max_sessions", "'max_sessions' must be at least 1");
  config.max_sessions = static_cast<std::size_t>(max_sessions);
  config.proxy_protocol_from = prefixes(top, "proxy_protocol_from", {});
  config.proxy_protocol_timeout =
      top.duration("proxy_protocol_timeout", config.proxy_protocol_timeout, zero_duration::refused);
  const auto per_address = top.integer_or("max_sessions_per_address",
                                          static_cast<std::int64_t>(config.max_sessions_per_address));
  if (per_address < 0) top.fail("max_sessions_per_address", "'max_sessions_per_address' must be 0 (no limit) or more");
  config.max_sessions_per_address = static_cast<std::size_t>(per_address);
  // 0: no login time limit.
  config.login_timeout = top.duration("login_timeout", config.login_timeout, zero_duration::allowed);
  if (top.has("metrics_listen")) {
    try {
      config.metrics_listen = parse_listen_endpoint(top.string("metrics_listen"));
    } catch (const config_error& e) {
      top.fail("metrics_listen", std::string("metrics_listen: ").append(e.what()));
    }
  }
  config.metrics_allow = prefixes(top, "metrics_allow", {"127.0.0.0/8", "::1/128"});
  if (top.has("metrics_allow") && !config.metrics_listen)
    top.fail("metrics_allow", "'metrics_allow' lists the clients of 'metrics_listen:', which is not set");
  if (config.metrics_listen && !config.metrics_listen->address().is_loopback())
    config.warnings.push_back(metrics_exposure(*config.metrics_listen, config.metrics_allow,
                                               top.has("metrics_allow")));
  config.control_socket_group = top.string_or("control_socket_group", "");
  if (top.has("control_socket_group") && config.site.control_socket.empty())
    top.fail("control_socket_group", "'control_socket_group' is the group of 'control_socket:', which is not set");
  config.probe_interval = top.duration("probe_interval", config.probe_interval, zero_duration::refused);
  if (config.probe_interval < std::chrono::milliseconds(100) || config.probe_interval > std::chrono::hours(1))
    top.fail("probe_interval", "'probe_interval' must be between 100ms and 1h");
  for (const std::string& dir : top.strings_or("module_path", {})) {
    if (dir.empty()) top.fail("module_path", "'module_path' entries must not be empty");
    config.module_path.push_back((config.file.parent_path() / dir).lexically_normal());
  }
  const auto serving = top.integer_or("threads", default_threads());
  if (serving < 1 || serving > static_cast<std::int64_t>(max_threads))
    top.fail("threads", "'threads' must be 1 to " + std::to_string(max_threads) +
                            " (event loop threads serving sessions; default: one per core)");
  config.threads = static_cast<unsigned>(serving);
  const auto threads = top.integer_or("blocking_threads", config.blocking_threads);
  if (threads < 1 || threads > 64) top.fail("blocking_threads", "'blocking_threads' must be 1 to 64");
  config.blocking_threads = static_cast<unsigned>(threads);

  const YAML::Node modules = root["modules"];
  if (!modules.IsDefined() || !modules.IsSequence() || modules.size() == 0)
    top.fail("modules", "'modules' must be a non-empty list of module entries");
  std::set<std::string> instances;
  for (const YAML::Node& item : modules) {
    chain_entry entry;
    entry.where = location(config.file, item);
    if (!item.IsMap()) throw config_error(entry.where + ": a module entry must be a mapping with 'module:'");
    auto options = std::make_shared<yaml_settings>(item, config.file, "", std::set<std::string>{});
    entry.module = options->string("module");
    for (char c : entry.module)
      if (!(std::islower(static_cast<unsigned char>(c)) || std::isdigit(static_cast<unsigned char>(c)) || c == '_'))
        options->fail("module", "module name '" + entry.module + "' may hold only a-z, 0-9 and _");
    entry.instance = options->string_or("name", entry.module);
    entry.timeout = options->duration("timeout", entry.timeout, zero_duration::refused);
    if (!instances.insert(entry.instance).second)
      options->fail("name", "instance name '" + entry.instance + "' is used twice; give one a different 'name:'");
    entry.options = std::make_shared<yaml_settings>(item, config.file,
                                                    "module instance '" + entry.instance + "'",
                                                    std::set<std::string>{"module", "name", "timeout"});
    config.chain.push_back(std::move(entry));
  }

  // The server's keys and the site's sections (lib/config) count as read;
  // the rest must be read by a module of the chain (the loader checks).
  std::set<std::string> known = server_keys;
  known.insert(config::site_keys.begin(), config::site_keys.end());
  config.globals = std::make_shared<yaml_settings>(root, config.file, "", std::move(known));
  return config;
}

}  // namespace sdps::core
