// sdps: the admin tool (hosts, local delivery, spool listing).

#include "admin.hpp"

#include "config.hpp"
#include "ownership.hpp"
#include "version.hpp"

#include <sodium.h>
#include <sysexits.h>

#include <filesystem>
#include <iostream>

#include <unistd.h>

namespace {

const char* usage =
    "usage: sdps -c FILE COMMAND ...\n"
    "       sdps --version\n"
    "  host add HOST [--dialup-ip ADDR[/PREFIX]]...\n"
    "  host passwd HOST --dialup|--pop3      (reads the password, one line, from stdin)\n"
    "  host del HOST\n"
    "  host list\n"
    "  deliver [--punt NAME] -f SENDER RECIPIENT...   (message on stdin)\n"
    "  spool list HOST\n"
    "  flush HOST [--to ADDR:PORT] [--helo NAME] [--max-messages N] [--timeout DUR]\n"
    "  expire --older-than DUR [--read-older-than DUR] [--relay ADDR:PORT] [--dry-run] [HOST...]\n"
    "  lmtp --listen ADDR:PORT [--listen ...] [--max-connections N] [--timeout DUR]\n";

// `host add|passwd|del` replace the host database file.
bool command_writes_hosts(const std::vector<std::string>& args) {
  return args.size() >= 2 && args[0] == "host" && args[1] != "list";
}

sdps::admin::site load_site(const std::string& file, std::string& user) {
  const auto config = sdps::core::load_config(file);
  user = config.user;
  sdps::admin::site s;
  s.config_file = config.file;
  s.customer_domain = config.customer_domain;
  s.password_cost = config.globals->string_or("password_cost", s.password_cost);
  s.server_name = config.server_name;
  const auto max_size = config.globals->integer_or("max_message_size", static_cast<std::int64_t>(s.max_message_size));
  if (max_size < 1024) config.globals->fail("max_message_size", "'max_message_size' must be at least 1024 octets");
  s.max_message_size = static_cast<std::uint64_t>(max_size);
  const auto& top = *config.globals;
  if (!top.has("hosts")) top.fail("hosts", "'hosts' (the host database file) is required by the sdps tool");
  s.hosts = top.path("hosts");
  if (top.has("punts")) {
    const auto punts = top.child("punts");
    for (const auto& name : punts->keys()) s.punts[name] = punts->path(name);
  }
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  std::string file;
  if (args.size() >= 2 && (args[0] == "-c" || args[0] == "--config")) {
    file = args[1];
    args.erase(args.begin(), args.begin() + 2);
  }
  if (!args.empty() && (args[0] == "--version" || args[0] == "-V")) {
    std::cout << sdps::core::version::describe("sdps");
    return 0;
  }
  if (!args.empty() && (args[0] == "-h" || args[0] == "--help")) {
    std::cout << usage;
    return 0;
  }
  if (file.empty() || args.empty()) {
    std::cerr << usage;
    return EX_USAGE;
  }
  if (sodium_init() < 0) {
    std::cerr << "sdps: libsodium failed to initialise\n";
    return EX_SOFTWARE;
  }
  std::string user;
  bool switched = false;
  try {
    const auto site = load_site(file, user);
    // Run as root with `user:` configured, the tool becomes that user
    // before touching anything, so the host database and spool files it
    // writes belong to the user sdpsd runs as.
    switched = sdps::core::become_configured_user(user);
    if (switched) {
      // Say what to do before failing half way with "Permission denied".
      std::vector<std::filesystem::path> writes;
      if (command_writes_hosts(args)) writes.push_back(site.hosts.parent_path());
      if (!args.empty() && args[0] == "deliver")
        for (const auto& [name, dir] : site.punts) writes.push_back(std::filesystem::exists(dir) ? dir : dir.parent_path());
      for (const auto& dir : writes)
        if (::access(dir.c_str(), W_OK | X_OK) != 0) {
          std::cerr << "sdps: run as root, sdps works as the config's user '" << user
                    << "' so that sdpsd can use what it writes, but '" << user << "' cannot write " << dir.string()
                    << ": run  chown -R " << user << ": " << dir.string() << "  and try again\n";
          return EX_NOPERM;
        }
    }
    const std::string command = args[0];
    args.erase(args.begin());
    if (command == "host") return sdps::admin::host_main(site, args);
    if (command == "deliver") return sdps::admin::deliver_main(site, args);
    if (command == "spool") return sdps::admin::spool_main(site, args);
    if (command == "flush") return sdps::admin::flush_main(site, args);
    if (command == "expire") return sdps::admin::expire_main(site, args);
    if (command == "lmtp") return sdps::admin::lmtp_main(site, args);
    std::cerr << "sdps: unknown command '" << command << "'\n" << usage;
    return EX_USAGE;
  } catch (const sdps::config_error& e) {
    std::cerr << "sdps: " << e.what() << "\n";
    return EX_CONFIG;
  } catch (const std::exception& e) {
    std::cerr << "sdps: " << e.what() << "\n";
    if (switched && std::string(e.what()).find("ermission denied") != std::string::npos)
      std::cerr << "sdps: run as root, sdps works as the config's user '" << user
                << "' (so that sdpsd can use what it writes); give that user the site's files: chown -R " << user
                << ": <the hosts file's folder> <each punt's folder>, or run: sudo -u " << user << " sdps ...\n";
    return EX_SOFTWARE;
  }
}
