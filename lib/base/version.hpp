#pragma once
/// @file
/// What this build of sdps is: version, commit, module ABI and the
/// versions of the libraries it was compiled against (`sdpsd --version`,
/// `sdps --version`, the metrics' build information).

#include <sdps/abi.hpp>

#include <string>

namespace sdps::base::version {

/// The project version from CMakeLists.txt, "0.1.0".
const char* number();
/// The module ABI modules must be built for.
inline constexpr int abi = SDPS_ABI_VERSION;
/// The git commit the build came from ("unknown" outside a checkout);
/// "-dirty" when the tree had uncommitted changes.
const char* commit();

/// The --version text for `program` (several lines, newline-terminated):
/// version, commit, ABI and build signature, library versions.
std::string describe(const std::string& program);

}  // namespace sdps::base::version
