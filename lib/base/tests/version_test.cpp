// What --version says.

#include "base/version.hpp"

#include <catch2/catch.hpp>

#include <cstring>

namespace version = sdps::base::version;

TEST_CASE("--version names the program, the version, the commit, the ABI and the libraries") {
  const std::string text = version::describe("sdpsd");
  CHECK(text.rfind(std::string("sdpsd ") + version::number() + " (commit " + version::commit() + ")\n", 0) == 0);
  CHECK(text.find("module ABI " + std::to_string(version::abi) + ", build \"" SDPS_BUILD_SIGNATURE "\"\n") !=
        std::string::npos);
  CHECK(text.find("built with Boost ") != std::string::npos);
  CHECK(text.find(", yaml-cpp ") != std::string::npos);
  CHECK(text.find(", libsodium ") != std::string::npos);
  CHECK(text.back() == '\n');
  CHECK(std::strlen(version::commit()) > 0);
}
