#pragma once
// A private PostgreSQL server for unit tests (Debian's postgresql
// package): initdb and postgres run as an unprivileged user (`nobody`
// when the tests run as root, as in CI), the data folder and the unix
// socket in a fresh temporary folder, no TCP listener. Stopped and removed
// by the destructor; if the test binary dies, the server gets SIGQUIT
// (PR_SET_PDEATHSIG). tests/blackbox/pg_harness.py is the same for the
// black-box tests.

#include "support/temp_dir.hpp"

#include <grp.h>
#include <libpq-fe.h>
#include <pwd.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace sdps::testing {

class postgres_server {
 public:
  /// initdb, then start. Throws (with the server's log) when it cannot.
  // Under /tmp whatever TMPDIR says: the server's user must be able to
  // reach the folder, and a unix socket's path must stay short.
  postgres_server() : dir_("/tmp") {
    bin_ = find_bindir();
    if (::geteuid() == 0) {
      const passwd* pw = ::getpwnam("nobody");
      if (!pw) throw std::runtime_error("postgres_server: no user 'nobody' to run PostgreSQL as");
      uid_ = pw->pw_uid;
      gid_ = pw->pw_gid;
      if (::chown(dir_.path().c_str(), uid_, gid_) != 0) throw std::runtime_error("postgres_server: chown failed");
    }
    run_and_wait({(bin_ / "initdb").string(), "-D", data().string(), "-U", user(), "-A", "trust", "-E", "UTF8",
                  "--no-locale", "--no-sync"});
    start();
  }

  ~postgres_server() {
    try {
      stop();
    } catch (...) {
    }
  }

  postgres_server(const postgres_server&) = delete;
  postgres_server& operator=(const postgres_server&) = delete;

  static std::string user() { return "sdps_test"; }
  const std::filesystem::path& socket_dir() const { return dir_.path(); }

  /// A libpq URI for database `db` on this server.
  std::string uri(const std::string& db = "postgres") const {
    return "postgresql:///" + db + "?host=" + socket_dir().string() + "&port=" + std::to_string(port) + "&user=" + user();
  }

  /// Starts the server (after stop()); returns once it accepts connections.
  void start() {
    if (pid_ > 0) return;
    pid_ = spawn({(bin_ / "postgres").string(), "-D", data().string(), "-k", socket_dir().string(), "-p",
                  std::to_string(port), "-c", "listen_addresses=", "-c", "fsync=off", "-c", "synchronous_commit=off",
                  "-c", "full_page_writes=off"});
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (PQping(uri().c_str()) != PQPING_OK) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        throw std::runtime_error("postgres_server: postgres exited at start:\n" + read_text(log()));
      }
      if (std::chrono::steady_clock::now() > deadline)
        throw std::runtime_error("postgres_server: no connection after 60 s:\n" + read_text(log()));
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }

  /// Fast shutdown (SIGINT): sessions are ended, the server exits.
  void stop() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGINT);
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    int status = 0;
    while (::waitpid(pid_, &status, WNOHANG) == 0) {
      if (std::chrono::steady_clock::now() > deadline) {
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, &status, 0);
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    pid_ = -1;
  }

  bool running() const { return pid_ > 0; }

  /// Runs `statement` (any number of commands) in database `db`; throws
  /// with the server's message when it fails.
  void sql(const std::string& statement, const std::string& db = "postgres") const {
    PGconn* c = PQconnectdb(uri(db).c_str());
    if (PQstatus(c) != CONNECTION_OK) {
      const std::string why = PQerrorMessage(c);
      PQfinish(c);
      throw std::runtime_error("postgres_server: cannot connect: " + why);
    }
    PGresult* r = PQexec(c, statement.c_str());
    const auto status = PQresultStatus(r);
    const std::string why = PQresultErrorMessage(r);
    PQclear(r);
    PQfinish(c);
    if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK)
      throw std::runtime_error("postgres_server: " + statement + ": " + why);
  }

  /// The first column of the first row of `query` ("" for none or NULL).
  std::string value(const std::string& query, const std::string& db = "postgres") const {
    PGconn* c = PQconnectdb(uri(db).c_str());
    PGresult* r = PQexec(c, query.c_str());
    std::string out;
    const bool ok = PQresultStatus(r) == PGRES_TUPLES_OK;
    const std::string why = ok ? "" : std::string(PQresultErrorMessage(r)) + PQerrorMessage(c);
    if (ok && PQntuples(r) > 0 && !PQgetisnull(r, 0, 0)) out = PQgetvalue(r, 0, 0);
    PQclear(r);
    PQfinish(c);
    if (!ok) throw std::runtime_error("postgres_server: " + query + ": " + why);
    return out;
  }

  /// A new, empty database; returns its name.
  std::string create_database() {
    // Appended, not "t" + ...: GCC 12's -Wrestrict false positive at -O3 (docs/toolchain.md).
    const std::string name = std::string("t").append(std::to_string(++databases_));
    sql("CREATE DATABASE " + name);
    return name;
  }

  static constexpr int port = 5432;  // on its own socket folder: no clash

 private:
  std::filesystem::path data() const { return dir_.path() / "data"; }
  std::filesystem::path log() const { return dir_.path() / "postgres.log"; }

  static std::filesystem::path find_bindir() {
    if (const char* forced = std::getenv("SDPS_PG_BINDIR")) return forced;
    std::filesystem::path best;
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator("/usr/lib/postgresql", ec))
      if (std::filesystem::exists(e.path() / "bin" / "postgres") && e.path() > best) best = e.path();
    if (best.empty())
      throw std::runtime_error(
          "postgres_server: no PostgreSQL server in /usr/lib/postgresql/*/bin: install Debian's postgresql package "
          "(scripts/install-deps --test) or set SDPS_PG_BINDIR");
    return best / "bin";
  }

  // Forks `argv` as the server's user, output to the log.
  pid_t spawn(const std::vector<std::string>& argv) const {
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    const std::string log_file = log().string();
    const pid_t pid = ::fork();
    if (pid < 0) throw std::runtime_error("postgres_server: fork failed");
    if (pid == 0) {
      const int fd = ::open(log_file.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
      if (fd >= 0) {
        ::dup2(fd, 1);
        ::dup2(fd, 2);
      }
      if (uid_ != 0 && (::setgroups(0, nullptr) != 0 || ::setgid(gid_) != 0 || ::setuid(uid_) != 0)) ::_exit(126);
      // After the change of user, which clears it: the server ends with
      // the test binary however that ends.
      ::prctl(PR_SET_PDEATHSIG, SIGQUIT);
      ::execv(args[0], args.data());
      ::_exit(127);
    }
    return pid;
  }

  void run_and_wait(const std::vector<std::string>& argv) const {
    const pid_t pid = spawn(argv);
    int status = 0;
    ::waitpid(pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
      throw std::runtime_error("postgres_server: " + argv[0] + " failed:\n" + read_text(log()));
  }

  temp_dir dir_;
  std::filesystem::path bin_;
  uid_t uid_ = 0;
  gid_t gid_ = 0;
  pid_t pid_ = -1;
  int databases_ = 0;
};

}  // namespace sdps::testing
