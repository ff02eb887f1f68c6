// sdps expire: removes old messages from the spool. An unread message is
// bounced to its sender first (RFC 3464 DSN over SMTP to a relay); a read
// one is removed silently, as the spec allows. docs/smtp.md has the story.

#include "admin.hpp"

#include "smtp/client.hpp"
#include "smtp/dsn.hpp"
#include "hostdb/hostdb.hpp"
#include "queue.hpp"
#include "spoolstore/store.hpp"

#include <sysexits.h>

#include <iostream>

namespace sdps::admin {

namespace {

const char* expire_usage =
    "usage: sdps -c FILE expire --older-than DUR [--read-older-than DUR] [--relay ADDR:PORT]\n"
    "                           [--helo NAME] [--timeout DUR] [--dry-run] [HOST...]\n"
    "Removes messages older than DUR (30d, 12h): unread ones after a bounce to their sender\n"
    "is accepted by the relay (default 127.0.0.1:25), read ones (and bounces) silently.\n"
    "Prints one line per expired message and a summary line.\n"
    "Exit status: 0, 75 some bounce not accepted or a host busy, 64 usage, 74 removal failed.\n";

int fail(int status, const std::string& message) {
  std::cerr << "sdps: expire: " << message << "\n";
  return status;
}

int usage(const std::string& message) {
  std::cerr << "sdps: expire: " << message << "\n" << expire_usage;
  return EX_USAGE;
}

/// Most octets of the original's header quoted in a bounce.
constexpr std::size_t max_quoted_header = 64 * 1024;

struct planned {
  std::string host;
  queued message;
  bool bounce = false;  // else removed silently
  std::string from, to;
  std::int64_t arrival_us = 0;
};

std::string original_header(spoolstore::message_file& file) {
  std::string header;
  file.rewind(std::uint64_t{0});  // TOP n 0: Return-Path, header, blank line
  char buffer[8192];
  while (header.size() < max_quoted_header) {
    const std::size_t n = file.read(std::span<char>(buffer, sizeof buffer));
    if (n == 0) break;
    header.append(buffer, n);
  }
  if (header.size() > max_quoted_header) {
    header.resize(max_quoted_header);
    header.resize(header.rfind("\r\n") == std::string::npos ? 0 : header.rfind("\r\n") + 2);
  }
  while (header.size() >= 4 && header.compare(header.size() - 4, 4, "\r\n\r\n") == 0) header.resize(header.size() - 2);
  return header;
}

}  // namespace

int expire_main(const site& s, const std::vector<std::string>& args) {
  std::optional<std::chrono::milliseconds> older, read_older;
  std::string relay_text = "127.0.0.1:25";
  bool dry_run = false;
  smtp::client_options options;
  options.helo = s.server_name;
  std::vector<std::string> host_args;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    const bool has_value = i + 1 < args.size();
    if (a == "-h" || a == "--help") {
      std::cout << expire_usage;
      return EX_OK;
    } else if (a == "--older-than" || a == "--read-older-than") {
      const auto d = has_value ? parse_age(args[++i]) : std::nullopt;
      if (!d) return usage(a + " needs a duration (30d, 12h, 90m)");
      (a == "--older-than" ? older : read_older) = d;
    } else if (a == "--relay") {
      if (!has_value) return usage("--relay needs ADDR:PORT");
      relay_text = args[++i];
    } else if (a == "--helo") {
      if (!has_value || args[i + 1].empty() || args[i + 1].find_first_of(" \r\n\t") != std::string::npos)
        return usage("--helo needs a name");
      options.helo = args[++i];
    } else if (a == "--timeout") {
      const auto t = has_value ? parse_age(args[++i]) : std::nullopt;
      if (!t) return usage("--timeout needs a duration (30s, 5m)");
      options.connect_timeout = options.command_timeout = options.data_timeout = *t;
    } else if (a == "--dry-run" || a == "-n") {
      dry_run = true;
    } else if (!a.empty() && a[0] == '-') {
      return usage("unknown option '" + printable(a, 40) + "'");
    } else {
      host_args.push_back(a);
    }
  }
  if (!older) return usage("--older-than is required");
  if (!read_older) read_older = older;
  smtp::endpoint relay;
  try {
    relay = smtp::endpoint::parse(relay_text, 25);
  } catch (const std::invalid_argument& e) {
    return usage(std::string("--relay ") + e.what());
  }

  std::vector<std::string> hosts;
  for (const auto& h : host_args) {
    const std::string host = hostdb::normalise_host(h, s.customer_domain);
    if (host.empty() || !spoolstore::valid_host(host))
      return fail(EX_DATAERR, "'" + printable(h, 80) + "' is not a host name");
    hosts.push_back(host);
  }
  if (host_args.empty()) hosts = spooled_hosts(s);

  command_logger log("expire");
  const std::int64_t now = spoolstore::now_us();
  const std::int64_t limit = now - older->count() * 1000;
  const std::int64_t read_limit = now - read_older->count() * 1000;
  int status = EX_OK;
  std::size_t kept = 0, failed = 0, bounced = 0, silent = 0;

  // Expiry and flush of one host exclude each other: a message being
  // delivered to the customer must not be bounced at the same time.
  std::vector<std::unique_ptr<flush_lock>> locks;
  std::vector<planned> plan;
  for (const auto& host : hosts) {
    auto lock = std::make_unique<flush_lock>();
    std::string error;
    if (lock->acquire(s, host, error) != flush_lock::outcome::acquired) {
      log.warning(error, "; '", host, "' is skipped this time");
      status = EX_TEMPFAIL;
      continue;
    }
    locks.push_back(std::move(lock));
    bool complete = true;
    for (auto& m : host_queue(s, host, log, complete)) {
      std::unique_ptr<spoolstore::message_file> file;
      try {
        file = spoolstore::message_file::open(m.file);
      } catch (const std::exception& e) {
        log.error(e.what(), " (left alone)");
        ++failed;
        status = EX_TEMPFAIL;
        continue;
      }
      if (!file) continue;
      const bool read = file->read_flag();
      const std::int64_t arrival = m.name.arrival;
      if (arrival >= (read ? read_limit : limit)) {
        ++kept;
        continue;
      }
      planned p{host, std::move(m), !read && !file->envelope().from.empty(), file->envelope().from,
                file->envelope().to, arrival};
      plan.push_back(std::move(p));
    }
    if (!complete) status = EX_TEMPFAIL;
  }

  auto report = [](const planned& p, const char* what, const std::string& detail) {
    std::cout << p.host << '\t' << p.message.name.uidl << '\t' << p.message.name.size << '\t' << what << '\t'
              << (p.bounce ? "<" + printable(p.from, 200) + ">" : std::string("-"))
              << (detail.empty() ? "" : "\t" + detail) << std::endl;
  };

  const bool any_bounce = std::any_of(plan.begin(), plan.end(), [](const planned& p) { return p.bounce; });
  std::unique_ptr<smtp::client> client;
  if (dry_run) {
    for (const auto& p : plan) {
      report(p, p.bounce ? "would-bounce" : "would-remove", "");
      ++(p.bounce ? bounced : silent);
    }
  } else {
    if (any_bounce) {
      try {
        client = std::make_unique<smtp::client>(relay, options);
      } catch (const std::exception& e) {
        // Nothing at all is removed: a run that cannot bounce waits for
        // the relay rather than removing only the read half.
        log.error("cannot reach the relay ", relay.to_string(), ": ", e.what(), "; nothing was removed");
        std::cout << "expired with bounce: 0, expired silently: 0, kept: " << kept + plan.size()
                  << ", failed: " << failed << std::endl;
        return EX_TEMPFAIL;
      }
    }
    for (std::size_t i = 0; i < plan.size(); ++i) {
      const auto& p = plan[i];
      if (p.bounce) {
        if (!client) {  // the relay went away earlier in this run
          ++kept;
          continue;
        }
        std::unique_ptr<spoolstore::message_file> file;
        try {
          file = spoolstore::message_file::open(p.message.file);
        } catch (const std::exception& e) {
          log.error(e.what());
          ++failed;
          status = EX_TEMPFAIL;
          continue;
        }
        if (!file) continue;  // fetched by POP3 meanwhile
        smtp::dsn_details d;
        d.reporting_mta = s.server_name;
        d.sender = p.from;
        d.recipient = p.to;
        d.arrival = p.arrival_us / 1'000'000;
        d.now = now / 1'000'000;
        d.original_header = original_header(*file);
        d.unique = random_hex(12);
        const std::string bounce = smtp::dsn_message(d);
        std::size_t offset = 0;
        smtp::delivery_result result;
        try {
          result = client->send("", p.from, bounce.size(), [&](std::span<char> b) {
            const std::size_t n = bounce.copy(b.data(), b.size(), offset);
            offset += n;
            return n;
          });
        } catch (const smtp::network_error& e) {
          log.error("relay ", relay.to_string(), ": ", e.what(), "; the rest is kept");
          report(p, "kept", e.what());
          ++failed;
          status = EX_TEMPFAIL;
          client.reset();
          continue;
        }
        if (result.result != smtp::delivery_result::outcome::delivered) {
          report(p, "kept", result.last.summary());
          log.warning(p.message.name.uidl, ": the relay refused the bounce to <", printable(p.from, 100), ">: ",
                      result.last.summary());
          ++failed;
          status = EX_TEMPFAIL;
          continue;
        }
        report(p, "bounced", result.last.summary());
      }
      std::string error;
      if (!spoolstore::remove_message(p.message.file, error)) {
        log.error(p.message.name.uidl, ": ", error);
        ++failed;
        status = EX_IOERR;
        continue;
      }
      if (p.bounce) {
        ++bounced;
      } else {
        report(p, "removed", "");
        ++silent;
      }
    }
    if (client) client->quit();
  }
  std::cout << "expired with bounce: " << bounced << ", expired silently: " << silent << ", kept: " << kept
            << ", failed: " << failed << std::endl;
  return status;
}

}  // namespace sdps::admin
