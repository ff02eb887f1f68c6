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
  // Always present, at zero until fed.
  CHECK_THAT(text, Catch::Contains("sdps_auth_cache_hits_total 0\n"));
  CHECK_THAT(text, Catch::Contains("sdps_auth_cache_misses_total 0\n"));
  CHECK_THAT(text, Catch::Contains("sdps_logins_total{result=\"failed\"} 0\n"));
  CHECK(m.value("sdps_test_total", {{"verb", "RETR"}}) == 3);
}

TEST_CASE("the auth cache counters are fed through the module API") {
  sdps::core::metrics_registry m;
  sdps::metrics& api = m;
  api.auth_cache_hit();
  api.auth_cache_hit();
  api.auth_cache_miss();
  CHECK(m.value("sdps_auth_cache_hits_total") == 2);
  CHECK(m.value("sdps_auth_cache_misses_total") == 1);
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
  const auto fields = r.logout_fields(who, true, {sdps::asio::ip::make_address("192.0.2.7"), 1234},
                                      {sdps::asio::ip::make_address("127.0.0.1"), 110}, false);
  auto field = [&](const std::string& key) {
    for (const auto& [k, v] : fields)
      if (k == key) return v;
    return std::string("(none)");
  };
  CHECK(field("login") == "fred+sample");
  CHECK(field("host") == "sample");
  CHECK(field("user") == "fred");
  CHECK(field("rip") == "192.0.2.7");
  CHECK(field("tls") == "no");
  CHECK(field("retr") == "1/120");
  CHECK(field("top") == "1/40");
  CHECK(field("dele") == "1");
  CHECK(field("end") == "idle autologout");
}
