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
  const std::vector<instance_info>& instances() const override { return instances_; }
  void add(entry e) { entries_.push_back(std::move(e)); }
  void add_instance(instance_info i) { instances_.push_back(std::move(i)); }

 private:
  std::vector<entry> entries_;
  std::vector<instance_info> instances_;
};

/// What the loader learnt beyond the chain itself.
struct chain_facts {
  /// "embedded", or what an instance declared (module_config::declare_role).
  std::string role = "embedded";
};

/// What module_config::require() asked, per instance: (service id, earlier).
using requirement_list = std::vector<std::vector<std::pair<std::string, bool>>>;

/// Makes a chain of created instances (in chain order): checks their
/// requirements (`requirements`, one list per instance), the chain's order
/// (terminal placement, login stages), finds the chain's maildrop source
/// (its last provider) and starts every instance. `terminal_at` is the
/// index of the first instance that declared itself terminal, if any.
/// What the loader and the unit tests' harness both use. Throws
/// config_error.
std::unique_ptr<chain> assemble_chain(std::vector<std::unique_ptr<module_instance>> links,
                                      const requirement_list& requirements, service_registry& services,
                                      std::size_t terminal_at = SIZE_MAX);

/// Loads every module of `config`, creates the instances, checks settings
/// (each instance's, and the top level's: a key neither the core, the
/// site nor an instance read is refused), requirements, terminal placement
/// and the order of the login stages, and starts them. Throws config_error
/// naming the instance, file and line.
std::unique_ptr<chain> build_chain(const server_config& config, server_context& server, logging::source_log& log,
                                   service_registry& services, chain_facts* facts = nullptr);

}  // namespace sdps::core
