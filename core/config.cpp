#include "config.hpp"

#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <thread>

namespace sdps::core {

namespace {

std::string location(const std::filesystem::path& file, const YAML::Node& node) {
  std::string out = file.filename().string();
  if (node.IsDefined() && node.Mark().line >= 0) out += ":" + std::to_string(node.Mark().line + 1);
  return out;
}

// Keys the server itself reads from the top level; modules see the rest
// through globals (hosts, punts).
const std::set<std::string> server_keys = {
    "listen",       "customer_domain", "server_name", "banner",         "idle_timeout",
    "max_sessions", "user",            "log_level",   "module_path",     "blocking_threads",
    "modules",      "log_format",      "metrics_listen", "proxy_protocol_from", "proxy_protocol_timeout",
    "max_sessions_per_address", "login_timeout", "tls", "plaintext_auth", "trusted_networks",
    "threads",
};

// Site settings that modules read from the top level (the auth module's
// limits among them); the server lets them through its unknown-key check.
const std::set<std::string> site_keys = {
    "hosts", "punts", "password_cost", "max_message_size", "max_login_failures_per_address", "login_failure_window",
    "max_password_checks_per_address",
};

}  // namespace

unsigned default_threads() {
  const unsigned cores = std::thread::hardware_concurrency();
  return std::clamp(cores, 1u, max_threads);
}

yaml_settings::yaml_settings(YAML::Node node, std::filesystem::path file, std::string owner,
                             std::set<std::string> ignored)
    : node_(std::move(node)), file_(std::move(file)), owner_(std::move(owner)), read_(std::move(ignored)) {}

YAML::Node yaml_settings::get(const std::string& key) const {
  read_.insert(key);
  if (!node_.IsMap()) return YAML::Node(YAML::NodeType::Undefined);
  for (auto it = node_.begin(); it != node_.end(); ++it)
    if (it->first.as<std::string>() == key) return it->second;
  return YAML::Node(YAML::NodeType::Undefined);
}

void yaml_settings::bad(const std::string& key, const std::string& expected) const {
  fail(key, "'" + key + "' must be " + expected);
}

std::string yaml_settings::where(const std::string& key) const {
  std::string at = key.empty() ? location(file_, node_) : location(file_, peek(key));
  return at + (owner_.empty() ? "" : ": " + owner_);
}

YAML::Node yaml_settings::peek(const std::string& key) const {
  if (!node_.IsMap()) return node_;
  for (auto it = node_.begin(); it != node_.end(); ++it)
    if (it->first.as<std::string>() == key) return it->second.IsNull() ? it->first : it->second;
  return node_;
}

std::vector<std::string> yaml_settings::keys() const {
  std::vector<std::string> out;
  if (node_.IsMap())
    for (auto it = node_.begin(); it != node_.end(); ++it) out.push_back(it->first.as<std::string>());
  return out;
}

bool yaml_settings::has(const std::string& key) const {
  const YAML::Node n = get(key);
  return n.IsDefined() && !n.IsNull();
}

std::string yaml_settings::string(const std::string& key) const {
  const YAML::Node n = get(key);
  if (!n.IsDefined() || n.IsNull()) fail(key, "'" + key + "' is required");
  if (!n.IsScalar()) bad(key, "a string");
  return n.Scalar();
}

std::string yaml_settings::string_or(const std::string& key, const std::string& fallback) const {
  return has(key) ? string(key) : fallback;
}

std::int64_t yaml_settings::integer_or(const std::string& key, std::int64_t fallback) const {
  if (!has(key)) return fallback;
  const std::string text = string(key);
  std::int64_t value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc{} || end != text.data() + text.size()) bad(key, "a whole number");
  return value;
}

bool yaml_settings::boolean_or(const std::string& key, bool fallback) const {
  if (!has(key)) return fallback;
  const std::string text = string(key);
  if (text == "true" || text == "yes" || text == "on") return true;
  if (text == "false" || text == "no" || text == "off") return false;
  bad(key, "true or false");
}

std::chrono::milliseconds yaml_settings::duration_or(const std::string& key,
                                                     std::chrono::milliseconds fallback) const {
  if (!has(key)) return fallback;
  std::chrono::milliseconds out{};
  if (!parse_duration(string(key), out)) bad(key, "a duration such as 500ms, 30s, 5m or 2h");
  return out;
}

std::filesystem::path yaml_settings::path(const std::string& key) const {
  const std::filesystem::path p = string(key);
  if (p.empty()) bad(key, "a path");
  return (file_.parent_path() / p).lexically_normal();
}

std::filesystem::path yaml_settings::path_or(const std::string& key, const std::filesystem::path& fallback) const {
  if (has(key)) return path(key);
  if (fallback.empty()) return fallback;
  return (file_.parent_path() / fallback).lexically_normal();
}

std::vector<std::string> yaml_settings::strings_or(const std::string& key,
                                                   const std::vector<std::string>& fallback) const {
  const YAML::Node n = get(key);
  if (!n.IsDefined() || n.IsNull()) return fallback;
  if (n.IsScalar()) return {n.Scalar()};
  if (!n.IsSequence()) bad(key, "a list of strings");
  std::vector<std::string> out;
  for (const YAML::Node& item : n) {
    if (!item.IsScalar()) bad(key, "a list of strings");
    out.push_back(item.Scalar());
  }
  return out;
}

std::unique_ptr<sdps::settings> yaml_settings::child(const std::string& key) const {
  const YAML::Node n = get(key);
  if (!n.IsDefined() || n.IsNull()) fail(key, "'" + key + "' is required");
  if (!n.IsMap()) bad(key, "a mapping");
  // A nested mapping's keys are its owner's business: no unread check.
  return std::make_unique<yaml_settings>(n, file_, owner_);
}

std::vector<std::string> yaml_settings::unread() const {
  std::vector<std::string> out;
  if (!node_.IsMap()) return out;
  for (auto it = node_.begin(); it != node_.end(); ++it) {
    const std::string key = it->first.as<std::string>();
    if (!read_.count(key)) out.push_back(key);
  }
  return out;
}

void yaml_settings::refuse_unread(const std::string& what) const {
  const auto keys = unread();
  if (!keys.empty()) fail(keys.front(), "unknown setting '" + keys.front() + "' for " + what);
}

bool parse_duration(const std::string& text, std::chrono::milliseconds& out) {
  std::int64_t value = 0;
  const char* begin = text.data();
  const char* end = text.data() + text.size();
  const auto [rest, ec] = std::from_chars(begin, end, value);
  if (ec != std::errc{} || rest == begin || value < 0) return false;
  const std::string unit(rest, end);
  std::int64_t scale = 0;
  if (unit.empty() || unit == "s") scale = 1000;
  else if (unit == "ms") scale = 1;
  else if (unit == "m") scale = 60 * 1000;
  else if (unit == "h") scale = 3600 * 1000;
  else if (unit == "d") scale = 86400 * 1000;
  else return false;
  if (value > INT64_MAX / scale) return false;
  out = std::chrono::milliseconds(value * scale);
  return true;
}

asio::ip::tcp::endpoint parse_endpoint(const std::string& text) {
  const auto colon = text.rfind(':');
  if (colon == std::string::npos || colon + 1 == text.size())
    throw config_error("'" + text + "' is not ADDRESS:PORT");
  std::string host = text.substr(0, colon);
  const std::string port_text = text.substr(colon + 1);
  unsigned port = 0;
  const auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (ec != std::errc{} || end != port_text.data() + port_text.size() || port > 65535)
    throw config_error("'" + text + "': bad port");
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  else if (host.find(':') != std::string::npos) throw config_error("'" + text + "': write IPv6 as [ADDRESS]:PORT");
  if (host == "*") host = "0.0.0.0";
  if (host == "localhost") host = "127.0.0.1";
  boost::system::error_code bad;
  const auto address = asio::ip::make_address(host, bad);
  if (bad) throw config_error("'" + text + "': '" + host + "' is not an IP address");
  return {address, static_cast<unsigned short>(port)};
}

server_config load_config(const std::filesystem::path& given) {
  server_config config;
  config.file = std::filesystem::absolute(given).lexically_normal();
  YAML::Node root;
  try {
    root = YAML::LoadFile(config.file.string());
  } catch (const YAML::BadFile&) {
    throw config_error(config.file.string() + ": cannot read the file");
  } catch (const YAML::Exception& e) {
    throw config_error(config.file.filename().string() + ":" + std::to_string(e.mark.line + 1) + ": " + e.msg);
  }
  if (!root.IsMap()) throw config_error(config.file.filename().string() + ": the top level must be a mapping");

  yaml_settings top(root, config.file, "");
  const YAML::Node listen = root["listen"];
  if (!listen.IsDefined() || listen.IsNull()) {
    config.listen.push_back({parse_endpoint("127.0.0.1:110"), false});
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
          config.listen.push_back({parse_endpoint(item.Scalar()), false});
        } else if (item.IsMap()) {
          yaml_settings entry(item, config.file, "");
          listener l{parse_endpoint(entry.string("address")), false};
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
  }
  if (top.has("tls")) {
    const auto section = top.child("tls");
    tls_config tls;
    tls.certificate = section->path("certificate");
    tls.key = section->path("key");
    tls.ciphers = section->string_or("ciphers", "");
    tls.handshake_timeout = section->duration_or("handshake_timeout", tls.handshake_timeout);
    if (tls.handshake_timeout.count() <= 0) section->fail("handshake_timeout", "'handshake_timeout' must be positive");
    for (const std::string& key : section->keys())
      if (key != "certificate" && key != "key" && key != "ciphers" && key != "handshake_timeout")
        section->fail(key, "unknown setting '" + key + "' in 'tls'");
    config.tls = std::move(tls);
  }
  const std::string policy = top.string_or("plaintext_auth", "tls_or_trusted");
  if (policy == "always") config.plaintext_auth = plaintext_policy::always;
  else if (policy == "tls_or_trusted") config.plaintext_auth = plaintext_policy::tls_or_trusted;
  else top.fail("plaintext_auth", "'plaintext_auth' must be always or tls_or_trusted");
  for (const std::string& text : top.strings_or("trusted_networks", {"127.0.0.0/8", "::1/128"})) {
    const auto n = network::parse(text);
    if (!n) top.fail("trusted_networks", "'trusted_networks': '" + text + "' is not an address or ADDRESS/PREFIX");
    config.trusted_networks.push_back(*n);
  }
  config.customer_domain = top.string_or("customer_domain", config.customer_domain);
  while (!config.customer_domain.empty() && config.customer_domain.front() == '.')
    config.customer_domain.erase(0, 1);
  for (char& c : config.customer_domain) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  char hostname[256] = {};
  ::gethostname(hostname, sizeof hostname - 1);
  config.server_name = top.string_or("server_name", hostname[0] ? hostname : "localhost");
  config.banner = top.string_or("banner", "SDPS POP3 server ready");
  config.idle_timeout = top.duration_or("idle_timeout", config.idle_timeout);
  const auto max_sessions = top.integer_or("max_sessions", static_cast<std::int64_t>(config.max_sessions));
  if (max_sessions < 1) top.fail("max_sessions", "'max_sessions' must be at least 1");
  config.max_sessions = static_cast<std::size_t>(max_sessions);
  for (const std::string& text : top.strings_or("proxy_protocol_from", {})) {
    const auto n = network::parse(text);
    if (!n) top.fail("proxy_protocol_from", "'proxy_protocol_from': '" + text + "' is not an address or ADDRESS/PREFIX");
    config.proxy_protocol_from.push_back(*n);
  }
  config.proxy_protocol_timeout = top.duration_or("proxy_protocol_timeout", config.proxy_protocol_timeout);
  if (config.proxy_protocol_timeout.count() <= 0)
    top.fail("proxy_protocol_timeout", "'proxy_protocol_timeout' must be positive");
  const auto per_address = top.integer_or("max_sessions_per_address",
                                          static_cast<std::int64_t>(config.max_sessions_per_address));
  if (per_address < 0) top.fail("max_sessions_per_address", "'max_sessions_per_address' must be 0 (no limit) or more");
  config.max_sessions_per_address = static_cast<std::size_t>(per_address);
  config.login_timeout = top.duration_or("login_timeout", config.login_timeout);
  if (config.login_timeout.count() < 0) top.fail("login_timeout", "'login_timeout' must not be negative");
  config.user = top.string_or("user", "");
  config.log_level = top.string_or("log_level", config.log_level);
  if (config.log_level != "debug" && config.log_level != "info" && config.log_level != "warning" &&
      config.log_level != "error")
    top.fail("log_level", "'log_level' must be debug, info, warning or error");
  config.log_format = top.string_or("log_format", config.log_format);
  if (config.log_format != "text" && config.log_format != "json")
    top.fail("log_format", "'log_format' must be text or json");
  if (top.has("metrics_listen")) {
    try {
      config.metrics_listen = parse_endpoint(top.string("metrics_listen"));
    } catch (const config_error& e) {
      top.fail("metrics_listen", e.what());
    }
  }
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
    entry.timeout = options->duration_or("timeout", entry.timeout);
    if (entry.timeout.count() <= 0) options->fail("timeout", "'timeout' must be positive");
    if (!instances.insert(entry.instance).second)
      options->fail("name", "instance name '" + entry.instance + "' is used twice; give one a different 'name:'");
    entry.options = std::make_shared<yaml_settings>(item, config.file,
                                                    "module instance '" + entry.instance + "'",
                                                    std::set<std::string>{"module", "name", "timeout"});
    config.chain.push_back(std::move(entry));
  }

  // Unknown top-level keys are refused, except the shared site sections.
  auto globals = std::make_shared<yaml_settings>(root, config.file, "", server_keys);
  for (const std::string& key : globals->unread())
    if (!site_keys.contains(key))
      top.fail(key, "unknown top-level setting '" + key + "'");
  config.globals = std::move(globals);
  return config;
}

}  // namespace sdps::core
