// The log sink: its targets (stderr lines, journald's priority prefixes,
// the syslog socket), its formats and a level changed while it runs.

#include "logging/sink.hpp"
#include "support/temp_dir.hpp"

#include <catch2/catch.hpp>

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <regex>

using namespace sdps;
using namespace sdps::logging;

namespace {

/// A file standing in for standard error.
struct fake_stderr {
  testing::temp_dir dir;
  base::unique_fd fd{::open((dir / "stderr").c_str(), O_CREAT | O_WRONLY | O_APPEND | O_CLOEXEC, 0600)};
  std::string text() const { return testing::read_text(dir.path() / "stderr"); }
  /// "DEVICE:INODE" of the file, as systemd sets JOURNAL_STREAM.
  std::string stream_id() const {
    struct stat st {};
    ::fstat(fd.get(), &st);
    return std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino);
  }
};

/// Sets an environment variable for one test.
struct scoped_env {
  scoped_env(const char* name, const std::string& value) : name_(name) { ::setenv(name, value.c_str(), 1); }
  ~scoped_env() { ::unsetenv(name_); }
  const char* name_;
};

/// A private syslog socket: a bound unix datagram socket.
struct fake_syslog {
  testing::temp_dir dir;
  std::string path = (dir / "log").string();
  base::unique_fd fd{::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0)};
  fake_syslog() {
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    std::memcpy(address.sun_path, path.data(), path.size());
    REQUIRE(::bind(fd.get(), reinterpret_cast<const sockaddr*>(&address), sizeof address) == 0);
    timeval wait{5, 0};
    ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &wait, sizeof wait);
  }
  std::string next() {
    char buffer[8192];
    const ssize_t n = ::recv(fd.get(), buffer, sizeof buffer, 0);
    return n > 0 ? std::string(buffer, static_cast<std::size_t>(n)) : std::string();
  }
};

options with(log_level minimum, std::optional<target> t, format f = format::text) {
  options o;
  o.minimum = minimum;
  o.target = t;
  o.format = f;
  o.ident = "sdpsd";
  return o;
}

}  // namespace

TEST_CASE("stderr lines: time, level, source and text, one line per call") {
  fake_stderr err;
  sink out(with(log_level::info, target::stderr_lines), err.fd.get());
  out.write(log_level::warning, "sdpsd", "punt docklands\nleft out");
  out.write(log_level::debug, "sdpsd", "not shown");
  const std::regex line(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z warning sdpsd: punt docklands left out\n)");
  CHECK(std::regex_match(err.text(), line));
}

TEST_CASE("journal: a priority prefix on each line and no time of our own, found through JOURNAL_STREAM") {
  fake_stderr err;
  SECTION("JOURNAL_STREAM names the file: detected") {
    scoped_env env("JOURNAL_STREAM", err.stream_id());
    sink out(with(log_level::debug, std::nullopt), err.fd.get());
    CHECK(out.target() == target::journal);
    out.write(log_level::error, "sdpsd", "cannot read the host database");
    out.write(log_level::warning, "sdpsd", "punt docklands left out");
    out.write(log_level::info, "sdpsd session 7", "login sample");
    out.write(log_level::debug, "sdpsd", "connect");
    CHECK(err.text() ==
          "<3>sdpsd: cannot read the host database\n<4>sdpsd: punt docklands left out\n"
          "<6>sdpsd session 7: login sample\n<7>sdpsd: connect\n");
  }
  SECTION("JOURNAL_STREAM names another file (a child's stderr redirected): plain lines") {
    fake_stderr other;
    scoped_env env("JOURNAL_STREAM", other.stream_id());
    sink out(with(log_level::info, std::nullopt), err.fd.get());
    CHECK(out.target() == target::stderr_lines);
    out.write(log_level::info, "sdpsd", "started");
    CHECK(err.text().find(" info sdpsd: started\n") != std::string::npos);
  }
  SECTION("malformed JOURNAL_STREAM: plain lines") {
    scoped_env env("JOURNAL_STREAM", err.stream_id() + "x");
    CHECK_FALSE(journal_on(err.fd.get()));
  }
  SECTION("log_target: journal without JOURNAL_STREAM, JSON without a time") {
    sink out(with(log_level::info, target::journal, format::json), err.fd.get());
    out.write(log_level::warning, "sdpsd", "x");
    CHECK(err.text() == "<4>{\"level\":\"warning\",\"source\":\"sdpsd\",\"message\":\"x\"}\n");
  }
}

TEST_CASE("syslog: RFC 3164 datagrams on the syslog socket, facility and severity in the priority") {
  fake_syslog daemon;
  fake_stderr err;
  options o = with(log_level::info, target::syslog);
  o.syslog_socket = daemon.path;
  o.facility = *parse_facility("local3");
  sink out(o, err.fd.get());
  out.write(log_level::warning, "sdpsd", "punt docklands left out");
  const std::string expected = "<156>[A-Z][a-z]{2} [ 0-9]\\d \\d\\d:\\d\\d:\\d\\d sdpsd\\[" +
                               std::to_string(::getpid()) +
                               "\\]: sdpsd: punt docklands left out";
  CHECK(std::regex_match(daemon.next(), std::regex(expected)));  // local3 (19) * 8 + warning (4)
  out.write(log_level::info, "sdpsd", "login");
  CHECK(daemon.next().rfind("<158>", 0) == 0);
  CHECK(err.text().empty());

  SECTION("the daemon gone: lines go to standard error, said once") {
    daemon.fd.reset();
    ::unlink(daemon.path.c_str());
    out.write(log_level::info, "sdpsd", "first");
    out.write(log_level::info, "sdpsd", "second");
    const std::string text = err.text();
    CHECK(text.find("cannot reach the syslog socket " + daemon.path) != std::string::npos);
    CHECK(text.find(" info sdpsd: first\n") != std::string::npos);
    CHECK(text.find(" info sdpsd: second\n") != std::string::npos);
    CHECK(text.find("cannot reach") == text.rfind("cannot reach"));
  }
}

TEST_CASE("events: text k=v, JSON members with numbers as numbers") {
  fake_stderr err;
  const fields values = {text_field("login", "fred+sample"), text_field("end", "idle autologout"),
                         count_field("retr", 2, 10712), number_field("dele", 2), seconds_field("duration", 3.2144)};
  SECTION("text") {
    sink out(with(log_level::info, target::journal), err.fd.get());
    out.write_event(log_level::info, "sdpsd session 7", "logout", values);
    CHECK(err.text() == "<6>sdpsd session 7: logout login=fred+sample end=\"idle autologout\" retr=2/10712 dele=2 "
                        "duration=3.214s\n");
  }
  SECTION("JSON") {
    sink out(with(log_level::info, target::stderr_lines, format::json), err.fd.get());
    out.write_event(log_level::info, "sdpsd session 7", "logout", values);
    const std::string line = err.text();
    CHECK(std::regex_search(line, std::regex(R"(^\{"time":"[0-9T:.-]+Z","level":"info","source":"sdpsd session 7",)")));
    CHECK(line.find(R"("event":"logout","login":"fred+sample","end":"idle autologout","retr":2,"retr_octets":10712,)"
                    R"("dele":2,"duration":3.214}
)") != std::string::npos);
  }
}

TEST_CASE("configure: a new level and format take effect while loggers on the sink go on") {
  fake_stderr err;
  auto out = std::make_shared<sink>(with(log_level::warning, target::journal), err.fd.get());
  source_log root(out, "sdpsd");
  const auto session = root.derive("session 3");
  session->info("hidden");
  CHECK_FALSE(session->enabled(log_level::info));
  options more = out->settings();
  more.minimum = log_level::debug;
  more.format = format::json;
  out->configure(more);
  CHECK(session->enabled(log_level::debug));
  session->debug("shown");
  CHECK(err.text() == "<7>{\"level\":\"debug\",\"source\":\"sdpsd session 3\",\"message\":\"shown\"}\n");
}

TEST_CASE("names: levels, targets, facilities") {
  CHECK(parse_level("warning") == log_level::warning);
  CHECK_FALSE(parse_level("warn"));
  CHECK(parse_target("journal") == target::journal);
  CHECK(std::string(target_name(target::stderr_lines)) == "stderr");
  CHECK_FALSE(parse_target("file"));
  CHECK(parse_facility("mail") == 16);
  CHECK(parse_facility("daemon") == 24);
  CHECK_FALSE(parse_facility("mailx"));
  CHECK(severity(log_level::error) == 3);
}
