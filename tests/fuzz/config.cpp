// The YAML config, read as sdpsd and the admin tool read it (lib/config
// parse_document, what load_document does with a file's contents; then
// read_site, as the tool does, and core's read_config, as sdpsd does).
//
// Properties: nothing but a config_error leaves the readers, and its
// message starts with the file's name and, but for "the top level must be
// a mapping", a line within the input ("sdps.yaml:LINE: ..."); an
// accepted document holds no mapping with a key twice; what read_config
// accepts is within its documented limits (paths absolute, thread counts,
// sizes, intervals, a non-empty chain of distinct instances with module
// names of a-z, 0-9 and _), and reading the same text again gives the same
// configuration.

#include "fuzz.hpp"

#include "config.hpp"
#include "config/site.hpp"
#include "config/yaml_settings.hpp"

#include <algorithm>
#include <cctype>
#include <exception>
#include <set>
#include <string>
#include <vector>

namespace cfg = sdps::config;
namespace core = sdps::core;

namespace {

const std::filesystem::path config_file = "/etc/sdps/sdps.yaml";
const std::string file_name = "sdps.yaml";

/// The message of a config_error: "sdps.yaml: ..." or "sdps.yaml:LINE: ..."
/// with LINE from 1 to the input's lines.
void check_message(const std::string& message, std::size_t lines) {
  SDPS_FUZZ_CHECK(message.rfind(file_name + ":", 0) == 0);
  std::size_t at = file_name.size() + 1;
  if (message.compare(at, 1, " ") == 0) {
    SDPS_FUZZ_CHECK(message == file_name + ": the top level must be a mapping");
    return;
  }
  std::size_t line = 0;
  const std::size_t digits_from = at;
  while (at < message.size() && std::isdigit(static_cast<unsigned char>(message[at])) && at - digits_from < 9)
    line = line * 10 + static_cast<std::size_t>(message[at++] - '0');
  SDPS_FUZZ_CHECK(at > digits_from && message[digits_from] != '0');
  SDPS_FUZZ_CHECK(line >= 1 && line <= lines);
  SDPS_FUZZ_CHECK(message.compare(at, 2, ": ") == 0 && message.size() > at + 2);
}

/// Runs `read`; true if it returned. A config_error is checked and gives
/// false; any other exception fails the property.
template <typename F>
bool accepted(F&& read, std::size_t lines) {
  try {
    read();
    return true;
  } catch (const sdps::config_error& e) {
    check_message(e.what(), lines);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "escaped: %s\n", e.what());
    SDPS_FUZZ_CHECK(!"an exception other than config_error escaped");
  }
  return false;
}

/// No mapping in `node` holds the same key text twice (every node once:
/// aliases share nodes).
void check_no_duplicate_keys(const YAML::Node& node, std::vector<YAML::Node>& seen) {
  for (const YAML::Node& old : seen)
    if (old.is(node)) return;
  seen.push_back(node);
  if (node.IsMap()) {
    std::set<std::string> keys;
    for (auto it = node.begin(); it != node.end(); ++it) {
      const YAML::Node key = it->first;
      if (key.IsScalar()) SDPS_FUZZ_CHECK(keys.insert(key.Scalar()).second);
      check_no_duplicate_keys(it->second, seen);
    }
  } else if (node.IsSequence()) {
    for (const YAML::Node& item : node) check_no_duplicate_keys(item, seen);
  }
}

void check_site(const cfg::site& site) {
  SDPS_FUZZ_CHECK(site.config_file == config_file);
  SDPS_FUZZ_CHECK(site.hosts.empty() || site.hosts.is_absolute());
  SDPS_FUZZ_CHECK(site.hosts.empty() || site.hosts_uri.empty());
  for (const auto& punt : site.punts) SDPS_FUZZ_CHECK(punt.second.is_absolute());
  SDPS_FUZZ_CHECK(site.customer_domain.empty() || site.customer_domain.front() != '.');
  SDPS_FUZZ_CHECK(std::none_of(site.customer_domain.begin(), site.customer_domain.end(),
                               [](char c) { return std::isupper(static_cast<unsigned char>(c)); }));
  SDPS_FUZZ_CHECK(site.max_message_size >= cfg::min_message_size);
  SDPS_FUZZ_CHECK(site.control_socket.empty() || site.control_socket.is_absolute());
}

/// What read_config gave, as text, to compare two readings.
std::string describe(const core::server_config& c) {
  std::string out;
  const auto add = [&out](const std::string& field) { out.append(field).push_back('\n'); };
  for (const auto& l : c.listen)
    add(l.endpoint.address().to_string() + " " + std::to_string(l.endpoint.port()) + (l.implicit_tls ? " tls" : ""));
  if (c.tls)
    add(c.tls->certificate.string() + " " + c.tls->key.string() + " " + c.tls->ciphers + " " +
        std::to_string(c.tls->handshake_timeout.count()) + " " + std::to_string(c.tls->ticket_key_rotation.count()));
  add(std::to_string(static_cast<int>(c.plaintext_auth)));
  for (const auto& p : c.trusted_networks) add(p.to_string());
  for (const auto& p : c.proxy_protocol_from) add(p.to_string());
  add(c.site.hosts.string() + " " + c.site.hosts_uri + " " + c.site.customer_domain + " " + c.site.server_name + " " +
      c.site.user + " " + c.site.password_cost + " " + std::to_string(c.site.max_message_size) + " " +
      c.site.control_socket.string() + " " + c.site.log.syslog_socket);
  for (const auto& punt : c.site.punts) add(punt.first + " " + punt.second.string());
  add(c.banner);
  add(std::to_string(c.idle_timeout.count()) + " " + std::to_string(c.max_sessions) + " " +
      std::to_string(c.proxy_protocol_timeout.count()) + " " + std::to_string(c.max_sessions_per_address) + " " +
      std::to_string(c.login_timeout.count()) + " " + std::to_string(c.probe_interval.count()) + " " +
      std::to_string(c.blocking_threads) + " " + std::to_string(c.threads) + " " + c.control_socket_group);
  if (c.metrics_listen) add(c.metrics_listen->address().to_string() + " " + std::to_string(c.metrics_listen->port()));
  for (const auto& dir : c.module_path) add(dir.string());
  for (const auto& entry : c.chain)
    add(entry.module + " " + entry.instance + " " + std::to_string(entry.timeout.count()) + " " + entry.where);
  return out;
}

void check_server(const core::server_config& c) {
  check_site(c.site);
  SDPS_FUZZ_CHECK(c.file == config_file);
  SDPS_FUZZ_CHECK(!c.listen.empty());
  SDPS_FUZZ_CHECK(!c.tls || (c.tls->certificate.is_absolute() && c.tls->key.is_absolute()));
  SDPS_FUZZ_CHECK(!c.tls || c.tls->handshake_timeout.count() > 0);
  SDPS_FUZZ_CHECK(!c.tls || c.tls->ticket_key_rotation >= std::chrono::seconds(1));
  SDPS_FUZZ_CHECK(c.max_sessions >= 1);
  SDPS_FUZZ_CHECK(c.proxy_protocol_timeout.count() > 0);
  SDPS_FUZZ_CHECK(c.probe_interval >= std::chrono::milliseconds(100) && c.probe_interval <= std::chrono::hours(1));
  SDPS_FUZZ_CHECK(c.threads >= 1 && c.threads <= core::max_threads);
  SDPS_FUZZ_CHECK(c.blocking_threads >= 1 && c.blocking_threads <= 64);
  SDPS_FUZZ_CHECK(c.control_socket_group.empty() || !c.site.control_socket.empty());
  for (const auto& dir : c.module_path) SDPS_FUZZ_CHECK(dir.is_absolute());
  SDPS_FUZZ_CHECK(!c.chain.empty());
  std::set<std::string> instances;
  for (const auto& entry : c.chain) {
    SDPS_FUZZ_CHECK(std::all_of(entry.module.begin(), entry.module.end(), [](char ch) {
      return std::islower(static_cast<unsigned char>(ch)) || std::isdigit(static_cast<unsigned char>(ch)) || ch == '_';
    }));
    SDPS_FUZZ_CHECK(instances.insert(entry.instance).second);
    SDPS_FUZZ_CHECK(entry.timeout.count() > 0);
    SDPS_FUZZ_CHECK(entry.options != nullptr);
  }
  SDPS_FUZZ_CHECK(c.globals != nullptr);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text = sdps::fuzz::text(data, size);
  // yaml-cpp counts a line break as \n, \r\n or a lone \r.
  const std::size_t lines = 1 + static_cast<std::size_t>(std::count(text.begin(), text.end(), '\n') +
                                                          std::count(text.begin(), text.end(), '\r'));

  cfg::document doc;
  if (!accepted([&] { doc = cfg::parse_document(text, config_file); }, lines)) return 0;
  SDPS_FUZZ_CHECK(doc.file == config_file && doc.root.IsMap());
  std::vector<YAML::Node> seen;
  check_no_duplicate_keys(doc.root, seen);

  // The admin tool: the site part alone.
  cfg::site site;
  const cfg::yaml_settings top(doc.root, doc.file, "");
  if (accepted([&] { site = cfg::read_site(top); }, lines)) check_site(site);

  // sdpsd: the server's keys and the chain, site included.
  core::server_config server;
  if (!accepted([&] { server = core::read_config(doc); }, lines)) return 0;
  check_server(server);
  const cfg::document again = cfg::parse_document(text, config_file);
  SDPS_FUZZ_CHECK(describe(core::read_config(again)) == describe(server));
  return 0;
}
