// sdps spool list HOST: a customer host's queued messages on every punt,
// one line each (format in docs/spool.md).

#include "admin.hpp"

#include "hostdb/hostdb.hpp"
#include "spoolstore/store.hpp"

#include <sdps/log.hpp>

#include <sysexits.h>

#include <algorithm>
#include <iostream>

namespace sdps::admin {

namespace {

const char* spool_usage =
    "usage: sdps -c FILE spool list HOST\n"
    "Prints one line per queued message, oldest first, fields separated by tabs:\n"
    "  PUNT  UIDL  SIZE  read|unread  <FROM>  <TO>\n";

int fail(int status, const std::string& message) {
  std::cerr << "sdps: spool: " << message << "\n";
  return status;
}

class stderr_logger final : public logger {
 public:
  void write(log_level level, std::string_view line) override {
    std::cerr << "sdps: spool: " << (level >= log_level::warning ? "warning: " : "") << line << "\n";
  }
  bool enabled(log_level level) const override { return level >= log_level::warning; }
};

struct listed {
  std::string punt;
  std::filesystem::path folder;
  spoolstore::entry entry;
};

int list(const site& s, const std::string& argument) {
  const std::string host = hostdb::normalise_host(argument, s.customer_domain);
  if (host.empty() || !spoolstore::valid_host(host))
    return fail(EX_DATAERR, quoted(argument, 80) + " is not a host name");
  bool known = false;
  try {
    known = hostdb::host_exists(s.hosts, host);
  } catch (const std::exception& e) {
    return fail(EX_IOERR, "cannot read the host database: " + std::string(e.what()));
  }

  stderr_logger log;
  int status = EX_OK;
  bool any_folder = false;
  std::vector<listed> all;
  for (const auto& [punt, root] : s.punts) {
    const auto folder = spoolstore::host_dir(root, host);
    std::error_code ec;
    if (std::filesystem::exists(folder, ec)) any_folder = true;
    try {
      for (auto& e : spoolstore::scan(root, host, "", &log)) all.push_back({punt, folder, std::move(e)});
    } catch (const std::exception& e) {
      log.warning("punt ", punt, ": ", e.what(), " (its messages are not listed)");
      status = EX_IOERR;
    }
  }
  if (!known && !any_folder) return fail(EX_NOUSER, "no such customer host '" + host + "'");
  if (!known) log.warning("'", host, "' is not in the host database; listing what its spool folders hold");

  // Oldest first across punts, as a host login numbers them.
  std::stable_sort(all.begin(), all.end(),
                   [](const listed& a, const listed& b) { return a.entry.name.uidl < b.entry.name.uidl; });
  for (const auto& m : all) {
    std::string flag = "?", from = "?", to = "?";
    try {
      const auto file = spoolstore::message_file::open(m.folder / m.entry.file);
      if (!file) continue;  // removed since the scan
      flag = file->read_flag() ? "read" : "unread";
      from = "<" + file->envelope().from + ">";
      to = "<" + file->envelope().to + ">";
    } catch (const std::exception& e) {
      log.warning(e.what());
      status = EX_IOERR;
    }
    std::cout << m.punt << '\t' << m.entry.name.uidl << '\t' << m.entry.name.size << '\t' << flag << '\t' << from
              << '\t' << to << '\n';
  }
  std::cout.flush();
  if (!std::cout) return fail(EX_IOERR, "cannot write the listing");
  return status;
}

}  // namespace

int spool_main(const site& s, const std::vector<std::string>& args) {
  if (args.size() == 2 && args[0] == "list") return list(s, args[1]);
  if (!args.empty() && (args[0] == "-h" || args[0] == "--help")) {
    std::cout << spool_usage;
    return EX_OK;
  }
  std::cerr << "sdps: spool: expected 'list HOST'\n" << spool_usage;
  return EX_USAGE;
}

}  // namespace sdps::admin
