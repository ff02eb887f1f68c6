// sdps-hostgen: writes a big hosts file for tests and benchmarks.
//
//   sdps-hostgen HOSTS [--real N] [--cost min|interactive|...] [--seed S] > hosts
//
// Most hosts get SYNTHETIC Argon2id strings (the right shape and length,
// matching no password: hashing a million real passwords would take
// hours); the first N get real hashes of "pw-NAME" at the given cost, for
// logins. lib/hostdb/synthetic.hpp. The file is written with mode 0600
// when redirected by the shell with umask 077 (the store refuses a file
// readable by others).

#include "hostdb/synthetic.hpp"

#include <sodium.h>

#include <cstdlib>
#include <cstring>
#include <iostream>
#include <string>

int main(int argc, char** argv) {
  using namespace sdps::hostdb;
  if (sodium_init() < 0) return 1;
  synthetic_options o;
  const auto usage = [] {
    std::cerr << "usage: sdps-hostgen HOSTS [--real N] [--cost min|interactive|moderate|sensitive] [--seed S]\n";
    return 64;
  };
  if (argc < 2) return usage();
  o.hosts = std::strtoull(argv[1], nullptr, 10);
  for (int i = 2; i < argc; ++i) {
    const std::string arg = argv[i];
    if (i + 1 == argc) return usage();
    const std::string value = argv[++i];
    if (arg == "--real") {
      o.real = std::strtoull(value.c_str(), nullptr, 10);
    } else if (arg == "--seed") {
      o.seed = std::strtoull(value.c_str(), nullptr, 10);
    } else if (arg == "--cost") {
      const auto c = parse_cost(value);
      if (!c) return usage();
      o.real_cost = *c;
    } else {
      return usage();
    }
  }
  std::ios::sync_with_stdio(false);
  write_synthetic_hosts(std::cout, o);
  return std::cout ? 0 : 1;
}
