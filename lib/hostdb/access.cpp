#include "hostdb/access.hpp"

#include <sys/stat.h>

namespace sdps::hostdb {

std::vector<std::string> check_access(const std::filesystem::path& hosts_file) {
  std::vector<std::string> out;
  base::check_ancestors(hosts_file, out);
  if (!out.empty()) return out;
  const std::string who = base::current_user_name();
  struct stat st{};
  if (::stat(hosts_file.c_str(), &st) == 0 && !base::can_open(hosts_file))
    out.push_back("user '" + who + "' cannot read the host database " + base::describe_file(hosts_file, st) +
                  ": run  chown " + who + ": " + hosts_file.string() + "  (and use `sdps host ...` as root or as " +
                  who + ")");
  const auto folder = hosts_file.parent_path();
  struct stat parent{};
  if (::stat(folder.c_str(), &parent) == 0 && !base::can_access(folder, base::write_access | base::search_access))
    out.push_back("user '" + who + "' cannot write " + base::describe_file(folder, parent) +
                  ", where `sdps host ...` replaces the host database: run  chown " + who + ": " + folder.string());
  return out;
}

}  // namespace sdps::hostdb
