// sdpsd: the SDPS POP3 server.

#include "base/version.hpp"
#include "ownership.hpp"
#include "server.hpp"

#include <sodium.h>

#include <cstring>
#include <iostream>
#include <set>

#if defined(__SANITIZE_ADDRESS__)
// Sanitizer builds only. GCC 12's LeakSanitizer misreads glibc 2.36's
// dynamic TLS blocks of dlopen'd modules (Boost.Asio keeps its call stack
// in one): at exit, with some memory layouts, its tracer reads a range
// that is not there and dies ("Tracer caught signal 11"), and the exit
// status is lost. Not scanning TLS can only make it report more leaks,
// never hide one; LSAN_OPTIONS still overrides this.
extern "C" const char* __lsan_default_options() { return "use_tls=0"; }
#endif

namespace {

const char* usage =
    "usage: sdpsd -c FILE [--listen ADDRESS:PORT]... [--listen-tls ADDRESS:PORT]... [--check]\n"
    "       sdpsd --version\n"
    "  -c FILE                the YAML configuration\n"
    "  --listen ADDR:PORT     listen here instead of the file's 'listen' (repeatable; [::1]:PORT for IPv6)\n"
    "  --listen-tls ADDR:PORT listen here with implicit TLS (POP3S); with --listen, replaces the file's 'listen'\n"
    "  --check                validate the configuration, the TLS certificate and key, and every module, and\n"
    "                         check as the configured user that it can read and write what it must; then exit\n"
    "  --version              print the version, commit, module ABI and library versions\n";

/// Says a fatal problem on standard error: with journald's error priority
/// when standard error is the journal, so that `journalctl -p err` shows
/// why sdpsd did not start.
void fatal(const std::string& text) {
  std::cerr << (sdps::logging::journal_on(2) ? "<3>" : "") << "sdpsd: " << text << "\n";
}

/// `sdpsd --list-keys [-c FILE]`: the top-level keys the config reader
/// accepts, one a line, sorted; with a file, also those its chain's
/// modules read. For the documentation test (tests/check_reference.py).
int list_keys(const std::string& file) {
  std::set<std::string> keys = sdps::core::server_keys;
  keys.insert(sdps::config::site_keys.begin(), sdps::config::site_keys.end());
  if (!file.empty()) {
    auto config = sdps::core::load_config(file);
    auto globals = config.globals;
    sdps::core::server server(std::move(config));
    server.load();
    keys.insert(globals->read_keys().begin(), globals->read_keys().end());
  }
  for (const std::string& key : keys) std::cout << key << "\n";
  return 0;
}

/// `--check`'s look at every punt (a front end contacts its back ends).
/// A punt that is down is a warning, not a failure: a back end stopped
/// for maintenance must not keep a front end from starting, and sdpsd
/// serves the other punts meanwhile.
void report_punts(sdps::core::server& server) {
  for (const auto& punt : sdps::core::check_punts(server.spools())) {
    if (!punt.probed)
      std::cout << "punt " << punt.punt << ": not probed (its spool cannot be)\n";
    else if (punt.up)
      std::cout << "punt " << punt.punt << ": up (" << (punt.latency.count() + 500) / 1000 << "ms)"
                << (punt.detail.empty() ? "" : ": ") << punt.detail << "\n";
    else
      std::cerr << "sdpsd: warning: punt " << punt.punt << " is down: " << punt.detail << "\n";
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::string file;
  std::vector<std::pair<std::string, bool>> listen;  // address, implicit TLS
  bool check = false, keys = false;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if ((arg == "-c" || arg == "--config") && i + 1 < argc) file = argv[++i];
    else if (arg == "--listen" && i + 1 < argc) listen.emplace_back(argv[++i], false);
    else if (arg == "--listen-tls" && i + 1 < argc) listen.emplace_back(argv[++i], true);
    else if (arg == "--check") check = true;
    else if (arg == "--list-keys") keys = true;
    else if (arg == "--version" || arg == "-V") {
      std::cout << sdps::base::version::describe("sdpsd");
      return 0;
    }
    else if (arg == "-h" || arg == "--help") {
      std::cout << usage;
      return 0;
    } else {
      std::cerr << "sdpsd: unexpected argument '" << arg << "'\n" << usage;
      return 64;
    }
  }
  if (file.empty() && !keys) {
    std::cerr << "sdpsd: -c FILE is required\n" << usage;
    return 64;
  }
  if (sodium_init() < 0) {
    fatal("libsodium failed to initialise");
    return 70;
  }
  try {
    if (keys) return list_keys(file);
    // Before any thread starts: it edits the environment.
    auto activated = check ? std::vector<sdps::base::activated_socket>{} : sdps::base::take_activated_sockets();
    auto config = sdps::core::load_config(file);
    if (!listen.empty()) {
      config.listen.clear();
      for (const auto& entry : listen)
        config.listen.push_back({sdps::core::parse_listen_endpoint(entry.first), entry.second});
      config.listen_from_command_line = true;
    }
    const std::string user = config.site.user;
    const std::vector<std::string> warnings = config.warnings;
    sdps::core::server server(std::move(config));
    server.load();
    // What the configured user can reach, tried as that user (in a child
    // process when sdpsd runs as root): --check fails on a problem, a
    // starting server says so and serves what it can.
    const auto checks = [&server] { return server.check(); };
    const auto access = sdps::core::check_as_user(user, checks);
    if (check) {
      if (!access.note.empty()) std::cerr << "sdpsd: note: " << access.note << "\n";
      for (const auto& problem : access.problems) fatal(problem);
      if (!access.problems.empty()) return 78;
      for (const auto& warning : warnings) std::cerr << "sdpsd: warning: " << warning << "\n";
      std::cout << file << ": configuration OK, " << server.module_count() << " module instance(s)";
      if (!user.empty() && access.note.empty()) std::cout << ", checked as user " << user;
      std::cout << "\n";
      for (const auto& line : server.modules().describe()) std::cout << line << "\n";
      report_punts(server);
      return 0;
    }
    for (const auto& warning : warnings) server.server_log().warning(warning);
    if (!access.note.empty()) server.server_log().warning(access.note);
    for (const auto& problem : access.problems) server.server_log().error(problem);
    sdps::core::check_descriptor_limit(server.config(), server.server_log());
    server.bind(std::move(activated));
    server.drop_privileges();
    return server.run();
  } catch (const sdps::config_error& e) {
    fatal(e.what());
    return 78;  // EX_CONFIG
  } catch (const std::exception& e) {
    fatal(e.what());
    return 71;  // EX_OSERR
  }
}
