// sdps flush HOST: delivers a customer host's queue to it by SMTP when it
// dials in (the spec's "Interaction with SMTP"). docs/smtp.md describes
// the behaviour and exit statuses.

#include "admin.hpp"

#include "smtp/client.hpp"
#include "hostdb/hostdb.hpp"
#include "queue.hpp"
#include "spoolstore/store.hpp"

#include <sysexits.h>

#include <charconv>
#include <iostream>

namespace sdps::admin {

namespace {

const char* flush_usage =
    "usage: sdps -c FILE flush HOST [--to ADDR:PORT] [--helo NAME] [--max-messages N] [--timeout DUR]\n"
    "Delivers HOST's queued messages by SMTP, oldest first; without --to, to the host's\n"
    "dialup address, port 25. Prints one line per message: UIDL, size, result, reply.\n"
    "Exit status: 0 all delivered, 75 some left queued (deferred or refused), 69 target\n"
    "unreachable, 67 unknown host, 64 usage, 74 a delivered message could not be removed.\n";

int fail(int status, const std::string& message) {
  std::cerr << "sdps: flush: " << message << "\n";
  return status;
}

int usage(const std::string& message) {
  std::cerr << "sdps: flush: " << message << "\n" << flush_usage;
  return EX_USAGE;
}

/// The host's first dialup address when it is a single address.
std::optional<smtp::endpoint> dialup_target(const site& s, const std::string& host, std::string& error) {
  const auto db = hostdb::load(s.hosts);
  const auto* record = db.hosts.find(host);
  if (!record || record->dialup.empty()) {
    error = "host '" + host + "' has no dialup address; give --to ADDR:PORT";
    return std::nullopt;
  }
  const auto& p = record->dialup.front();
  if (p.length != (p.network.is_v4() ? 32u : 128u)) {
    error = "host '" + host + "' has a dialup range (" + p.to_string() + "), not one address; give --to ADDR:PORT";
    return std::nullopt;
  }
  smtp::endpoint e;
  e.address = p.network.to_string();
  e.port = 25;
  return e;
}

const char* word(smtp::delivery_result::outcome o) {
  switch (o) {
    case smtp::delivery_result::outcome::delivered: return "delivered";
    case smtp::delivery_result::outcome::deferred: return "deferred";
    case smtp::delivery_result::outcome::failed: return "failed";
  }
  return "?";
}

}  // namespace

int flush_main(const site& s, const std::vector<std::string>& args) {
  std::optional<std::string> host_arg, to_arg;
  smtp::client_options options;
  options.helo = s.server_name;
  std::uint64_t max_messages = UINT64_MAX;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    auto value = [&](const char* what) -> std::optional<std::string> {
      if (i + 1 >= args.size()) return std::nullopt;
      (void)what;
      return args[++i];
    };
    if (a == "-h" || a == "--help") {
      std::cout << flush_usage;
      return EX_OK;
    } else if (a == "--to") {
      if (!(to_arg = value("--to"))) return usage("--to needs ADDR:PORT");
    } else if (a == "--helo") {
      auto v = value("--helo");
      if (!v || v->empty() || v->find_first_of(" \r\n\t") != std::string::npos) return usage("--helo needs a name");
      options.helo = *v;
    } else if (a == "--max-messages") {
      auto v = value("--max-messages");
      std::uint64_t n = 0;
      if (!v || std::from_chars(v->data(), v->data() + v->size(), n).ec != std::errc() || n == 0 ||
          std::to_string(n) != *v)
        return usage("--max-messages needs a positive number");
      max_messages = n;
    } else if (a == "--timeout") {
      auto v = value("--timeout");
      const auto t = v ? parse_age(*v) : std::nullopt;
      if (!t) return usage("--timeout needs a duration (30s, 5m)");
      options.connect_timeout = options.command_timeout = options.data_timeout = *t;
    } else if (!a.empty() && a[0] == '-') {
      return usage("unknown option '" + printable(a, 40) + "'");
    } else if (host_arg) {
      return usage("one host only");
    } else {
      host_arg = a;
    }
  }
  if (!host_arg) return usage("no host");

  const std::string host = hostdb::normalise_host(*host_arg, s.customer_domain);
  if (host.empty() || !spoolstore::valid_host(host))
    return fail(EX_NOUSER, "'" + printable(*host_arg, 80) + "' is not a customer host name");
  try {
    if (!hostdb::host_exists(s.hosts, host)) return fail(EX_NOUSER, "no such customer host '" + host + "'");
  } catch (const std::exception& e) {
    return fail(EX_TEMPFAIL, "cannot read the host database: " + std::string(e.what()));
  }

  smtp::endpoint target;
  try {
    if (to_arg) {
      target = smtp::endpoint::parse(*to_arg, 25);
    } else {
      std::string error;
      const auto e = dialup_target(s, host, error);
      if (!e) return fail(EX_UNAVAILABLE, error);
      target = *e;
    }
  } catch (const std::invalid_argument& e) {
    return usage(std::string("--to ") + e.what());
  }

  flush_lock lock;
  std::string lock_error;
  switch (lock.acquire(s, host, lock_error)) {
    case flush_lock::outcome::acquired: break;
    case flush_lock::outcome::busy: return fail(EX_TEMPFAIL, lock_error);
    case flush_lock::outcome::failed: return fail(EX_TEMPFAIL, "cannot take the flush lock: " + lock_error);
  }

  command_logger log("flush");
  bool complete = true;
  const auto queue = host_queue(s, host, log, complete);
  if (queue.empty()) return complete ? EX_OK : EX_TEMPFAIL;

  std::unique_ptr<smtp::client> client;
  try {
    client = std::make_unique<smtp::client>(target, options);
  } catch (const smtp::refused& e) {
    return fail(e.answer().transient() ? EX_TEMPFAIL : EX_UNAVAILABLE,
                target.to_string() + " " + e.what() + " (nothing was sent)");
  } catch (const smtp::network_error& e) {
    return fail(EX_UNAVAILABLE, "cannot reach " + target.to_string() + ": " + e.what() + " (nothing was sent)");
  }

  int status = complete ? EX_OK : EX_TEMPFAIL;
  std::uint64_t sent = 0;
  for (const auto& m : queue) {
    if (sent == max_messages) {
      status = status == EX_OK ? EX_TEMPFAIL : status;
      break;
    }
    std::unique_ptr<spoolstore::message_file> file;
    try {
      file = spoolstore::message_file::open(m.file);
    } catch (const std::exception& e) {
      log.error(m.name.uidl, ": ", e.what(), " (left queued)");
      status = EX_TEMPFAIL;
      continue;
    }
    if (!file) continue;  // a POP3 client deleted it (DELE + QUIT) since the scan
    ++sent;
    stored_reader reader(*file);
    smtp::delivery_result result;
    try {
      result = client->send(file->envelope().from, file->envelope().to, reader.size(),
                            [&reader](std::span<char> b) { return reader(b); });
    } catch (const smtp::network_error& e) {
      std::cout << m.name.uidl << '\t' << m.name.size << "\tdeferred\t" << printable(e.what(), 200) << std::endl;
      log.warning(m.name.uidl, ": ", e.what(), "; the rest stays queued");
      return EX_TEMPFAIL;
    } catch (const std::exception& e) {  // the file could not be read
      log.error(m.name.uidl, ": ", e.what(), "; the rest stays queued");
      return EX_TEMPFAIL;
    }
    std::cout << m.name.uidl << '\t' << m.name.size << '\t' << word(result.result) << '\t' << result.last.summary()
              << std::endl;
    if (result.result == smtp::delivery_result::outcome::delivered) {
      // Removed by name, and only now: a POP3 session that listed it gets
      // the dummy message from here on.
      std::string error;
      if (!spoolstore::remove_message(m.file, error)) {
        log.error(m.name.uidl, " was delivered but cannot be removed: ", error, " (it would be sent again)");
        status = EX_IOERR;
      }
    } else {
      if (result.result == smtp::delivery_result::outcome::failed)
        log.warning(m.name.uidl, " <", printable(file->envelope().from, 100), "> -> <",
                    printable(file->envelope().to, 100), ">: refused at ", result.stage, ": ", result.last.summary(),
                    " (kept for expiry to bounce)");
      if (status == EX_OK) status = EX_TEMPFAIL;
    }
  }
  client->quit();
  return status;
}

}  // namespace sdps::admin
