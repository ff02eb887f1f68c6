// sdps-hoststore-pg: the PostgreSQL store's import, export and lookups,
// timed, against a database the caller provides (bench/README.md shows
// one started with tests/blackbox/pg_harness.py).
//
//   sdps-hoststore-pg URI FILE [LOOKUPS] [CONCURRENCY]
//
// Runs init, imports FILE (a hosts file, e.g. from sdps-hostgen) and
// times it; imports it again (nothing changes); exports and times that;
// then opens the store and looks up LOOKUPS random hosts of the file
// (default 20000), CONCURRENCY at a time on one event loop (default 8),
// and prints the latency percentiles.

#include "hostdb/store.hpp"
#include "hostdb/synthetic.hpp"
#include "hostdb/table.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <random>
#include <thread>
#include <string>
#include <vector>

namespace {

using namespace sdps::hostdb;
using clock_type = std::chrono::steady_clock;

double seconds_since(clock_type::time_point t) {
  return std::chrono::duration<double>(clock_type::now() - t).count();
}

class quiet_log final : public sdps::logger {
 public:
  void write(sdps::log_level, std::string_view line) override { std::cerr << line << "\n"; }
  bool enabled(sdps::log_level level) const override { return level >= sdps::log_level::warning; }
};

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::cerr << "usage: sdps-hoststore-pg URI FILE [LOOKUPS] [CONCURRENCY]\n";
    return 64;
  }
  const location where = locate(argv[1], "/");
  const std::filesystem::path file = std::filesystem::absolute(argv[2]);
  const std::size_t lookups = argc > 3 ? std::stoul(argv[3]) : 20000;
  const std::size_t concurrency = argc > 4 ? std::stoul(argv[4]) : 8;

  auto admin = open_admin(where);
  std::printf("%s\n", admin->init().c_str());
  auto t = clock_type::now();
  import_summary s = admin->import_file(file);
  std::printf("import: %zu hosts (%zu added, %zu changed, %zu removed) in %.1f s\n", s.hosts, s.added, s.changed,
              s.removed, seconds_since(t));
  t = clock_type::now();
  s = admin->import_file(file);
  std::printf("import again: %zu added, %zu changed, %zu removed in %.1f s\n", s.added, s.changed, s.removed,
              seconds_since(t));
  t = clock_type::now();
  {
    std::ofstream out(file.string() + ".export");
    // The store refuses to read a hosts file others can read.
    std::filesystem::permissions(file.string() + ".export",
                                 std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
    admin->export_to(out);
  }
  std::printf("export: %.1f s; the same text as the file: %s\n", seconds_since(t),
              format(host_table::read(file.string() + ".export")) == format(host_table::read(file)) ? "yes" : "NO");
  std::filesystem::remove(file.string() + ".export");

  const std::size_t hosts = s.hosts;
  quiet_log log;
  store_options o;
  o.log = &log;
  o.pool_size = std::max<std::size_t>(2, concurrency / 2);
  auto store = open_store(where, o);
  for (int i = 0; i < 500 && !store->up(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));

  std::vector<double> latencies;
  latencies.reserve(lookups);
  std::size_t found = 0, next = 0;
  std::mt19937_64 random(42);
  sdps::asio::io_context io;
  const auto worker = [&]() -> sdps::awaitable<void> {
    while (next < lookups) {
      ++next;
      std::string name = synthetic_name(random() % hosts);
      const auto start = clock_type::now();
      const lookup_result r = co_await store->lookup(std::move(name));
      latencies.push_back(std::chrono::duration<double, std::milli>(clock_type::now() - start).count());
      if (r.status == lookup_status::found) ++found;
    }
  };
  t = clock_type::now();
  for (std::size_t i = 0; i < concurrency; ++i) {
    auto job = worker;
    sdps::asio::co_spawn(io, std::move(job), sdps::asio::detached);
  }
  io.run();
  const double took = seconds_since(t);
  std::sort(latencies.begin(), latencies.end());
  const auto at = [&](double q) { return latencies[static_cast<std::size_t>(q * static_cast<double>(latencies.size() - 1))]; };
  std::printf("lookups: %zu (%zu found), %zu at a time, pool %zu: p50 %.3f ms, p99 %.3f ms, max %.3f ms, %.0f/s\n",
              latencies.size(), found, concurrency, o.pool_size, at(0.5), at(0.99), at(1.0),
              static_cast<double>(latencies.size()) / took);
  return found == latencies.size() ? 0 : 1;
}
