// sdps expire: removes old messages from the spool. An unread message is
// bounced to its sender first (RFC 3464 DSN over SMTP to a relay); a read
// one is removed silently, as the spec allows. docs/smtp.md has the story.

#include "admin.hpp"

#include "base/duration.hpp"
#include "base/endpoint.hpp"
#include "smtp/client.hpp"
#include "smtp/dsn.hpp"
#include "hostdb/hostdb.hpp"
#include "queue.hpp"
#include "spoolstore/store.hpp"

#include <sysexits.h>

#include <algorithm>
#include <iostream>

namespace sdps::admin {

namespace {

int fail(int status, const std::string& message) {
  std::cerr << "sdps: expire: " << message << "\n";
  return status;
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

/// One run of expire: the plan, what became of it, and the SMTP session
/// that carries out its bounces.
struct expiry {
  expiry(const base::endpoint& relay, smtp::client_options options, std::string reporting_mta)
      : relay(relay), options(std::move(options)), reporting_mta(std::move(reporting_mta)) {}

  /// One line per message on stdout: HOST UIDL SIZE WHAT <SENDER>|- [DETAIL].
  void report(const planned& p, const char* what, const std::string& detail) const {
    std::cout << p.host << '\t' << p.message.name.uidl << '\t' << p.message.name.size << '\t' << what << '\t';
    if (p.bounce)
      std::cout << '<' << printable(p.from, 200) << '>';
    else
      std::cout << '-';
    if (!detail.empty()) std::cout << '\t' << detail;
    std::cout << std::endl;
  }

  void summary() const {
    std::cout << "expired with bounce: " << bounced << ", expired silently: " << silent << ", kept: " << kept
              << ", failed: " << failed << ", double bounces: " << double_bounces << std::endl;
  }

  /// Bounces and removes what the plan says, on the run's event loop; the
  /// exit status.
  awaitable<int> carry_out() {
    const bool any_bounce = std::any_of(plan.begin(), plan.end(), [](const planned& p) { return p.bounce; });
    if (any_bounce) {
      const executor ex = co_await asio::this_coro::executor;
      std::string unreachable;
      try {
        client = co_await smtp::client::open(ex, relay, options);
      } catch (const std::exception& e) {
        unreachable = e.what();
      }
      if (!client) {
        // Nothing at all is removed: a run that cannot bounce waits for
        // the relay rather than removing only the read half.
        log.error("cannot reach the relay ", relay.to_string(), ": ", unreachable, "; nothing was removed");
        kept += plan.size();
        co_return EX_TEMPFAIL;
      }
    }
    for (const planned& p : plan) {
      spoolstore::departure why = spoolstore::departure::expired;
      if (p.bounce) {
        if (!client) {  // the relay went away earlier in this run
          ++kept;
          continue;
        }
        const auto outcome = co_await bounce(p);
        if (outcome == bounce_outcome::kept) continue;
        if (outcome == bounce_outcome::sent) why = spoolstore::departure::returned;
      }
      std::string error, note;
      if (!spoolstore::depart(p.message.file, why, error, note)) {
        log.error(p.message.name.uidl, ": ", error);
        ++failed;
        status = EX_IOERR;
        continue;
      }
      if (!note.empty()) log.warning(p.message.name.uidl, ": ", note);
      if (why == spoolstore::departure::returned) {
        ++bounced;
      } else if (!p.bounce) {
        report(p, "removed", "");
        ++silent;
      }
    }
    if (client) co_await client->quit();
    client.reset();
    co_return status;
  }

  const base::endpoint relay;
  const smtp::client_options options;
  const std::string reporting_mta;
  command_logger log{"expire"};
  const std::int64_t now = spoolstore::now_us();
  std::vector<planned> plan;
  int status = EX_OK;
  std::size_t kept = 0, failed = 0, bounced = 0, silent = 0, double_bounces = 0;

 private:
  enum class bounce_outcome {
    sent,     ///< the relay took it: the message goes
    refused,  ///< refused for good (5xx): the message goes, without a bounce (a double bounce)
    kept,     ///< not sent now (4xx, the relay gone, the file unreadable or fetched): the message stays
  };

  /// Sends the bounce for `p` and reports what became of it.
  awaitable<bounce_outcome> bounce(const planned& p) {
    std::unique_ptr<spoolstore::message_file> file;
    try {
      file = spoolstore::message_file::open(p.message.file);
    } catch (const std::exception& e) {
      log.error(e.what());
      ++failed;
      status = EX_TEMPFAIL;
      co_return bounce_outcome::kept;
    }
    if (!file) co_return bounce_outcome::kept;  // removed by POP3 meanwhile
    smtp::dsn_details d;
    d.reporting_mta = reporting_mta;
    d.sender = p.from;
    d.recipient = p.to;
    d.arrival = p.arrival_us / 1'000'000;
    d.now = now / 1'000'000;
    d.original_header = original_header(*file);
    d.unique = random_hex(12);
    const std::string text = smtp::dsn_message(d);
    std::size_t offset = 0;
    const smtp::message_reader read = [&text, &offset](std::span<char> b) {
      const std::size_t n = text.copy(b.data(), b.size(), offset);
      offset += n;
      return n;
    };
    const std::string null_sender;
    const std::uint64_t size = text.size();
    smtp::delivery_result result;
    std::string lost;
    try {
      result = co_await client->send(null_sender, p.from, size, read);
    } catch (const smtp::network_error& e) {
      lost = e.what();
    }
    if (!lost.empty()) {
      log.error("relay ", relay.to_string(), ": ", lost, "; the rest is kept");
      report(p, "kept", lost);
      ++failed;
      status = EX_TEMPFAIL;
      client.reset();
      co_return bounce_outcome::kept;
    }
    switch (result.result) {
      case smtp::delivery_result::outcome::delivered:
        report(p, "bounced", result.last.summary());
        co_return bounce_outcome::sent;
      case smtp::delivery_result::outcome::failed:
        // What MTAs do with a bounce nobody takes: log it and drop it. Kept,
        // it would fail again at every run, and keep the run's status 75.
        report(p, "double-bounce", result.last.summary());
        log.warning(p.message.name.uidl, ": the relay refused the bounce to <", printable(p.from, 100),
                    "> for good (", result.last.summary(), "): a double bounce, removed without one");
        ++double_bounces;
        co_return bounce_outcome::refused;
      case smtp::delivery_result::outcome::deferred:
        break;
    }
    report(p, "kept", result.last.summary());
    log.warning(p.message.name.uidl, ": the relay deferred the bounce to <", printable(p.from, 100), ">: ",
                result.last.summary());
    ++failed;
    status = EX_TEMPFAIL;
    co_return bounce_outcome::kept;
  }

  std::unique_ptr<smtp::client> client;
};

}  // namespace

int expire_main(tool& t, const std::vector<std::string>& words) {
  arguments args("expire",
                 "--older-than DUR [--read-older-than DUR] [--relay ADDR:PORT] [--helo NAME] [--timeout DUR]\n"
                 "                           [--dry-run] [HOST...]",
                 "Removes messages older than DUR (30d, 12h): unread ones after a bounce to their sender\n"
                 "is accepted by the relay, read ones (and bounces) silently; every host without HOST.\n"
                 "Prints one line per expired message and a summary line.\n"
                 "Exit status: 0; 75 some bounce not accepted, the relay down or a host busy; 67 unknown\n"
                 "host; 74 a removal failed; 64 usage.\n");
  std::string older_text, read_older_text, relay_text = "127.0.0.1:25", helo, timeout_text;
  bool dry_run = false;
  args.options()("older-than", po::value(&older_text)->value_name("DUR"), "expire messages older than this (required)")(
      "read-older-than", po::value(&read_older_text)->value_name("DUR"),
      "expire read messages older than this (default: --older-than)")(
      "relay", po::value(&relay_text)->value_name("ADDR:PORT"),
      "the SMTP relay bounces go to (default 127.0.0.1:25; a numeric address)")(
      "helo", po::value(&helo)->value_name("NAME"), "the name to say EHLO with (default: the config's server_name)")(
      "timeout", po::value(&timeout_text)->value_name("DUR"), "the limit for connecting and for each reply")(
      "dry-run,n", po::bool_switch(&dry_run), "print what would be done; remove and send nothing");
  std::vector<std::string> host_args;
  args.operands("HOST", host_args);
  if (const auto status = args.parse(words)) return *status;

  const auto duration = [&args](const char* option, const std::string& text) {
    return args.given(option) ? base::parse_duration(text, base::zero_duration::refused) : std::nullopt;
  };
  const std::string expected = base::duration_expected(base::zero_duration::refused);
  const std::optional<std::chrono::milliseconds> older = duration("older-than", older_text);
  if (!args.given("older-than")) return args.usage_error("--older-than is required");
  if (!older) return args.usage_error("--older-than " + expected);
  std::optional<std::chrono::milliseconds> read_older = duration("read-older-than", read_older_text);
  if (args.given("read-older-than") && !read_older) return args.usage_error("--read-older-than " + expected);
  if (!read_older) read_older = older;
  smtp::client_options options;
  if (args.given("helo") && (helo.empty() || helo.find_first_of(" \r\n\t") != std::string::npos))
    return args.usage_error("--helo needs a name");
  if (args.given("timeout")) {
    const auto limit = duration("timeout", timeout_text);
    if (!limit) return args.usage_error("--timeout " + expected);
    options.connect_timeout = options.command_timeout = options.data_timeout = *limit;
  }
  base::endpoint relay;
  try {
    relay = base::parse_endpoint(relay_text, {base::endpoint_host::address, false, false, 25});
  } catch (const std::invalid_argument& e) {
    return args.usage_error(std::string("--relay ") + e.what());
  }

  const site& s = t.site(tool::writes::punts);
  options.helo = args.given("helo") ? helo : s.server_name;
  std::vector<std::string> hosts;
  for (const auto& h : host_args) {
    const std::string host = hostdb::normalise_host(h, s.customer_domain);
    if (host.empty() || !spoolstore::valid_host(host))
      return fail(EX_NOUSER, quoted(h, 80) + " is not a customer host name");
    // As flush and spool list: a host neither in the host database nor in
    // any punt is a mistake (a typo in a cron line), not an empty queue. A
    // deleted host whose mail is still queued expires as any other.
    const hostdb::lookup_result found = host_finder_of(s).find(host);
    if (found.status == hostdb::lookup_status::unavailable)
      return fail(EX_TEMPFAIL, "cannot read the host database: " + found.detail);
    bool known = found.status != hostdb::lookup_status::unknown;
    std::error_code ec;
    for (const auto& entry : s.punts)
      known = known || std::filesystem::exists(spoolstore::host_dir(entry.second, host), ec);
    if (!known) return fail(EX_NOUSER, "no such customer host '" + host + "'");
    hosts.push_back(host);
  }
  if (host_args.empty()) hosts = spooled_hosts(s);

  // The loop first: the run's SMTP session, bound to it, goes before it.
  asio::io_context loop;
  expiry run(relay, options, s.server_name);
  const std::int64_t limit = run.now - older->count() * 1000;
  const std::int64_t read_limit = run.now - read_older->count() * 1000;

  // Expiry and flush of one host exclude each other: a message being
  // delivered to the customer must not be bounced at the same time.
  std::vector<std::unique_ptr<flush_lock>> locks;
  for (const auto& host : hosts) {
    auto lock = std::make_unique<flush_lock>();
    std::string error;
    if (lock->acquire(s, host, error) != flush_lock::outcome::acquired) {
      run.log.warning(error, "; '", host, "' is skipped this time");
      run.status = EX_TEMPFAIL;
      continue;
    }
    locks.push_back(std::move(lock));
    for (const auto& entry : s.punts) spoolstore::sweep_departures(spoolstore::host_dir(entry.second, host));
    bool complete = true;
    for (auto& m : host_queue(s, host, run.log, complete)) {
      std::unique_ptr<spoolstore::message_file> file;
      try {
        file = spoolstore::message_file::open(m.file);
      } catch (const std::exception& e) {
        run.log.error(e.what(), " (left alone)");
        ++run.failed;
        run.status = EX_TEMPFAIL;
        continue;
      }
      if (!file) continue;
      const bool read = file->read_flag();
      const std::int64_t arrival = m.name.arrival;
      if (arrival >= (read ? read_limit : limit)) {
        ++run.kept;
        continue;
      }
      planned p{host, std::move(m), !read && !file->envelope().from.empty(), file->envelope().from,
                file->envelope().to, arrival};
      run.plan.push_back(std::move(p));
    }
    if (!complete) run.status = EX_TEMPFAIL;
  }

  if (dry_run) {
    for (const auto& p : run.plan) {
      run.report(p, p.bounce ? "would-bounce" : "would-remove", "");
      ++(p.bounce ? run.bounced : run.silent);
    }
  } else {
    run.status = run_on_loop(loop, run.carry_out());
  }
  run.summary();
  return run.status;
}

}  // namespace sdps::admin
