// sdps flush HOST: delivers a customer host's queue to it by SMTP when it
// dials in (the spec's "Interaction with SMTP"). docs/smtp.md describes
// the behaviour and exit statuses.

#include "admin.hpp"

#include "base/duration.hpp"
#include "base/endpoint.hpp"
#include "smtp/client.hpp"
#include "hostdb/hostdb.hpp"
#include "queue.hpp"
#include "spoolstore/store.hpp"

#include <sysexits.h>

#include <charconv>
#include <iostream>

namespace sdps::admin {

namespace {

int fail(int status, const std::string& message) {
  std::cerr << "sdps: flush: " << message << "\n";
  return status;
}

/// The host's first dialup address when it is a single address.
std::optional<base::endpoint> dialup_target(const hostdb::lookup_result& found, const std::string& host,
                                            std::string& error) {
  if (found.status == hostdb::lookup_status::malformed) {
    error = found.detail + "; give --to ADDR:PORT";
    return std::nullopt;
  }
  const hostdb::host_record* record = &found.record;
  if (record->dialup.empty()) {
    error = "host '" + host + "' has no dialup address; give --to ADDR:PORT";
    return std::nullopt;
  }
  const auto& p = record->dialup.front();
  if (!p.single_address()) {
    error = "host '" + host + "' has a dialup range (" + p.to_string() + "), not one address; give --to ADDR:PORT";
    return std::nullopt;
  }
  return base::endpoint{p.network().to_string(), 25};
}

const char* word(smtp::delivery_result::outcome o) {
  switch (o) {
    case smtp::delivery_result::outcome::delivered: return "delivered";
    case smtp::delivery_result::outcome::deferred: return "deferred";
    case smtp::delivery_result::outcome::failed: return "failed";
  }
  return "?";
}

/// One SMTP session to `target` delivering `queue`, oldest first: a line
/// per message on stdout, each delivered message removed (its departure
/// recorded first). The exit status. On the run's event loop; every
/// parameter outlives it (flush_main waits for it).
awaitable<int> deliver_queue(const std::vector<queued>& queue, const base::endpoint& target,
                             const smtp::client_options& options, std::uint64_t max_messages, bool complete,
                             command_logger& log) {
  const executor ex = co_await asio::this_coro::executor;
  std::unique_ptr<smtp::client> client;
  int refusal = EX_OK;
  std::string why;
  try {
    client = co_await smtp::client::open(ex, target, options);
  } catch (const smtp::refused& e) {
    refusal = e.answer().transient() ? EX_TEMPFAIL : EX_UNAVAILABLE;
    why = target.to_string() + " " + e.what() + " (nothing was sent)";
  } catch (const smtp::network_error& e) {
    refusal = EX_UNAVAILABLE;
    why = "cannot reach " + target.to_string() + ": " + e.what() + " (nothing was sent)";
  }
  if (!client) co_return fail(refusal, why);

  int status = complete ? EX_OK : EX_TEMPFAIL;
  std::uint64_t sent = 0;
  for (const queued& m : queue) {
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
    const smtp::message_reader read = [&reader](std::span<char> b) { return reader(b); };
    const std::string& from = file->envelope().from;
    const std::string& to = file->envelope().to;
    const std::uint64_t size = reader.size();
    smtp::delivery_result result;
    bool lost = false;
    std::string problem;
    try {
      result = co_await client->send(from, to, size, read);
    } catch (const smtp::network_error& e) {
      std::cout << m.name.uidl << '\t' << m.name.size << "\tdeferred\t" << printable(e.what(), 200) << std::endl;
      log.warning(m.name.uidl, ": ", e.what(), "; the rest stays queued");
      lost = true;
    } catch (const std::exception& e) {  // the file could not be read
      problem = e.what();
    }
    if (lost) co_return EX_TEMPFAIL;
    if (!problem.empty()) {
      log.error(m.name.uidl, ": ", problem, "; the rest stays queued");
      co_await client->quit();
      co_return EX_TEMPFAIL;
    }
    std::cout << m.name.uidl << '\t' << m.name.size << '\t' << word(result.result) << '\t' << result.last.summary()
              << std::endl;
    if (result.result == smtp::delivery_result::outcome::delivered) {
      // Removed by name, and only now: a POP3 session that listed it gets
      // the dummy notice from here on, saying it was delivered by SMTP.
      std::string error, note;
      if (!spoolstore::depart(m.file, spoolstore::departure::delivered, error, note)) {
        log.error(m.name.uidl, " was delivered but cannot be removed: ", error, " (it would be sent again)");
        status = EX_IOERR;
      }
      if (!note.empty()) log.warning(m.name.uidl, ": ", note);
    } else {
      if (result.result == smtp::delivery_result::outcome::failed)
        log.warning(m.name.uidl, " <", printable(from, 100), "> -> <", printable(to, 100), ">: refused at ",
                    result.stage, ": ", result.last.summary(), " (kept for expiry to bounce)");
      if (status == EX_OK) status = EX_TEMPFAIL;
    }
  }
  co_await client->quit();
  co_return status;
}

}  // namespace

int flush_main(tool& t, const std::vector<std::string>& words) {
  arguments args("flush", "HOST [--to ADDR:PORT] [--helo NAME] [--max-messages N] [--timeout DUR]",
                 "Delivers HOST's queued messages by SMTP, oldest first; without --to, to the host's\n"
                 "dialup address, port 25. Prints one line per message: UIDL, size, result, reply.\n"
                 "Exit status: 0 all delivered, 75 some left queued (deferred or refused), 69 target\n"
                 "unreachable, 67 unknown host, 64 usage, 74 a delivered message could not be removed.\n");
  std::string to_text, helo, max_text, timeout_text;
  args.options()("to", po::value(&to_text)->value_name("ADDR:PORT"),
                 "the SMTP server to deliver to (a numeric address; port 25 if left out)")(
      "helo", po::value(&helo)->value_name("NAME"), "the name to say EHLO with (default: the config's server_name)")(
      "max-messages", po::value(&max_text)->value_name("N"), "stop after N messages")(
      "timeout", po::value(&timeout_text)->value_name("DUR"),
      "the limit for connecting and for each reply (default: 30s to connect, 5m a reply, 10m after the data)");
  std::string host_arg;
  args.operand("HOST", host_arg);
  if (const auto status = args.parse(words)) return *status;

  smtp::client_options options;
  std::uint64_t max_messages = UINT64_MAX;
  if (args.given("helo")) {
    if (helo.empty() || helo.find_first_of(" \r\n\t") != std::string::npos)
      return args.usage_error("--helo needs a name");
    options.helo = helo;
  }
  if (args.given("max-messages")) {
    std::uint64_t n = 0;
    if (std::from_chars(max_text.data(), max_text.data() + max_text.size(), n).ec != std::errc() || n == 0 ||
        std::to_string(n) != max_text)
      return args.usage_error("--max-messages needs a positive number");
    max_messages = n;
  }
  if (args.given("timeout")) {
    const auto limit = base::parse_duration(timeout_text, base::zero_duration::refused);
    if (!limit)
      return args.usage_error(std::string("--timeout ").append(base::duration_expected(base::zero_duration::refused)));
    options.connect_timeout = options.command_timeout = options.data_timeout = *limit;
  }
  std::optional<base::endpoint> to;
  if (args.given("to")) {
    try {
      // A literal address: no DNS lookup in a dial-in hook.
      to = base::parse_endpoint(to_text, {base::endpoint_host::address, false, false, 25});
    } catch (const std::invalid_argument& e) {
      return args.usage_error(std::string("--to ") + e.what());
    }
  }

  const site& s = t.site(tool::writes::punts);
  if (!args.given("helo")) options.helo = s.server_name;
  const std::string host = hostdb::normalise_host(host_arg, s.customer_domain);
  if (host.empty() || !spoolstore::valid_host(host))
    return fail(EX_NOUSER, quoted(host_arg, 80) + " is not a customer host name");
  const hostdb::lookup_result found = host_finder_of(s).find(host);
  if (found.status == hostdb::lookup_status::unknown) return fail(EX_NOUSER, "no such customer host '" + host + "'");
  if (found.status == hostdb::lookup_status::unavailable)
    return fail(EX_TEMPFAIL, "cannot read the host database: " + found.detail);

  base::endpoint target;
  if (to) {
    target = *to;
  } else {
    std::string error;
    const auto e = dialup_target(found, host, error);
    if (!e) return fail(EX_UNAVAILABLE, error);
    target = *e;
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

  asio::io_context loop;
  const int status = run_on_loop(loop, deliver_queue(queue, target, options, max_messages, complete, log));
  for (const auto& entry : s.punts) spoolstore::sweep_departures(spoolstore::host_dir(entry.second, host));
  return status;
}

}  // namespace sdps::admin
