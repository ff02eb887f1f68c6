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

const command_group spool_commands{"spool", "the queued messages", {"list HOST"}};

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

int list(tool& t, const std::vector<std::string>& words) {
  arguments args("spool list", "HOST",
                 "Prints HOST's queued messages on every punt, one line each, oldest first, fields separated\n"
                 "by tabs: PUNT  UIDL  SIZE  read|unread  <FROM>  <TO>\n"
                 "Exit status: 0; 67 no such host (not in the host database, no spool folder); 65 a bad\n"
                 "host name; 74 some punt or message could not be read (the rest is listed); 64 usage.\n");
  std::string argument;
  args.operand("HOST", argument);
  if (const auto status = args.parse(words)) return *status;
  const site& s = t.site();
  const std::string host = hostdb::normalise_host(argument, s.customer_domain);
  if (host.empty() || !spoolstore::valid_host(host))
    return fail(EX_DATAERR, quoted(argument, 80) + " is not a host name");
  const hostdb::lookup_result found = host_finder_of(s).find(host);
  if (found.status == hostdb::lookup_status::unavailable)
    return fail(EX_IOERR, "cannot read the host database: " + found.detail);
  const bool known = found.status != hostdb::lookup_status::unknown;

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

int spool_main(tool& t, const std::vector<std::string>& words) {
  std::string command;
  if (const auto status = pick_subcommand(spool_commands, words, command)) return *status;
  return list(t, std::vector<std::string>(words.begin() + 1, words.end()));
}

}  // namespace sdps::admin
