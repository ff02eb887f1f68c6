// The operations side of the core: sd_notify datagrams, the metrics text
// format, the logout line's fields.

#include "metrics.hpp"
#include "notify.hpp"
#include "session_record.hpp"

#include <catch2/catch.hpp>

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <regex>
#include <string>
#include <thread>
#include <vector>

namespace {

/// A datagram socket bound where NOTIFY_SOCKET would point.
struct listener {
  int fd = -1;
  std::string path;
  explicit listener(std::string where) : path(std::move(where)) {
    fd = ::socket(AF_UNIX, SOCK_DGRAM, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::memcpy(a.sun_path, path.data(), path.size());
    socklen_t length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size());
    if (path[0] == '@') a.sun_path[0] = '\0';
    REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&a), length) == 0);
  }
  ~listener() {
    ::close(fd);
    if (path[0] == '/') std::filesystem::remove(path);
  }
  std::string receive() {
    char buffer[512];
    const ssize_t n = ::recv(fd, buffer, sizeof buffer, MSG_DONTWAIT);
    return n > 0 ? std::string(buffer, static_cast<std::size_t>(n)) : std::string();
  }
};

}  // namespace

TEST_CASE("notify sends one datagram to a socket path") {
  listener l("/tmp/sdps-notify-test-" + std::to_string(::getpid()));
  CHECK(sdps::core::notify_socket(l.path, "READY=1\nSTATUS=serving"));
  CHECK(l.receive() == "READY=1\nSTATUS=serving");
}

TEST_CASE("notify reaches an abstract socket named with @") {
  listener l("@sdps-notify-test-" + std::to_string(::getpid()));
  CHECK(sdps::core::notify_socket(l.path, "STOPPING=1"));
  CHECK(l.receive() == "STOPPING=1");
}

TEST_CASE("notify follows NOTIFY_SOCKET and does nothing without it") {
  listener l("/tmp/sdps-notify-env-" + std::to_string(::getpid()));
  ::setenv("NOTIFY_SOCKET", l.path.c_str(), 1);
  CHECK(sdps::core::notify_service_manager("RELOADING=1"));
  CHECK(l.receive() == "RELOADING=1");
  ::unsetenv("NOTIFY_SOCKET");
  CHECK_FALSE(sdps::core::notify_service_manager("READY=1"));
  CHECK_FALSE(sdps::core::notify_socket("relative/path", "READY=1"));
}

TEST_CASE("metrics render in the Prometheus text format") {
  sdps::core::metrics_registry m;
  m.declare("sdps_test_total", "counter", "A test counter.");
  m.add("sdps_test_total", {{"verb", "RETR"}});
  m.add("sdps_test_total", {{"verb", "RETR"}}, 2);
  m.set("sdps_test_gauge", {{"punt", "fin\"chley"}}, 0);
  m.declare("sdps_test_seconds", "histogram", "A test histogram.", {0.1, 1});
  m.observe("sdps_test_seconds", {{"punt", "a"}}, 0.05);
  m.observe("sdps_test_seconds", {{"punt", "a"}}, 0.5);
  m.observe("sdps_test_seconds", {{"punt", "a"}}, 5);
  const std::string text = m.render();
  CHECK_THAT(text, Catch::Contains("# HELP sdps_test_total A test counter.\n# TYPE sdps_test_total counter\n"
                                   "sdps_test_total{verb=\"RETR\"} 3\n"));
  CHECK_THAT(text, Catch::Contains("# TYPE sdps_test_gauge gauge\nsdps_test_gauge{punt=\"fin\\\"chley\"} 0\n"));
  CHECK_THAT(text, Catch::Contains("sdps_test_seconds_bucket{punt=\"a\",le=\"0.1\"} 1\n"
                                   "sdps_test_seconds_bucket{punt=\"a\",le=\"1\"} 2\n"
                                   "sdps_test_seconds_bucket{punt=\"a\",le=\"+Inf\"} 3\n"
                                   "sdps_test_seconds_sum{punt=\"a\"} 5.55\n"
                                   "sdps_test_seconds_count{punt=\"a\"} 3\n"));
  // The core's own families are always present, at zero until fed; a
  // module's come with the module (it declares them).
  CHECK_THAT(text, Catch::Contains("sdps_logins_total{result=\"failed\"} 0\n"));
  CHECK_THAT(text, !Catch::Contains("sdps_auth_cache"));
  CHECK_THAT(text, !Catch::Contains("sdps_punt_up"));
  CHECK(m.value("sdps_test_total", {{"verb", "RETR"}}) == 3);
}

TEST_CASE("a module's families are declared and fed through the module API") {
  sdps::core::metrics_registry m;
  sdps::metrics& api = m;
  api.declare("sdps_module_thing_total", "counter", "Things a module counts.");
  const auto hits = api.counter("sdps_module_thing_total");
  CHECK_THAT(m.render(), Catch::Contains("# HELP sdps_module_thing_total Things a module counts.\n"
                                          "# TYPE sdps_module_thing_total counter\nsdps_module_thing_total 0\n"));
  hits.add();
  hits.add();
  CHECK(m.value("sdps_module_thing_total") == 2);
}

TEST_CASE("counter handles and the core's counts add up from several threads at once") {
  sdps::core::metrics_registry m;
  m.set_role("embedded");
  m.resolve({"RETR", "OTHER"}, {"QUIT"});
  sdps::metrics& api = m;
  const sdps::counter_handle handle = api.counter("sdps_test_total", {{"punt", "finchley"}});
  CHECK(handle.live());
  CHECK_FALSE(sdps::counter_handle{}.live());
  sdps::counter_handle{}.add();  // a default handle drops it
  constexpr int threads = 4, rounds = 10000;
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t)
    workers.emplace_back([&] {
      for (int i = 0; i < rounds; ++i) {
        handle.add();
        m.session_opened();
        m.command("RETR");
        m.command("XYZZY");  // not resolved: counted the slow way
        m.sent(3);
        m.login_ok();
        m.session_closed("QUIT");
      }
    });
  for (auto& w : workers) w.join();
  constexpr double total = threads * rounds;
  CHECK(m.value("sdps_test_total", {{"punt", "finchley"}}) == total);
  CHECK(m.value("sdps_sessions_total", {{"role", "embedded"}}) == total);
  CHECK(m.value("sdps_sessions_current", {{"role", "embedded"}}) == 0);
  CHECK(m.value("sdps_commands_total", {{"verb", "RETR"}}) == total);
  CHECK(m.value("sdps_commands_total", {{"verb", "XYZZY"}}) == total);
  CHECK(m.value("sdps_sent_bytes_total") == 3 * total);
  CHECK(m.value("sdps_logins_total", {{"result", "ok"}}) == total);
  CHECK(m.value("sdps_session_ends_total", {{"end", "QUIT"}}) == total);
  CHECK_THAT(m.render(), Catch::Contains("sdps_test_total{punt=\"finchley\"} 40000\n"));
}

TEST_CASE("the logout fields count commands and keep the first end reason") {
  sdps::core::session_record r;
  r.command("RETR", true, true, 120);
  r.command("RETR", true, false, 0);  // -ERR: not a retrieval
  r.command("TOP", true, true, 40);
  r.command("DELE", true, true, 0);
  r.ended(sdps::core::session_end::idle);
  r.ended(sdps::core::session_end::client_gone);
  const sdps::identity who{"sample", "fred"};
  const auto fields = r.logout_fields(&who, true, {sdps::asio::ip::make_address("192.0.2.7"), 1234},
                                      {sdps::asio::ip::make_address("127.0.0.1"), 110}, false);
  auto field = [&](const std::string& key) {
    for (const auto& f : fields)
      if (f.key == key) return f.text;
    return std::string("(none)");
  };
  // In JSON, numbers: the counters and the duration in seconds.
  auto json = [&](const std::string& key) {
    for (const auto& f : fields)
      for (const auto& member : f.json)
        if (member.first == key) return member.second;
    return std::string("(none)");
  };
  CHECK(field("login") == "fred+sample");
  CHECK(field("host") == "sample");
  CHECK(field("user") == "fred");
  CHECK(field("auth") == "yes");
  CHECK(field("rip") == "192.0.2.7");
  CHECK(field("tls") == "no");
  CHECK(field("retr") == "1/120");
  CHECK(field("top") == "1/40");
  CHECK(field("dele") == "1");
  CHECK(field("end") == "idle autologout");
  CHECK(json("retr") == "1");
  CHECK(json("retr_octets") == "120");
  CHECK(json("top_octets") == "40");
  CHECK(json("dele") == "1");
  CHECK(json("end") == "(none)");  // a string: written from its text
  CHECK(std::regex_match(json("duration"), std::regex(R"(\d+\.\d{3})")));
  CHECK(std::regex_match(field("duration"), std::regex(R"(\d+\.\d{3}s)")));
}

TEST_CASE("a refused login's logout line names the login tried, made printable; none tried is -") {
  sdps::core::session_record r;
  const sdps::identity tried{"sam\x01ple", ""};
  const auto fields = r.logout_fields(&tried, false, {sdps::asio::ip::make_address("192.0.2.7"), 1234},
                                      {sdps::asio::ip::make_address("127.0.0.1"), 110}, false);
  const auto none = r.logout_fields(nullptr, false, {sdps::asio::ip::make_address("192.0.2.7"), 1234},
                                    {sdps::asio::ip::make_address("127.0.0.1"), 110}, false);
  auto field = [](const auto& list, const std::string& key) {
    for (const auto& f : list)
      if (f.key == key) return f.text;
    return std::string("(none)");
  };
  CHECK(field(fields, "login") == "sam\\x01ple");
  CHECK(field(fields, "auth") == "failed");
  CHECK(field(none, "login") == "-");
  CHECK(field(none, "auth") == "none");
}
