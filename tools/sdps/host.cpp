// sdps host ...: the host store from the command line (add, passwd,
// dialup, del, list; init, import, export), on a hosts file or a
// PostgreSQL database alike (lib/hostdb's host_admin). The file format and
// the exit statuses are described in modules/auth/README.md.

#include "admin.hpp"

#include "base/address_prefix.hpp"
#include "hostdb/hostdb.hpp"
#include "hostdb/store.hpp"

#include <sdps/log.hpp>

#include <sodium.h>
#include <sysexits.h>
#include <termios.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <optional>
#include <system_error>

namespace sdps::admin {

namespace {

const command_group host_commands{
    "host",
    "the host database",
    {"add HOST [--dialup-ip ADDR[/PREFIX]]...", "passwd HOST --dialup|--pop3   (the password, one line, on stdin)",
     "dialup HOST [--clear] [--add ADDR[/PREFIX]]... [--remove ADDR[/PREFIX]]...", "del HOST", "list",
     "init                  (a database's schema; nothing to do for a file)",
     "import HOSTS-FILE     (the store becomes the file's hosts, in one transaction)",
     "export                (every host in the hosts file format, on stdout)"}};

/// Said by every host subcommand's --help.
const char* host_names = "HOST is the short name (sample) or the full one (sample.demon.co.uk).\n";

int fail(int status, const std::string& message) {
  std::cerr << "sdps: " << message << "\n";
  return status;
}

/// HOST, normalised; nullopt (after printing why) if it is not a host name
/// of the customer domain.
std::optional<std::string> host_argument(const site& s, const std::string& text) {
  std::string name = hostdb::normalise_host(text, s.customer_domain);
  if (name.empty()) {
    fail(EX_DATAERR, quoted(text, 80) + " is not a host name: letters, digits and hyphens, as in sample" +
                         (s.customer_domain.empty() ? std::string() : " or sample." + s.customer_domain));
    return std::nullopt;
  }
  return name;
}

std::string full_name(const site& s, const std::string& host) {
  return s.customer_domain.empty() ? host : host + "." + s.customer_domain;
}

/// The admin face of the store `hosts:` names (a database: connected now).
std::unique_ptr<hostdb::host_admin> open_hosts(const site& s) { return hostdb::open_admin(hosts_location(s)); }

/// Malformed lines (a file) or rows (a database) that list or export skipped.
void report_problems(const site& s, const std::vector<hostdb::problem>& problems) {
  for (const auto& p : problems)
    std::cerr << "sdps: " << (p.line > 0 ? hostdb::describe(s.hosts, p) : p.message) << " (skipped)\n";
}

std::string prefixes_text(const hostdb::host_record& r) {
  if (r.dialup.empty()) return "-";
  std::string out;
  for (const auto& p : r.dialup) {
    if (!out.empty()) out += ',';
    out += p.to_string();
  }
  return out;
}

std::string passwords_text(const hostdb::host_record& r) {
  if (r.dialup_hash.empty() && r.pop3_hash.empty()) return "none";
  if (r.pop3_hash.empty()) return "dialup";
  if (r.dialup_hash.empty()) return "pop3";
  return "dialup,pop3";
}

/// Turns terminal echo off while the password is typed (nothing to do
/// when stdin is a pipe), and back on afterwards.
class echo_off {
 public:
  echo_off() {
    if (!::isatty(STDIN_FILENO) || ::tcgetattr(STDIN_FILENO, &saved_) != 0) return;
    termios quiet = saved_;
    quiet.c_lflag &= ~static_cast<tcflag_t>(ECHO);
    quiet.c_lflag |= ECHONL;
    active_ = ::tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet) == 0;
  }
  ~echo_off() {
    if (active_) ::tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved_);
  }
  echo_off(const echo_off&) = delete;
  echo_off& operator=(const echo_off&) = delete;

 private:
  termios saved_{};
  bool active_ = false;
};

/// Reads one line from stdin into `out`: the trailing LF (and a CR before
/// it) stripped, nothing else changed. Returns 0 or an exit status (after
/// printing why).
int read_password(hostdb::secret& out, const std::string& prompt) {
  if (::isatty(STDIN_FILENO)) std::cerr << prompt << std::flush;
  echo_off quiet;
  std::array<char, hostdb::max_password + 2> buffer{};
  std::size_t length = 0;
  bool got_any = false;
  bool overflow = false;
  for (;;) {
    char c = 0;
    const ssize_t n = ::read(STDIN_FILENO, &c, 1);
    if (n < 0) {
      if (errno == EINTR) continue;
      const int error = errno;
      sodium_memzero(buffer.data(), buffer.size());
      return fail(EX_IOERR, std::string("cannot read the password from standard input: ") + std::strerror(error));
    }
    if (n == 0) break;
    got_any = true;
    if (c == '\n') break;
    if (length < buffer.size())
      buffer[length++] = c;
    else
      overflow = true;
    sodium_memzero(&c, 1);
  }
  if (!overflow && length > 0 && buffer[length - 1] == '\r') --length;
  const std::string_view text(buffer.data(), length);
  int status = 0;
  if (!got_any)
    status = fail(EX_NOINPUT, "no password on standard input (give it as one line)");
  else if (text.empty())
    status = fail(EX_DATAERR, "empty password refused");
  else if (overflow || text.size() > hostdb::max_password)
    status = fail(EX_DATAERR, "password too long: a POP3 client can send at most " +
                                  std::to_string(hostdb::max_password) + " octets");
  else if (std::any_of(text.begin(), text.end(), [](char c) {
             const auto u = static_cast<unsigned char>(c);
             return (u < 0x20 && c != '\t') || u == 0x7f;
           }))
    status = fail(EX_DATAERR, "the password contains a control character, which POP3 clients cannot send");
  else
    out = hostdb::secret(text);
  sodium_memzero(buffer.data(), buffer.size());
  return status;
}

int host_add(tool& t, const std::vector<std::string>& words) {
  arguments args("host add", "HOST [--dialup-ip ADDR[/PREFIX]]...",
                 std::string("Adds a customer host; set its passwords with `host passwd`.\n") + host_names +
                     "Exit status: 0 added; 65 a bad host name or address, or the host exists; 64 usage.\n");
  std::vector<std::string> dialup_text;
  args.options()("dialup-ip", po::value(&dialup_text)->value_name("ADDR[/PREFIX]"),
                 "an address, or a network, the host's dialup password is accepted from (repeatable)");
  std::string host;
  args.operand("HOST", host);
  if (const auto status = args.parse(words)) return *status;

  const site& s = t.site(tool::writes::hosts);
  const auto name = host_argument(s, host);
  if (!name) return EX_DATAERR;
  std::vector<base::address_prefix> dialup;
  for (const std::string& value : dialup_text) {
    const auto p = base::address_prefix::parse(value);
    if (!p) return fail(EX_DATAERR, quoted(value, 80) + " is not an IP address or prefix (ADDR or ADDR/LEN)");
    if (std::none_of(dialup.begin(), dialup.end(), [&](const auto& q) { return q.to_string() == p->to_string(); }))
      dialup.push_back(*p);
  }
  for (const auto& p : dialup)
    if (p.length() == 0)
      std::cerr << "sdps: warning: " << p.to_string()
                << " is every address: the dialup password will work from anywhere\n";

  hostdb::host_record record;
  record.name = *name;
  record.dialup = dialup;
  if (!open_hosts(s)->add(record)) return fail(EX_DATAERR, "host " + *name + " already exists (see `sdps host list`)");
  std::cout << "added host " << *name << " (" << full_name(s, *name) << "), dialup addresses: "
            << prefixes_text(record) << "\n"
            << "set its passwords with: sdps -c " << s.config_file.string() << " host passwd " << *name
            << " --pop3 (or --dialup)\n";
  return EX_OK;
}

int host_passwd(tool& t, const std::vector<std::string>& words) {
  arguments args("host passwd", "HOST --dialup|--pop3",
                 std::string("Sets the host's dialup or POP3 password, read as one line from standard input\n"
                             "(with the echo off on a terminal); stored as an Argon2id hash.\n") +
                     host_names +
                     "Exit status: 0 set; 67 no such host; 65 a bad host name, or an empty, too long or\n"
                     "unsendable password; 66 nothing on standard input; 64 usage.\n");
  bool dialup = false, pop3 = false;
  args.options()("dialup", po::bool_switch(&dialup), "the dialup password (accepted from its dialup addresses)")(
      "pop3", po::bool_switch(&pop3), "the POP3 password (accepted from anywhere)");
  std::string host;
  args.operand("HOST", host);
  if (const auto status = args.parse(words)) return *status;
  if (dialup && pop3) return args.usage_error("--dialup or --pop3, not both");
  if (!dialup && !pop3) return args.usage_error("needs --dialup or --pop3");
  enum class which { dialup, pop3 } kind = dialup ? which::dialup : which::pop3;

  const site& s = t.site(tool::writes::hosts);
  const auto name = host_argument(s, host);
  if (!name) return EX_DATAERR;
  const char* label = kind == which::dialup ? "dialup" : "POP3";

  const auto cost = hostdb::parse_cost(s.password_cost);
  if (!cost)
    return fail(EX_CONFIG, s.config_file.string() + ": 'password_cost' must be interactive, moderate, sensitive or min");
  // Ask for the password only for a host that exists (checked again in
  // the edit below).
  const auto hosts = open_hosts(s);
  if (!hosts->find(*name)) return fail(EX_NOUSER, "no host " + *name + " (add it with `sdps host add`)");

  hostdb::secret password;
  if (const int status = read_password(password, std::string(label) + " password for " + *name + ": "))
    return status;
  // Hash before the edit (the file's lock, the row's): Argon2id is slow on purpose.
  const std::string hash = hostdb::hash_password(password.view(), *cost);
  password.clear();

  const auto field = kind == which::dialup ? hostdb::password_kind::dialup : hostdb::password_kind::pop3;
  if (!hosts->set_password(*name, field, hash))
    return fail(EX_NOUSER, "no host " + *name + " (it was deleted meanwhile)");
  std::cout << label << " password of host " << *name << " set\n";
  if (kind == which::dialup) {
    const auto r = hosts->find(*name);
    if (r && r->dialup.empty())
      std::cerr << "sdps: warning: host " << *name
                << " has no dialup addresses, so its dialup password is accepted from nowhere\n";
  }
  return EX_OK;
}

/// `sdps host dialup HOST [--clear] [--add P]... [--remove P]...`: shows
/// the host's dialup addresses, or changes them in one locked edit. The
/// edit is --clear first, then every --remove, then every --add, whatever
/// their order on the command line; removing an address the host does not
/// have changes nothing and fails, adding one it has is a no-op.
int host_dialup(tool& t, const std::vector<std::string>& words) {
  arguments args("host dialup", "HOST [--clear] [--add ADDR[/PREFIX]]... [--remove ADDR[/PREFIX]]...",
                 std::string("Shows the host's dialup addresses, one a line; or changes them in one edit:\n"
                             "--clear first, then every --remove, then every --add, whatever their order.\n") +
                     host_names +
                     "Exit status: 0 shown or changed; 67 no such host; 65 a bad address, or one to\n"
                     "remove that the host does not have (then nothing changes); 64 usage.\n");
  bool clear = false;
  std::vector<std::string> add_text, remove_text;
  args.options()("clear", po::bool_switch(&clear), "remove every dialup address")(
      "add", po::value(&add_text)->value_name("ADDR[/PREFIX]"), "add this address or network (repeatable)")(
      "remove", po::value(&remove_text)->value_name("ADDR[/PREFIX]"),
      "remove this address or network (repeatable)");
  std::string host;
  args.operand("HOST", host);
  if (const auto status = args.parse(words)) return *status;

  const bool changes = clear || !add_text.empty() || !remove_text.empty();
  const site& s = t.site(changes ? tool::writes::hosts : tool::writes::nothing);
  const auto name = host_argument(s, host);
  if (!name) return EX_DATAERR;
  std::vector<base::address_prefix> adds, removes;
  for (const auto* texts : {&add_text, &remove_text})
    for (const std::string& value : *texts) {
      const auto p = base::address_prefix::parse(value);
      if (!p)
        return fail(EX_DATAERR, quoted(value, 80) + " is not an IP address or prefix (ADDR or ADDR/LEN)");
      (texts == &add_text ? adds : removes).push_back(*p);
    }
  const auto same = [](const base::address_prefix& a, const base::address_prefix& b) { return a.to_string() == b.to_string(); };

  const auto hosts = open_hosts(s);
  if (!clear && adds.empty() && removes.empty()) {
    const auto r = hosts->find(*name);
    if (!r) return fail(EX_NOUSER, "no host " + *name + " (add it with `sdps host add`)");
    for (const auto& p : r->dialup) std::cout << p.to_string() << "\n";
    return EX_OK;
  }

  enum class outcome { changed, unchanged, no_host, not_there } result = outcome::no_host;
  std::string missing;
  hostdb::host_record after;
  hosts->edit(*name, [&](hostdb::host_record& record) {
    hostdb::host_record* r = &record;
    std::vector<base::address_prefix> dialup = clear ? std::vector<base::address_prefix>{} : r->dialup;
    for (const auto& p : removes) {
      const auto at = std::find_if(dialup.begin(), dialup.end(), [&](const auto& q) { return same(p, q); });
      if (at == dialup.end()) {
        // Without --clear, a typo must not pass for a removal.
        if (clear) continue;
        result = outcome::not_there;
        missing = p.to_string();
        return false;
      }
      dialup.erase(at);
    }
    for (const auto& p : adds)
      if (std::none_of(dialup.begin(), dialup.end(), [&](const auto& q) { return same(p, q); })) dialup.push_back(p);
    const bool changed = dialup.size() != r->dialup.size() ||
                         !std::equal(dialup.begin(), dialup.end(), r->dialup.begin(), same);
    r->dialup = std::move(dialup);
    after = *r;
    result = changed ? outcome::changed : outcome::unchanged;
    return changed;
  });
  switch (result) {
    case outcome::no_host:
      return fail(EX_NOUSER, "no host " + *name + " (add it with `sdps host add`)");
    case outcome::not_there:
      return fail(EX_DATAERR, "host " + *name + " has no dialup address " + missing +
                                  "; nothing changed (see `sdps host dialup " + *name + "`)");
    case outcome::changed:
    case outcome::unchanged:
      break;
  }
  std::cout << "dialup addresses of host " << *name << (result == outcome::changed ? " now: " : " unchanged: ")
            << prefixes_text(after) << "\n";
  for (const auto& p : after.dialup)
    if (p.length() == 0)
      std::cerr << "sdps: warning: " << p.to_string()
                << " is every address: the dialup password will work from anywhere\n";
  if (after.dialup.empty() && !after.dialup_hash.empty())
    std::cerr << "sdps: warning: host " << *name
              << " has no dialup addresses left, so its dialup password is accepted from nowhere\n";
  return EX_OK;
}

int host_del(tool& t, const std::vector<std::string>& words) {
  arguments args("host del", "HOST",
                 std::string("Removes a host from the host database; mail queued for it stays in the spools.\n") +
                     host_names + "Exit status: 0 removed; 67 no such host; 65 a bad host name; 64 usage.\n");
  std::string host;
  args.operand("HOST", host);
  if (const auto status = args.parse(words)) return *status;
  const site& s = t.site(tool::writes::hosts);
  const auto name = host_argument(s, host);
  if (!name) return EX_DATAERR;
  if (!open_hosts(s)->remove(*name)) return fail(EX_NOUSER, "no host " + *name);
  std::cout << "deleted host " << *name << "; mail already queued for it stays in the spools"
            << " (sdps spool list " << *name << " shows it; new mail for it is refused)\n";
  return EX_OK;
}

int host_list(tool& t, const std::vector<std::string>& words) {
  arguments args("host list", "",
                 "Lists the hosts, one a line: name, dialup addresses (comma-separated, - for none),\n"
                 "passwords set (dialup,pop3 | dialup | pop3 | none), separated by tabs.\n"
                 "Exit status: 0; 65 the host database has lines it cannot read (named on stderr).\n");
  if (const auto status = args.parse(words)) return *status;
  const site& s = t.site();
  const auto problems = open_hosts(s)->list([](const hostdb::host_record& r) {
    std::cout << r.name << '\t' << prefixes_text(r) << '\t' << passwords_text(r) << '\n';
  });
  report_problems(s, problems);
  return problems.empty() ? EX_OK : EX_DATAERR;
}

int host_init(tool& t, const std::vector<std::string>& words) {
  arguments args("host init", "",
                 "Creates the host store's schema in a PostgreSQL database (idempotent); for a hosts\n"
                 "file there is nothing to do, and it says so.\n"
                 "Exit status: 0 done; 75 the database cannot be reached; 64 usage.\n");
  if (const auto status = args.parse(words)) return *status;
  std::cout << open_hosts(t.site())->init() << "\n";
  return EX_OK;
}

int host_import(tool& t, const std::vector<std::string>& words) {
  arguments args("host import", "HOSTS-FILE",
                 "Makes the host store hold exactly the hosts of HOSTS-FILE (the hosts file format), in one\n"
                 "transaction: hosts added, changed and removed; a file with a malformed line changes nothing.\n"
                 "Exit status: 0 imported; 65 a malformed line; 66 no such file; 75 the database cannot be\n"
                 "reached; 64 usage.\n");
  std::string file_text;
  args.operand("HOSTS-FILE", file_text);
  if (const auto status = args.parse(words)) return *status;
  const std::filesystem::path file = std::filesystem::absolute(file_text);
  const auto hosts = open_hosts(t.site(tool::writes::hosts));
  hostdb::import_summary done;
  try {
    done = hosts->import_file(file);
  } catch (const hostdb::malformed_file& e) {
    // The file to import is at fault, not the store: nothing was changed.
    return fail(EX_DATAERR, std::string(e.what()) + "; nothing imported");
  } catch (const std::system_error& e) {
    if (e.code() == std::errc::no_such_file_or_directory) return fail(EX_NOINPUT, e.what());
    throw;
  }
  std::cout << "imported " << file.string() << " into " << hosts->where() << ": " << done.hosts << " host(s), "
            << done.added << " added, " << done.changed << " changed, " << done.removed << " removed\n";
  return EX_OK;
}

int host_export(tool& t, const std::vector<std::string>& words) {
  arguments args("host export", "",
                 "Writes every host in the hosts file format on standard output (a backup, or a file for\n"
                 "`host import`).\n"
                 "Exit status: 0; 65 malformed lines or rows were skipped (named on stderr); 75 the\n"
                 "database cannot be reached; 64 usage.\n");
  if (const auto status = args.parse(words)) return *status;
  const site& s = t.site();
  const auto problems = open_hosts(s)->export_to(std::cout);
  if (!std::cout) return fail(EX_IOERR, "cannot write the export to standard output");
  report_problems(s, problems);
  return problems.empty() ? EX_OK : EX_DATAERR;
}

}  // namespace

int host_main(tool& t, const std::vector<std::string>& words) {
  std::string command;
  if (const auto status = pick_subcommand(host_commands, words, command)) return *status;
  const std::vector<std::string> rest(words.begin() + 1, words.end());
  try {
    if (command == "add") return host_add(t, rest);
    if (command == "passwd") return host_passwd(t, rest);
    if (command == "dialup") return host_dialup(t, rest);
    if (command == "del") return host_del(t, rest);
    if (command == "init") return host_init(t, rest);
    if (command == "import") return host_import(t, rest);
    if (command == "export") return host_export(t, rest);
    return host_list(t, rest);
  } catch (const hostdb::malformed_file& e) {
    return fail(EX_CONFIG, e.what());
  } catch (const hostdb::busy& e) {
    return fail(EX_TEMPFAIL, e.what());
  } catch (const hostdb::store_unavailable& e) {
    return fail(EX_TEMPFAIL, e.what());
  } catch (const hostdb::store_error& e) {  // a malformed row in the way, a missing schema
    return fail(EX_CONFIG, e.what());
  } catch (const std::system_error& e) {  // filesystem_error too
    return fail(EX_IOERR, e.what());
  }
}

}  // namespace sdps::admin
