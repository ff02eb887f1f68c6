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
#include <stdexcept>
#include <system_error>

namespace sdps::admin {

namespace {

int fail(int status, const std::string& message) {
  std::cerr << "sdps: deliver: " << message << "\n";
  return status;
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

int deliver_main(tool& t, const std::vector<std::string>& words) {
  arguments args("deliver", "[--punt NAME] -f SENDER [--] RECIPIENT...",
                 "The spool's local delivery agent, run by an MTA: stores the message on standard input\n"
                 "once per RECIPIENT (each copy with its own UIDL) on a random punt, or on --punt NAME.\n"
                 "SENDER may be '' or '<>' (the null sender of a bounce); addresses may be written <addr>;\n"
                 "`--` before the recipients keeps one that begins with '-' from being read as an option.\n"
                 "Exit status: 0 stored; 67 unknown host or recipient (nothing stored); 65 unusable sender,\n"
                 "or a message over max_message_size (nothing stored); 75 temporary failure (try again\n"
                 "later); 64 usage.\n");
  std::string sender;
  std::optional<std::string> punt;
  std::string punt_text;
  args.options()(",f", po::value(&sender)->value_name("SENDER"), "the envelope sender (required)")(
      "punt", po::value(&punt_text)->value_name("NAME"), "store on this punt only (no fallback to another)");
  std::vector<std::string> recipients;
  args.operands("RECIPIENT", recipients, 1);
  if (const auto status = args.parse(words)) return *status;
  if (!args.given("-f")) return args.usage_error("the sender (-f SENDER) is required");
  if (args.given("punt")) punt = punt_text;
  const site& s = t.site(tool::writes::punts);

  const std::string from = unbracket(sender);
  if (!spoolstore::valid_address(from))
    return fail(EX_DATAERR, "the sender '" + printable(sender, 80) + "' is not a usable address");

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
  // max_message_size, as sdps lmtp applies it: counted as the octets
  // arrive, so a message over it is refused without being stored whole.
  std::uint64_t received = 0;
  bool too_big = false;
  const spoolstore::input_reader input = [&](std::span<char> buffer) {
    const std::size_t n = read_stdin(buffer);
    received += n;
    if (received > s.max_message_size) {
      too_big = true;
      throw std::length_error("over max_message_size");
    }
    return n;
  };
  try {
    spoolstore::deliver(punts, from, to, input, &log);
  } catch (const spoolstore::delivery_error& e) {
    // EX_DATAERR: every MTA takes it as permanent (Postfix bounces it as
    // 5.6.0, Exim as any status but its temp_errors), which a message too
    // big for the spool is; EX_NOPERM would read as "permission denied".
    if (too_big)
      return fail(EX_DATAERR, "the message is over max_message_size (" + std::to_string(s.max_message_size) +
                                  " octets): refused, nothing stored");
    return fail(EX_TEMPFAIL, std::string(e.what()) + (e.partial() ? " (some copies were stored)" : ""));
  } catch (const std::invalid_argument& e) {
    return fail(EX_DATAERR, e.what());
  }
  return EX_OK;
}

}  // namespace sdps::admin
