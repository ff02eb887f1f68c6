#include "loader.hpp"

#include <dlfcn.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <set>

namespace sdps::core {

std::vector<std::filesystem::path> default_module_dirs() {
  std::error_code ec;
  const auto self = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (ec) return {"lib/sdps/modules"};
  std::vector<std::filesystem::path> out;
  for (const char* relative : {SDPS_MODULE_DIR_FROM_SBINDIR, SDPS_MODULE_DIR_FROM_BINDIR, "../lib/sdps/modules"}) {
    const auto dir = (self.parent_path() / relative).lexically_normal();
    if (std::find(out.begin(), out.end(), dir) == out.end()) out.push_back(dir);
  }
  return out;
}

namespace {

// Reads the signature marker from the file without loading it: a module
// built with sanitizers would abort a plain sdpsd inside dlopen.
void check_signature(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::error_code ec;
  const auto size = std::filesystem::file_size(path, ec);
  if (ec || size > (std::uintmax_t(1) << 30)) throw config_error(path.string() + " cannot be read");
  std::string bytes(static_cast<std::size_t>(size), '\0');
  if (!in.read(bytes.data(), static_cast<std::streamsize>(bytes.size())))
    throw config_error(path.string() + " cannot be read");
  const std::string marker = SDPS_MODULE_SIGNATURE_MARKER "abi=";
  const auto at = bytes.find(marker);
  if (at == std::string::npos)
    throw config_error(path.string() + " is not an sdps module: it carries no sdps module signature");
  const auto end = bytes.find('\0', at);
  const std::string found = bytes.substr(at + marker.size(), end == std::string::npos ? 200 : end - at - marker.size());
  const auto semicolon = found.find(";build=");
  const std::string abi = found.substr(0, semicolon);
  const std::string build = semicolon == std::string::npos ? "(none)" : found.substr(semicolon + 7);
  if (abi != std::to_string(SDPS_ABI_VERSION))
    throw config_error(path.string() + " was built for sdps module ABI " + abi + ", this sdpsd has ABI " +
                       std::to_string(SDPS_ABI_VERSION) + ": rebuild the module");
  if (build != SDPS_BUILD_SIGNATURE)
    throw config_error(path.string() + " is not binary compatible: module built as \"" + build +
                       "\", sdpsd built as \"" SDPS_BUILD_SIGNATURE "\"");
}

}  // namespace

module_file open_module(const std::vector<std::filesystem::path>& dirs, const std::string& name) {
  module_file file;
  std::string searched;
  for (const auto& dir : dirs) {
    std::error_code ec;
    if (std::filesystem::exists(dir / (name + ".so"), ec)) {
      file.path = dir / (name + ".so");
      break;
    }
    searched += (searched.empty() ? "" : ", ") + dir.string();
  }
  if (file.path.empty()) throw config_error("module '" + name + "' not found: no " + name + ".so in " + searched);
  check_signature(file.path);
  file.handle = ::dlopen(file.path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!file.handle) {
    const char* why = ::dlerror();
    throw config_error("module '" + name + "' cannot be loaded: " + (why ? why : "dlopen failed"));
  }
  ::dlerror();
  file.info = static_cast<const sdps_module_info*>(::dlsym(file.handle, "sdps_module_entry"));
  if (!file.info)
    throw config_error(file.path.string() + " is not an sdps module: it exports no sdps_module_entry");
  if (file.info->abi_version != SDPS_ABI_VERSION)
    throw config_error(file.path.string() + " was built for sdps module ABI " + std::to_string(file.info->abi_version) +
                       ", this sdpsd has ABI " + std::to_string(SDPS_ABI_VERSION) + ": rebuild the module");
  const std::string theirs = file.info->build_signature ? file.info->build_signature : "(none)";
  if (theirs != SDPS_BUILD_SIGNATURE)
    throw config_error(file.path.string() + " is not binary compatible: module built as \"" + theirs +
                       "\", sdpsd built as \"" SDPS_BUILD_SIGNATURE "\"");
  if (!file.info->name || name != file.info->name)
    throw config_error(file.path.string() + " calls itself '" + (file.info->name ? file.info->name : "") +
                       "', not '" + name + "'");
  if (!file.info->create) throw config_error(file.path.string() + " has no create function");
  return file;
}

namespace {

class instance_config final : public sdps::module_config {
 public:
  instance_config(const chain_entry& entry, std::size_t position, server_context& server, logger& log,
                  service_registry& services)
      : entry_(entry), position_(position), server_(server), log_(log), services_(services) {}

  const std::string& instance() const override { return entry_.instance; }
  settings& options() override { return *entry_.options; }
  server_context& server() override { return server_; }
  logger& log() override { return log_; }
  std::size_t position() const override { return position_; }
  void terminal() override { terminal_ = true; }
  void declare_role(const std::string& role) override { role_ = role; }

  bool is_terminal() const { return terminal_; }
  const std::string& role() const { return role_; }
  const std::vector<std::pair<std::string, bool>>& requirements() const { return requirements_; }

 protected:
  void provide_service(const char* id, void* object) override {
    services_.add({entry_.instance, id, object, position_});
  }
  void require_service(const char* id, bool earlier) override { requirements_.emplace_back(id, earlier); }

 private:
  const chain_entry& entry_;
  std::size_t position_;
  server_context& server_;
  logger& log_;
  service_registry& services_;
  bool terminal_ = false;
  std::string role_;
  std::vector<std::pair<std::string, bool>> requirements_;
};

std::string where_of(const module_instance& l) { return l.where.empty() ? l.instance : l.where; }

}  // namespace

std::unique_ptr<chain> assemble_chain(std::vector<std::unique_ptr<module_instance>> links,
                                      const requirement_list& requirements, service_registry& services,
                                      std::size_t terminal_at) {
  for (std::size_t i = 0; i < links.size() && i < requirements.size(); ++i) {
    for (const auto& [id, earlier] : requirements[i]) {
      bool found = false;
      for (const auto& e : services.entries())
        if (e.service == id && e.position != i && (!earlier || e.position < i)) found = true;
      if (!found)
        throw config_error(where_of(*links[i]) + ": module instance '" + links[i]->instance + "' (" +
                           links[i]->module + ") needs a module providing " + id +
                           (earlier ? " before it in the chain" : " in the chain"));
    }
  }
  if (terminal_at != SIZE_MAX && terminal_at + 1 < links.size())
    throw config_error(where_of(*links[terminal_at + 1]) + ": module instance '" + links[terminal_at + 1]->instance +
                       "' can never run: '" + links[terminal_at]->instance +
                       "' before it answers every command and must be last");
  // A login must be verified before anything else of it happens: stages
  // without a verifier would refuse every login.
  const module_instance* staged = nullptr;
  bool verifier = false;
  for (const auto& l : links) {
    if (l->stages.contains(login_stage::verify)) verifier = true;
    if (!staged && !l->stages.empty()) staged = l.get();
  }
  if (staged && !verifier)
    throw config_error(where_of(*staged) + ": module instance '" + staged->instance +
                       "' takes part in logins, but no instance of the chain verifies them (login stage verify, "
                       "as auth does): every login would be refused");
  // The sessions' maildrop: the chain's last provider of it (merge after
  // the spools it merges; a back end's one spool).
  maildrop_source* source = nullptr;
  std::size_t source_at = SIZE_MAX;
  for (const auto& e : services.entries())
    if (e.service == std::string_view(maildrop_source::service_id) && e.position < links.size() &&
        (source_at == SIZE_MAX || e.position >= source_at)) {
      source = static_cast<maildrop_source*>(e.object);
      source_at = e.position;
    }
  const module_instance* source_instance = source ? links[source_at].get() : nullptr;
  for (const auto& l : links) {
    try {
      l->object->start(services);
    } catch (const std::exception& e) {
      const std::string text = e.what();
      throw config_error(text.find(l->instance) != std::string::npos
                             ? text
                             : where_of(*l) + ": module instance '" + l->instance + "': " + text);
    }
  }
  return std::make_unique<chain>(std::move(links), source, source_instance);
}

std::unique_ptr<chain> build_chain(const server_config& config, server_context& server, logging::source_log& log,
                                   service_registry& services, chain_facts* facts) {
  auto dirs = config.module_path;
  for (auto& dir : default_module_dirs()) dirs.push_back(std::move(dir));
  std::vector<std::unique_ptr<module_instance>> links;
  requirement_list requirements;
  std::size_t terminal_at = SIZE_MAX;
  std::string role, role_by;

  for (std::size_t i = 0; i < config.chain.size(); ++i) {
    const chain_entry& entry = config.chain[i];
    const std::string who = entry.where + ": module instance '" + entry.instance + "' (" + entry.module + ")";
    module_file file;
    try {
      file = open_module(dirs, entry.module);
    } catch (const config_error& e) {
      throw config_error(who + ": " + e.what());
    }
    auto l = std::make_unique<module_instance>();
    l->module = entry.module;
    l->instance = entry.instance;
    l->where = entry.where;
    l->timeout = entry.timeout;
    l->log = log.derive(entry.instance);
    instance_config ic(entry, i, server, *l->log, services);
    try {
      // The top-level keys an instance reads are its own to reconfigure
      // on SIGHUP.
      if (config.globals) config.globals->attribute_reads_to(entry.instance);
      l->object.reset(file.info->create(ic));
      if (config.globals) config.globals->attribute_reads_to({});
      if (!l->object) throw config_error("create returned nothing");
      entry.options->refuse_unread(entry.instance);
      l->specs = l->object->commands();
      l->events = l->object->events();
      l->stages = l->object->login_stages();
    } catch (const config_error& e) {
      const std::string text = e.what();
      // Errors from settings already carry file:line and the instance.
      throw config_error(text.find(entry.instance) != std::string::npos ? text : who + ": " + text);
    } catch (const std::exception& e) {
      throw config_error(who + ": " + e.what());
    }
    if (ic.is_terminal() && terminal_at == SIZE_MAX) terminal_at = i;
    if (!ic.role().empty()) {
      if (!role.empty() && role != ic.role())
        throw config_error(who + ": it makes this process a " + ic.role() + ", but module instance '" + role_by +
                           "' makes it a " + role);
      role = ic.role();
      role_by = entry.instance;
    }
    requirements.push_back(ic.requirements());
    services.add_instance({l->instance, l->module, i, l->stages});
    links.push_back(std::move(l));
  }
  if (facts) facts->role = role.empty() ? "embedded" : role;
  // Top-level keys are the core's, the site's, or a module's (read by it
  // as it was created): anything else is a mistake.
  if (config.globals)
    for (const std::string& key : config.globals->unread())
      config.globals->fail(key, "unknown top-level setting '" + key +
                                    "' (neither sdpsd nor a module of the chain uses it)");

  return assemble_chain(std::move(links), requirements, services, terminal_at);
}

}  // namespace sdps::core
