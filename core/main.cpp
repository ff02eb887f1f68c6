// sdpsd: the SDPS POP3 server.

#include "server.hpp"

#include <sodium.h>

#include <cstring>
#include <iostream>

namespace {

const char* usage =
    "usage: sdpsd -c FILE [--listen ADDRESS:PORT]... [--listen-tls ADDRESS:PORT]... [--check]\n"
    "  -c FILE                the YAML configuration\n"
    "  --listen ADDR:PORT     listen here instead of the file's 'listen' (repeatable; [::1]:PORT for IPv6)\n"
    "  --listen-tls ADDR:PORT listen here with implicit TLS (POP3S); with --listen, replaces the file's 'listen'\n"
    "  --check                validate the configuration, the TLS certificate and key, and every module, then exit\n";

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
    sdps::core::server server(std::move(config));
    server.load();
    if (check) {
      std::cout << file << ": configuration OK, " << server.module_count() << " module instance(s)\n";
      return 0;
    }
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
