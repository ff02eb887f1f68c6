#include "spoolstore/access.hpp"

#include <sys/stat.h>

namespace sdps::spoolstore {

namespace {

/// Message files looked at per punt at the most: enough to tell; a huge
/// spool is not scanned whole at start-up.
constexpr std::size_t files_looked_at = 20000;

/// What check_dir found unreadable: how many files, and the first one.
struct unreadable_files {
  std::size_t seen = 0;
  std::size_t unreadable = 0;
  std::string example;
};

// `dir` must be writable; below it, `depth` levels of folders too, and
// the files in them readable.
void check_dir(const std::string& who, const std::filesystem::path& dir, int depth, std::vector<std::string>& out,
               unreadable_files& files) {
  struct stat st{};
  if (::stat(dir.c_str(), &st) != 0) return;
  if (!base::can_access(dir, base::read_access | base::write_access | base::search_access)) {
    out.push_back("user '" + who + "' cannot write " + base::describe_file(dir, st) + ": run  chown -R " + who + ": " +
                  dir.string());
    return;
  }
  if (depth == 0) return;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    if (files.seen > files_looked_at) return;
    struct stat child{};
    if (::lstat(entry.path().c_str(), &child) != 0) continue;
    if (S_ISDIR(child.st_mode)) {
      check_dir(who, entry.path(), depth - 1, out, files);
    } else if (S_ISREG(child.st_mode)) {
      ++files.seen;
      if (!base::can_open(entry.path()) && files.unreadable++ == 0)
        files.example = base::describe_file(entry.path(), child);
    }
  }
}

}  // namespace

std::vector<std::string> check_access(const std::map<std::string, std::filesystem::path>& punts) {
  std::vector<std::string> out;
  const std::string who = base::current_user_name();
  for (const auto& [name, dir] : punts) {
    base::check_ancestors(dir, out);
    unreadable_files files;
    // The punt, its host folders, and their tmp/ and locks/.
    check_dir(who, dir, 2, out, files);
    if (files.unreadable)
      out.push_back("user '" + who + "' cannot read " + std::to_string(files.unreadable) +
                    " message file(s) in punt " + name + ", e.g. " + files.example + ": run  chown -R " + who + ": " +
                    dir.string());
  }
  return out;
}

}  // namespace sdps::spoolstore
