// sdps deliver: the spool's local delivery agent, run by an MTA once per
// message. The message comes on stdin and is streamed into the spool
// (lib/spoolstore/delivery.hpp); docs/spool.md describes the result and the
// exit statuses.

#include "admin.hpp"
#include "queue.hpp"

#include "spoolstore/delivery.hpp"
#include "hostdb/hostdb.hpp"

#include <sdps/log.hpp>

#include <sodium.h>
#include <sysexits.h>
#include <unistd.h>

#include <cerrno>
#include <iostream>
#include <optional>
#include <system_error>

namespace sdps::admin {

namespace {

const char* deliver_usage =
    "usage: sdps -c FILE deliver [--punt NAME] -f SENDER RECIPIENT...   (the message on stdin)\n"
    "SENDER may be '' or '<>' (a bounce); addresses may be written <addr>.\n"
    "Exit status: 0 stored, 67 unknown host or recipient, 75 temporary failure (try again later).\n";

int fail(int status, const std::string& message) {
  std::cerr << "sdps: deliver: " << message << "\n";
  return status;
}

int usage(const std::string& message) {
  std::cerr << "sdps: deliver: " << message << "\n" << deliver_usage;
  return EX_USAGE;
}

/// Warnings from the spool library (a punt skipped) go to stderr, where
/// the MTA logs them.
class stderr_logger final : public logger {
 public:
  void write(log_level level, std::string_view line) override {
    std::cerr << "sdps: deliver: " << (level >= log_level::warning ? "warning: " : "") << line << "\n";
  }
  bool enabled(log_level level) const override { return level >= log_level::warning; }
};

/// "<addr>" -> "addr"; other text unchanged.
std::string unbracket(std::string text) {
  if (text.size() >= 2 && text.front() == '<' && text.back() == '>') return text.substr(1, text.size() - 2);
  return text;
}

/// A recipient checked against the customer domain and the host database;
/// nullopt (after printing why, with `status` set) if it cannot be taken.
std::optional<spoolstore::recipient> check_recipient(const site& s, const std::string& argument, int& status) {
  address_check checked = check_customer_address(s, unbracket(argument));
  if (checked.status != 0) {
    status = fail(checked.status, quoted(argument, 80) + ": " + checked.error);
    return std::nullopt;
  }
  return std::move(checked.recipient);
}

/// The punts to try, in order: the named one alone, or every punt with a
/// random one first and the others, shuffled, as fallbacks.
std::vector<spoolstore::punt_target> punt_order(const site& s, const std::optional<std::string>& named) {
  std::vector<spoolstore::punt_target> punts = shuffled_punts(s);
  if (named) std::erase_if(punts, [&](const spoolstore::punt_target& p) { return p.name != *named; });
  return punts;
}

std::size_t read_stdin(std::span<char> buffer) {
  for (;;) {
    const ssize_t n = ::read(STDIN_FILENO, buffer.data(), buffer.size());
    if (n >= 0) return static_cast<std::size_t>(n);
    if (errno != EINTR) throw std::system_error(errno, std::generic_category(), "reading standard input");
  }
}

}  // namespace

int deliver_main(const site& s, const std::vector<std::string>& args) {
  std::optional<std::string> punt;
  std::optional<std::string> sender;
  std::vector<std::string> recipients;
  bool options = true;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (options && a == "--") {
      options = false;
    } else if (options && a == "--punt") {
      if (i + 1 >= args.size()) return usage("--punt needs a punt name");
      punt = args[++i];
    } else if (options && a.rfind("--punt=", 0) == 0) {
      punt = a.substr(7);
    } else if (options && a == "-f") {
      if (i + 1 >= args.size()) return usage("-f needs a sender ('' for a bounce)");
      sender = args[++i];
    } else if (options && a.rfind("-f", 0) == 0) {
      sender = a.substr(2);
    } else if (options && a.size() > 1 && a[0] == '-') {
      return usage("unknown option '" + printable(a, 40) + "'");
    } else {
      recipients.push_back(a);
    }
  }
  if (!sender) return usage("the sender (-f SENDER) is required");
  if (recipients.empty()) return usage("no recipient");

  const std::string from = unbracket(*sender);
  if (!spoolstore::valid_address(from))
    return fail(EX_DATAERR, "the sender '" + printable(*sender, 80) + "' is not a usable address");

  // Every recipient is checked before anything is stored: a 67 means
  // nothing was delivered, so the MTA may bounce the whole message.
  std::vector<spoolstore::recipient> to;
  for (const auto& r : recipients) {
    int status = EX_OK;
    auto checked = check_recipient(s, r, status);
    if (!checked) return status;
    to.push_back(std::move(*checked));
  }

  if (punt && !s.punts.count(*punt))
    return fail(EX_TEMPFAIL, "no punt named '" + printable(*punt, 40) + "' in " + s.config_file.string() +
                                 " (the mail stays queued)");
  const auto punts = punt_order(s, punt);
  if (punts.empty()) return fail(EX_TEMPFAIL, s.config_file.string() + " names no punts (the mail stays queued)");

  stderr_logger log;
  try {
    spoolstore::deliver(punts, from, to, read_stdin, &log);
  } catch (const spoolstore::delivery_error& e) {
    return fail(EX_TEMPFAIL, std::string(e.what()) + (e.partial() ? " (some copies were stored)" : ""));
  } catch (const std::invalid_argument& e) {
    return fail(EX_DATAERR, e.what());
  }
  return EX_OK;
}

}  // namespace sdps::admin
