#include "config/site.hpp"

#include <unistd.h>

#include <cctype>

namespace sdps::config {

const std::set<std::string> site_keys = {
    "hosts",          "punts",     "customer_domain", "server_name", "user",       "password_cost",
    "max_message_size", "log_level", "log_format",    "log_target",  "syslog_facility", "syslog_socket",
    "control_socket"};

namespace {

std::string machine_name() {
  char name[256] = {};
  ::gethostname(name, sizeof name - 1);
  return name[0] ? name : "localhost";
}

}  // namespace

site read_site(const yaml_settings& top) {
  site out;
  out.config_file = top.file();
  if (top.has("hosts")) {
    // A database URI is no path: kept as written (the host store's locate()).
    const std::string hosts = top.string("hosts");
    if (hosts.rfind("postgresql://", 0) == 0 || hosts.rfind("postgres://", 0) == 0)
      out.hosts_uri = hosts;
    else
      out.hosts = top.path("hosts");
  }
  if (top.has("punts")) {
    const auto punts = top.child("punts");
    for (const auto& name : punts->keys()) out.punts[name] = punts->path(name);
  }
  out.customer_domain = top.string_or("customer_domain", out.customer_domain);
  while (!out.customer_domain.empty() && out.customer_domain.front() == '.') out.customer_domain.erase(0, 1);
  for (char& c : out.customer_domain) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  out.server_name = top.string_or("server_name", machine_name());
  out.user = top.string_or("user", "");
  out.password_cost = top.string_or("password_cost", out.password_cost);
  const auto max_size = top.integer_or("max_message_size", static_cast<std::int64_t>(out.max_message_size));
  if (max_size < static_cast<std::int64_t>(min_message_size))
    top.fail("max_message_size",
             std::string("'max_message_size' must be at least ").append(std::to_string(min_message_size)).append(" octets"));
  out.max_message_size = static_cast<std::uint64_t>(max_size);

  const auto level = logging::parse_level(top.string_or("log_level", "info"));
  if (!level) top.fail("log_level", "'log_level' must be debug, info, warning or error");
  out.log.minimum = *level;
  const std::string format = top.string_or("log_format", "text");
  if (format == "json") out.log.format = logging::format::json;
  else if (format != "text") top.fail("log_format", "'log_format' must be text or json");
  if (top.has("log_target")) {
    out.log.target = logging::parse_target(top.string("log_target"));
    if (!out.log.target)
      top.fail("log_target", "'log_target' must be stderr, journal or syslog (absent: journal when standard "
                             "error is the journal, else stderr)");
  }
  const auto facility = logging::parse_facility(top.string_or("syslog_facility", "mail"));
  if (!facility)
    top.fail("syslog_facility",
             "'syslog_facility' must be mail, daemon, user, auth, authpriv, kern or local0 to local7");
  out.log.facility = *facility;
  out.log.syslog_socket = top.path_or("syslog_socket", "/dev/log").string();
  if (top.has("control_socket")) out.control_socket = top.path("control_socket");
  return out;
}

}  // namespace sdps::config
