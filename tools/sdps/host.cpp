// sdps host ...: the host database from the command line (add, passwd,
// dialup, del, list). The file format and the exit statuses are described in
// modules/auth/README.md.

#include "admin.hpp"

#include "hostdb/hostdb.hpp"

#include <sdps/log.hpp>

#include <sodium.h>
#include <sysexits.h>
#include <termios.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <iostream>
#include <optional>
#include <system_error>

namespace sdps::admin {

namespace {

const char* host_usage =
    "usage: sdps -c FILE host add HOST [--dialup-ip ADDR[/PREFIX]]...\n"
    "       sdps -c FILE host passwd HOST --dialup|--pop3   (the password, one line, on stdin)\n"
    "       sdps -c FILE host dialup HOST [--clear] [--add ADDR[/PREFIX]]... [--remove ADDR[/PREFIX]]...\n"
    "       sdps -c FILE host del HOST\n"
    "       sdps -c FILE host list\n"
    "HOST is the short name (sample) or the full one (sample.demon.co.uk).\n";

int fail(int status, const std::string& message) {
  std::cerr << "sdps: " << message << "\n";
  return status;
}

int usage(const std::string& message) {
  std::cerr << "sdps: " << message << "\n" << host_usage;
  return EX_USAGE;
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

int host_add(const site& s, const std::vector<std::string>& args) {
  std::optional<std::string> name;
  std::vector<hostdb::prefix> dialup;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    std::string value;
    if (arg == "--dialup-ip") {
      if (i + 1 == args.size()) return usage("--dialup-ip needs ADDR or ADDR/PREFIX");
      value = args[++i];
    } else if (arg.rfind("--dialup-ip=", 0) == 0) {
      value = arg.substr(12);
    } else if (!arg.empty() && arg[0] == '-') {
      return usage("host add: unknown option '" + printable(arg, 40) + "'");
    } else {
      if (name) return usage("host add takes one HOST");
      name = host_argument(s, arg);
      if (!name) return EX_DATAERR;
      continue;
    }
    const auto p = hostdb::prefix::parse(value);
    if (!p) return fail(EX_DATAERR, quoted(value, 80) + " is not an IP address or prefix (ADDR or ADDR/LEN)");
    if (std::none_of(dialup.begin(), dialup.end(), [&](const auto& q) { return q.to_string() == p->to_string(); }))
      dialup.push_back(*p);
  }
  if (!name) return usage("host add needs HOST");
  for (const auto& p : dialup)
    if (p.length == 0)
      std::cerr << "sdps: warning: " << p.to_string()
                << " is every address: the dialup password will work from anywhere\n";

  hostdb::host_record record;
  record.name = *name;
  record.dialup = dialup;
  if (!hostdb::edit(s.hosts, [&](hostdb::database& db) { return db.add(record); }))
    return fail(EX_DATAERR, "host " + *name + " already exists (see `sdps host list`)");
  std::cout << "added host " << *name << " (" << full_name(s, *name) << "), dialup addresses: "
            << prefixes_text(record) << "\n"
            << "set its passwords with: sdps -c " << s.config_file.string() << " host passwd " << *name
            << " --pop3 (or --dialup)\n";
  return EX_OK;
}

int host_passwd(const site& s, const std::vector<std::string>& args) {
  std::optional<std::string> name;
  enum class which { none, dialup, pop3 } kind = which::none;
  for (const std::string& arg : args) {
    if (arg == "--dialup" || arg == "--pop3") {
      const which chosen = arg == "--dialup" ? which::dialup : which::pop3;
      if (kind != which::none && kind != chosen) return usage("host passwd takes --dialup or --pop3, not both");
      kind = chosen;
    } else if (!arg.empty() && arg[0] == '-') {
      return usage("host passwd: unknown option '" + printable(arg, 40) + "'");
    } else {
      if (name) return usage("host passwd takes one HOST");
      name = host_argument(s, arg);
      if (!name) return EX_DATAERR;
    }
  }
  if (!name) return usage("host passwd needs HOST");
  if (kind == which::none) return usage("host passwd needs --dialup or --pop3");
  const char* label = kind == which::dialup ? "dialup" : "POP3";

  const auto cost = hostdb::parse_cost(s.password_cost);
  if (!cost)
    return fail(EX_CONFIG, s.config_file.string() + ": 'password_cost' must be interactive, moderate, sensitive or min");
  // Ask for the password only for a host that exists (checked again under
  // the lock below).
  {
    const auto current = hostdb::load(s.hosts);
    if (!current.hosts.find(*name)) return fail(EX_NOUSER, "no host " + *name + " (add it with `sdps host add`)");
  }

  hostdb::secret password;
  if (const int status = read_password(password, std::string(label) + " password for " + *name + ": "))
    return status;
  // Hash before taking the lock: Argon2id is slow on purpose.
  const std::string hash = hostdb::hash_password(password.view(), *cost);
  password.clear();

  bool found = true;
  hostdb::edit(s.hosts, [&](hostdb::database& db) {
    hostdb::host_record* r = db.find(*name);
    if (!r) {
      found = false;
      return false;
    }
    (kind == which::dialup ? r->dialup_hash : r->pop3_hash) = hash;
    return true;
  });
  if (!found) return fail(EX_NOUSER, "no host " + *name + " (it was deleted meanwhile)");
  std::cout << label << " password of host " << *name << " set\n";
  if (kind == which::dialup) {
    const auto after = hostdb::load(s.hosts);
    const auto* r = after.hosts.find(*name);
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
int host_dialup(const site& s, const std::vector<std::string>& args) {
  std::optional<std::string> name;
  bool clear = false;
  std::vector<hostdb::prefix> adds, removes;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    std::string option = arg, value;
    const auto equals = arg.find('=');
    if (arg.rfind("--", 0) == 0 && equals != std::string::npos) {
      option = arg.substr(0, equals);
      value = arg.substr(equals + 1);
    }
    if (option == "--clear") {
      if (option != arg) return usage("--clear takes no value");
      clear = true;
    } else if (option == "--add" || option == "--remove") {
      if (option == arg) {
        if (i + 1 == args.size()) return usage(option + " needs ADDR or ADDR/PREFIX");
        value = args[++i];
      }
      const auto p = hostdb::prefix::parse(value);
      if (!p)
        return fail(EX_DATAERR, quoted(value, 80) + " is not an IP address or prefix (ADDR or ADDR/LEN)");
      (option == "--add" ? adds : removes).push_back(*p);
    } else if (!arg.empty() && arg[0] == '-') {
      return usage("host dialup: unknown option '" + printable(arg, 40) + "'");
    } else {
      if (name) return usage("host dialup takes one HOST");
      name = host_argument(s, arg);
      if (!name) return EX_DATAERR;
    }
  }
  if (!name) return usage("host dialup needs HOST");
  const auto same = [](const hostdb::prefix& a, const hostdb::prefix& b) { return a.to_string() == b.to_string(); };

  if (!clear && adds.empty() && removes.empty()) {
    const auto current = hostdb::load(s.hosts);
    const auto* r = current.hosts.find(*name);
    if (!r) return fail(EX_NOUSER, "no host " + *name + " (add it with `sdps host add`)");
    for (const auto& p : r->dialup) std::cout << p.to_string() << "\n";
    return EX_OK;
  }

  enum class outcome { changed, unchanged, no_host, not_there } result = outcome::unchanged;
  std::string missing;
  hostdb::host_record after;
  hostdb::edit(s.hosts, [&](hostdb::database& db) {
    hostdb::host_record* r = db.find(*name);
    if (!r) {
      result = outcome::no_host;
      return false;
    }
    std::vector<hostdb::prefix> dialup = clear ? std::vector<hostdb::prefix>{} : r->dialup;
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
    if (p.length == 0)
      std::cerr << "sdps: warning: " << p.to_string()
                << " is every address: the dialup password will work from anywhere\n";
  if (after.dialup.empty() && !after.dialup_hash.empty())
    std::cerr << "sdps: warning: host " << *name
              << " has no dialup addresses left, so its dialup password is accepted from nowhere\n";
  return EX_OK;
}

int host_del(const site& s, const std::vector<std::string>& args) {
  if (args.size() != 1 || (!args[0].empty() && args[0][0] == '-')) return usage("host del takes one HOST");
  const auto name = host_argument(s, args[0]);
  if (!name) return EX_DATAERR;
  if (!hostdb::edit(s.hosts, [&](hostdb::database& db) { return db.remove(*name); }))
    return fail(EX_NOUSER, "no host " + *name);
  std::cout << "deleted host " << *name << "; mail already queued for it stays in the spools"
            << " (sdps spool list " << *name << " shows it; new mail for it is refused)\n";
  return EX_OK;
}

int host_list(const site& s, const std::vector<std::string>& args) {
  if (!args.empty()) return usage("host list takes no arguments");
  const auto current = hostdb::load(s.hosts);
  std::size_t width = 4;
  for (const auto& [name, r] : current.hosts.hosts()) width = std::max(width, name.size());
  std::size_t dialup_width = 6;
  for (const auto& [name, r] : current.hosts.hosts()) dialup_width = std::max(dialup_width, prefixes_text(r).size());
  for (const auto& [name, r] : current.hosts.hosts()) {
    std::string line = name;
    line.resize(width + 2, ' ');
    std::string dialup = prefixes_text(r);
    dialup.resize(dialup_width + 2, ' ');
    std::cout << line << dialup << passwords_text(r) << "\n";
  }
  for (const auto& p : current.problems) std::cerr << "sdps: " << hostdb::describe(s.hosts, p) << " (skipped)\n";
  return current.problems.empty() ? EX_OK : EX_DATAERR;
}

}  // namespace

int host_main(const site& s, const std::vector<std::string>& args) {
  if (args.empty()) return usage("host needs a subcommand");
  const std::string& command = args[0];
  const std::vector<std::string> rest(args.begin() + 1, args.end());
  try {
    if (command == "add") return host_add(s, rest);
    if (command == "passwd") return host_passwd(s, rest);
    if (command == "dialup") return host_dialup(s, rest);
    if (command == "del") return host_del(s, rest);
    if (command == "list") return host_list(s, rest);
    if (command == "-h" || command == "--help") {
      std::cout << host_usage;
      return EX_OK;
    }
    return usage("unknown host subcommand '" + printable(command, 40) + "'");
  } catch (const hostdb::malformed_file& e) {
    return fail(EX_CONFIG, e.what());
  } catch (const hostdb::busy& e) {
    return fail(EX_TEMPFAIL, e.what());
  } catch (const std::system_error& e) {  // filesystem_error too
    return fail(EX_IOERR, e.what());
  }
}

}  // namespace sdps::admin
