#pragma once
// Loading module shared objects and building the chain from a config.

#include "chain.hpp"
#include "config.hpp"

#include <sdps/module.hpp>

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

namespace sdps::core {

/// The folders searched for module .so files after the config's
/// `module_path`, relative to the running binary: the install layout's
/// module folder (compiled in from GNUInstallDirs, e.g.
/// ../lib/x86_64-linux-gnu/sdps/modules from /usr/sbin), then the build
/// tree's ../lib/sdps/modules. Relative, so a moved prefix keeps working.
std::vector<std::filesystem::path> default_module_dirs();

/// A dlopen'ed module file. Kept open for the life of the process.
struct module_file {
  std::filesystem::path path;
  void* handle = nullptr;
  const sdps_module_info* info = nullptr;
};

/// Opens NAME.so from the first folder of `dirs` that has it, and checks
/// its ABI. Throws config_error with one line naming both sides of any
/// mismatch.
module_file open_module(const std::vector<std::filesystem::path>& dirs, const std::string& name);

/// The service registry the loader fills while instances are created.
class service_registry final : public sdps::registry {
 public:
  const std::vector<entry>& entries() const override { return entries_; }
  void add(entry e) { entries_.push_back(std::move(e)); }

 private:
  std::vector<entry> entries_;
};

/// Loads every module of `config`, creates the instances, checks settings,
/// requirements and terminal placement, and starts them. Throws
/// config_error naming the instance, file and line.
std::unique_ptr<chain> build_chain(const server_config& config, server_context& server, stderr_log& log,
                                   service_registry& services);

}  // namespace sdps::core
