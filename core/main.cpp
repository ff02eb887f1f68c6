// sdpsd: the SDPS POP3 server.

#include "ownership.hpp"
#include "server.hpp"
#include "version.hpp"

#include <sodium.h>

#include <cstring>
#include <iostream>

namespace {

const char* usage =
    "usage: sdpsd -c FILE [--listen ADDRESS:PORT]... [--listen-tls ADDRESS:PORT]... [--check]\n"
    "       sdpsd --version\n"
    "  -c FILE                the YAML configuration\n"
    "  --listen ADDR:PORT     listen here instead of the file's 'listen' (repeatable; [::1]:PORT for IPv6)\n"
    "  --listen-tls ADDR:PORT listen here with implicit TLS (POP3S); with --listen, replaces the file's 'listen'\n"
    "  --check                validate the configuration, the TLS certificate and key, and every module, then exit\n"
    "  --version              print the version, commit, module ABI and library versions\n";

}  // namespace

int main(int argc, char** argv) {
  std::string file;
  std::vector<std::pair<std::string, bool>> listen;  // address, implicit TLS
  bool check = false;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if ((arg == "-c" || arg == "--config") && i + 1 < argc) file = argv[++i];
    else if (arg == "--listen" && i + 1 < argc) listen.emplace_back(argv[++i], false);
    else if (arg == "--listen-tls" && i + 1 < argc) listen.emplace_back(argv[++i], true);
    else if (arg == "--check") check = true;
    else if (arg == "--version" || arg == "-V") {
      std::cout << sdps::core::version::describe("sdpsd");
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
  if (file.empty()) {
    std::cerr << "sdpsd: -c FILE is required\n" << usage;
    return 64;
  }
  if (sodium_init() < 0) {
    std::cerr << "sdpsd: libsodium failed to initialise\n";
    return 70;
  }
  try {
    auto config = sdps::core::load_config(file);
    if (!listen.empty()) {
      config.listen.clear();
      for (const auto& entry : listen)
        config.listen.push_back({sdps::core::parse_endpoint(entry.first), entry.second});
    }
    // Whether the configured user can use the site's files, checked as
    // root too: --check fails on a problem, a starting server says so.
    const auto access = sdps::core::check_user_access(config);
    sdps::core::server server(std::move(config));
    server.load();
    if (check) {
      for (const auto& problem : access) std::cerr << "sdpsd: " << problem << "\n";
      if (!access.empty()) return 78;
      std::cout << file << ": configuration OK, " << server.module_count() << " module instance(s)\n";
      return 0;
    }
    for (const auto& problem : access) server.server_log().error(problem);
    sdps::core::check_descriptor_limit(server.config(), server.server_log());
    server.bind();
    server.drop_privileges();
    return server.run();
  } catch (const sdps::config_error& e) {
    std::cerr << "sdpsd: " << e.what() << "\n";
    return 78;  // EX_CONFIG
  } catch (const std::exception& e) {
    std::cerr << "sdpsd: " << e.what() << "\n";
    return 71;  // EX_OSERR
  }
}
