// sdps who, sdps kick, sdps status: questions to a running sdpsd over its
// `control_socket:` (protocol: lib/control, docs/control.md). Each
// subcommand parses its arguments in one small function; the exchange
// with the server is one request and its reply, on Asio like the tool's
// other network code, bounded by a watchdog.

#include "admin.hpp"

#include "base/watchdog.hpp"
#include "control/protocol.hpp"

#include <sdps/asio.hpp>

#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/write.hpp>

#include <sysexits.h>

#include <cstdio>
#include <ctime>
#include <iostream>
#include <optional>

namespace sdps::admin {

namespace {

/// The exit status of `kick` when no session matched, and of `status`
/// when some punt is down (docs/operations.md).
constexpr int none_matched = 1, some_down = 1;
/// How long the server has to answer (a kick waits up to 5s for the
/// sessions it ended).
constexpr std::chrono::seconds answer_limit{30};

int fail(int status, const std::string& message) {
  std::cerr << "sdps: " << message << "\n";
  return status;
}

// -- the exchange -----------------------------------------------------------------

/// The server's reply to one request, or the exit status and message of a
/// failure to get one.
struct reply {
  int failure = EX_OK;
  std::string message;
  std::vector<control::record> records;  // between `ok` and `end`
};

using stream = asio::local::stream_protocol;

awaitable<void> talk(std::shared_ptr<stream::socket> socket, std::string path, std::string request, reply* out) {
  boost::system::error_code ec;
  co_await socket->async_connect(stream::endpoint(path), asio::redirect_error(asio::use_awaitable, ec));
  if (ec) {
    out->failure = ec == asio::error::access_denied ? EX_NOPERM : EX_UNAVAILABLE;
    out->message = std::string("cannot reach sdpsd at its control socket ").append(path).append(": ").append(ec.message());
    if (ec == asio::error::access_denied)
      out->message += " (the socket is mode 0660: run as its owner or a member of its group, or as root)";
    else
      out->message += " (is sdpsd running with this config?)";
    co_return;
  }
  co_await asio::async_write(*socket, asio::buffer(request), asio::redirect_error(asio::use_awaitable, ec));
  std::string buffer;
  bool first = true;
  while (!ec) {
    const std::size_t n = co_await asio::async_read_until(*socket, asio::dynamic_buffer(buffer, control::max_reply_line),
                                                          '\n', asio::redirect_error(asio::use_awaitable, ec));
    if (ec) break;
    const auto record = control::parse(std::string_view(buffer).substr(0, n - 1));
    buffer.erase(0, n);
    if (!record || (first && record->kind != "ok" && record->kind != "error")) {
      out->failure = EX_PROTOCOL;
      out->message = "sdpsd sent a reply this sdps cannot read (another version?)";
      co_return;
    }
    if (first && record->kind == "error") {
      const std::string* code = record->get("code");
      const std::string* detail = record->get("detail");
      const std::string c = code ? *code : "";
      if (c == control::code::bad_id || c == control::code::bad_host || c == control::code::bad_login)
        out->failure = EX_USAGE;
      else if (c == control::code::busy)
        out->failure = EX_TEMPFAIL;
      else
        out->failure = EX_SOFTWARE;
      out->message = std::string("sdpsd refused the request: ").append(detail ? *detail : c);
      co_return;
    }
    if (!first && record->kind == "end") co_return;
    if (!first) out->records.push_back(std::move(*record));
    first = false;
  }
  // Closed (or failed, or timed out) before `end`.
  out->failure = EX_UNAVAILABLE;
  out->message = std::string("sdpsd closed the control connection before its reply ended (").append(ec.message()).append(")");
}

/// Sends `request` to the server of `s` and reads its reply, within
/// answer_limit.
reply ask(const site& s, const control::request& request) {
  reply out;
  if (s.control_socket.empty()) {
    out.failure = EX_CONFIG;
    out.message = s.config_file.string() + " sets no 'control_socket:': sdpsd has no control socket to ask";
    return out;
  }
  asio::io_context loop(1);
  auto socket = std::make_shared<stream::socket>(loop);
  base::watchdog dog(loop.get_executor());
  bool late = false;
  const auto deadline = dog.add([socket, &late](base::watchdog::time_point) {
    late = true;
    boost::system::error_code ignored;
    socket->close(ignored);
  });
  dog.set_after(deadline, answer_limit);
  // The exchange over, the watchdog has nothing left to keep.
  auto done = [&dog](std::exception_ptr) { dog.stop(); };
  asio::co_spawn(loop, talk(socket, s.control_socket.string(), control::format(control::to_record(request)), &out),
                 std::move(done));
  loop.run();
  if (late) {
    out.failure = EX_UNAVAILABLE;
    out.message = "sdpsd did not answer on " + s.control_socket.string() + " within " +
                  std::to_string(answer_limit.count()) + "s";
  }
  return out;
}

// -- output ---------------------------------------------------------------------------

std::string iso_time(std::int64_t seconds) {
  const std::time_t t = static_cast<std::time_t>(seconds);
  std::tm utc{};
  ::gmtime_r(&t, &utc);
  char text[32];
  std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%SZ", &utc);
  return text;
}

std::string json_string(std::string_view text) {
  std::string out = "\"";
  for (const unsigned char c : text) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20 || c == 0x7f) {
          char escaped[8];
          std::snprintf(escaped, sizeof escaped, "\\u%04x", c);
          out += escaped;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  out += '"';
  return out;
}

std::string json_or_null(const std::optional<std::string>& text) { return text ? json_string(*text) : "null"; }

/// A field of a tab-separated line: tabs and line ends would break it.
std::string cell(std::string_view text) {
  std::string out = printable(text, 200);
  for (char& c : out)
    if (c == '\t') c = ' ';
  return out.empty() ? "-" : out;
}

std::string duration_text(std::uint64_t microseconds) {
  char text[32];
  if (microseconds < 10'000)
    std::snprintf(text, sizeof text, "%.1fms", static_cast<double>(microseconds) / 1000);
  else if (microseconds < 10'000'000)
    std::snprintf(text, sizeof text, "%.0fms", static_cast<double>(microseconds) / 1000);
  else
    std::snprintf(text, sizeof text, "%.1fs", static_cast<double>(microseconds) / 1e6);
  return text;
}

void print_sessions_text(const std::vector<control::session_row>& rows) {
  std::cout << "id\tlogin\thost\tuser\tclient\ttls\tstate\tsince\tsent\n";
  for (const auto& r : rows)
    std::cout << r.id << '\t' << cell(r.login.value_or("")) << '\t' << cell(r.host.value_or("")) << '\t'
              << cell(r.user.value_or("")) << '\t' << cell(r.client) << '\t' << (r.tls ? "yes" : "no") << '\t'
              << cell(r.state) << '\t' << iso_time(r.since) << '\t' << r.sent << '\n';
}

std::string session_json(const control::session_row& r) {
  // Appended piece by piece ("literal" + string: docs/toolchain.md).
  std::string out = "{\"id\":";
  out.append(std::to_string(r.id));
  out.append(",\"login\":").append(json_or_null(r.login));
  out.append(",\"host\":").append(json_or_null(r.host));
  out.append(",\"user\":").append(json_or_null(r.user));
  out.append(",\"client\":").append(json_string(r.client));
  out.append(",\"tls\":").append(r.tls ? "true" : "false");
  out.append(",\"state\":").append(json_string(r.state));
  out.append(",\"since\":").append(json_string(iso_time(r.since)));
  out.append(",\"sent\":").append(std::to_string(r.sent));
  return out.append("}");
}

template <typename T>
void print_json_array(const std::vector<T>& items, std::string (*one)(const T&)) {
  std::cout << "[";
  for (std::size_t i = 0; i < items.size(); ++i) std::cout << (i ? ",\n " : "\n ") << one(items[i]);
  std::cout << (items.empty() ? "]\n" : "\n]\n");
}

std::vector<control::session_row> sessions_of(const reply& r) {
  std::vector<control::session_row> out;
  for (const auto& record : r.records)
    if (auto row = control::read_session(record)) out.push_back(std::move(*row));
  return out;
}

}  // namespace

int who_main(tool& t, const std::vector<std::string>& words) {
  arguments args("who", "[--json]",
                 "The running sdpsd's sessions, asked over its control_socket:, one line each, fields separated\n"
                 "by tabs: ID LOGIN HOST USER CLIENT TLS STATE SINCE SENT ('-' for what a session not logged in\n"
                 "has not got). Exit 0; 69 when the server cannot be reached, 78 without control_socket:.\n");
  bool json = false;
  args.options()("json", po::bool_switch(&json), "a JSON array of objects, numbers as numbers");
  if (const auto status = args.parse(words)) return *status;
  control::request request;
  request.what = control::request::verb::who;
  const reply r = ask(t.server_site(), request);
  if (r.failure != EX_OK) return fail(r.failure, r.message);
  const auto rows = sessions_of(r);
  if (json)
    print_json_array(rows, &session_json);
  else
    print_sessions_text(rows);
  return EX_OK;
}

int kick_main(tool& t, const std::vector<std::string>& words) {
  arguments args("kick", "ID | --host HOST | --login LOGIN",
                 "Ends the sessions (without UPDATE: no deletion takes effect) and releases their locks.\n"
                 "Exit 0 if a session was ended, 1 if none matched, 69 if the server cannot be reached.\n");
  std::optional<std::string> id;
  std::string host, login;
  args.options()("host", po::value(&host)->value_name("HOST"), "every session of this customer host")(
      "login", po::value(&login)->value_name("LOGIN"), "every session of this login (user+host)");
  args.optional_operand("ID", id);
  if (const auto status = args.parse(words)) return *status;
  const int given = (id ? 1 : 0) + (args.given("host") ? 1 : 0) + (args.given("login") ? 1 : 0);
  if (given != 1) return args.usage_error("say which sessions: one of ID, --host HOST or --login LOGIN");
  using by = control::selector::by;
  control::request request;
  request.what = control::request::verb::kick;
  request.which = id ? control::selector{by::id, *id}
                  : args.given("host") ? control::selector{by::host, host}
                                       : control::selector{by::login, login};
  const reply r = ask(t.server_site(), request);
  if (r.failure != EX_OK) return fail(r.failure, r.message);
  const auto rows = sessions_of(r);
  if (rows.empty()) return fail(none_matched, "kick: no session matched");
  for (const auto& row : rows)
    std::cout << "session " << row.id << " (" << cell(row.login.value_or("not logged in")) << " from "
              << cell(row.client) << "): "
              << (row.gone.value_or(false) ? "ended" : "ending (it was still finishing a call)") << "\n";
  return EX_OK;
}

int status_main(tool& t, const std::vector<std::string>& words) {
  arguments args("status", "[--json]",
                 "Each punt as the server's background probe last found it, fields separated by tabs:\n"
                 "PUNT up|down LATENCY SESSIONS CHECKED DETAIL.\n"
                 "Exit 0 every punt up, 1 some down, 69 the server cannot be reached.\n");
  bool json = false;
  args.options()("json", po::bool_switch(&json), "one JSON object, numbers as numbers");
  if (const auto status = args.parse(words)) return *status;
  control::request request;
  request.what = control::request::verb::status;
  const reply r = ask(t.server_site(), request);
  if (r.failure != EX_OK) return fail(r.failure, r.message);
  control::server_row server;
  std::vector<control::punt_row> punts;
  for (const auto& record : r.records) {
    if (auto row = control::read_server(record)) server = std::move(*row);
    if (auto row = control::read_punt(record)) punts.push_back(std::move(*row));
  }
  bool all_up = true;
  for (const auto& p : punts) all_up = all_up && p.up;
  if (json) {
    std::cout << "{\"role\":" << json_string(server.role) << ",\"sessions\":" << server.sessions
              << ",\"probe_interval_ms\":" << server.probe_interval_ms << ",\"punts\":[";
    for (std::size_t i = 0; i < punts.size(); ++i) {
      const auto& p = punts[i];
      std::cout << (i ? ",\n " : "\n ") << "{\"name\":" << json_string(p.name) << ",\"up\":" << (p.up ? "true" : "false")
                << ",\"latency_ms\":";
      if (p.latency_us) {
        char number[32];
        std::snprintf(number, sizeof number, "%.3f", static_cast<double>(*p.latency_us) / 1000);
        std::cout << number;
      } else {
        std::cout << "null";
      }
      std::cout << ",\"sessions\":" << p.sessions << ",\"checked_ms_ago\":"
                << (p.checked_ms_ago ? std::to_string(*p.checked_ms_ago) : std::string("null"))
                << ",\"detail\":" << (p.detail.empty() ? std::string("null") : json_string(p.detail)) << "}";
    }
    std::cout << (punts.empty() ? "]}\n" : "\n]}\n");
  } else {
    std::cout << "punt\tstate\tlatency\tsessions\tchecked\tdetail\n";
    for (const auto& p : punts)
      std::cout << cell(p.name) << '\t' << (p.up ? "up" : "down") << '\t'
                << (p.latency_us ? duration_text(*p.latency_us) : "-") << '\t' << p.sessions << '\t'
                << (p.checked_ms_ago ? duration_text(*p.checked_ms_ago * 1000) + " ago" : std::string("-")) << '\t'
                << cell(p.detail) << '\n';
  }
  return all_up ? EX_OK : some_down;
}

}  // namespace sdps::admin
