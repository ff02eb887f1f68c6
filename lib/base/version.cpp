#include "base/version.hpp"

#include <boost/version.hpp>
#include <sodium.h>

namespace sdps::base::version {

const char* number() { return SDPS_VERSION; }

std::string describe(const std::string& program) {
  std::string out = program + " " + number() + " (commit " + commit() + ")\n";
  out += "module ABI " + std::to_string(abi) + ", build \"" SDPS_BUILD_SIGNATURE "\"\n";
  out += "built with Boost " + std::to_string(BOOST_VERSION / 100000) + "." +
         std::to_string(BOOST_VERSION / 100 % 1000) + "." + std::to_string(BOOST_VERSION % 100);
  out += ", yaml-cpp " SDPS_YAML_CPP_VERSION;
  out += ", libsodium " SODIUM_VERSION_STRING " (running " + std::string(sodium_version_string()) + ")\n";
  return out;
}

}  // namespace sdps::base::version
