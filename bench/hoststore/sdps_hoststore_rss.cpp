// sdps-hoststore-rss: what the file store costs in memory, measured.
//
//   sdps-hoststore-rss FILE [CHANGES]      (default 3 changes)
//
// Opens a file store on FILE (a copy is made beside it, so FILE is left
// alone), then CHANGES times rewrites the copy with one host's POP3 hash
// changed (streamed: the tool holds no copy of the text) and waits for the
// store to swap the new version in. Prints the process's resident memory
// (VmRSS) before the store, after it loaded, after each change, and the
// peak (VmHWM, reset before each change) during each re-read; and the
// slowest lookup seen while each re-read ran (a thread looks hosts up
// without pause meanwhile), beside the slowest over 2 s without one: on a
// busy machine both include the scheduler's delays.

#include "hostdb/store.hpp"
#include "hostdb/synthetic.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace {

using namespace sdps::hostdb;

long status_kib(const char* field) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind(field, 0) == 0) return std::stol(line.substr(std::strlen(field) + 1));
  return -1;
}

void reset_peak() { std::ofstream("/proc/self/clear_refs") << "5"; }

double mib(long kib) { return static_cast<double>(kib) / 1024.0; }

class quiet_log final : public sdps::logger {
 public:
  void write(sdps::log_level level, std::string_view line) override {
    if (level >= sdps::log_level::warning) std::cerr << line << "\n";
  }
  bool enabled(sdps::log_level level) const override { return level >= sdps::log_level::warning; }
};

// Copies `from` to `to` line by line, the first host line's last field
// (its POP3 hash) replaced by a fresh synthetic hash.
void rewrite(const std::string& from, const std::string& to, std::uint64_t& state) {
  std::ifstream in(from);
  const std::string temp = to + ".new";
  {
    std::ofstream out(temp);
    std::string line;
    bool done = false;
    while (std::getline(in, line)) {
      if (!done && !line.empty() && line[0] != '#') {
        line = line.substr(0, line.rfind(' ') + 1) + synthetic_hash(state);
        done = true;
      }
      out << line << '\n';
    }
  }
  ::chmod(temp.c_str(), 0600);
  std::rename(temp.c_str(), to.c_str());
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::cerr << "usage: sdps-hoststore-rss FILE [CHANGES]\n";
    return 64;
  }
  const std::string source = std::filesystem::absolute(argv[1]).string();
  const int changes = argc > 2 ? std::atoi(argv[2]) : 3;
  const std::string file = source + ".rss-copy";
  std::uint64_t state = 12345;
  rewrite(source, file, state);
  struct stat st {};
  ::stat(file.c_str(), &st);

  quiet_log log;
  std::mutex mutex;
  std::condition_variable cv;
  int swaps = 0;
  store_options o;
  o.log = &log;
  o.changed = [&](const host_change&) {
    std::lock_guard guard(mutex);
    ++swaps;
    cv.notify_all();
  };
  const long baseline = status_kib("VmRSS:");
  reset_peak();
  auto t0 = std::chrono::steady_clock::now();
  auto store = open_store(locate(file, "/"), o);
  const double load_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("file %.1f MiB; RSS before the store %.1f MiB\n", static_cast<double>(st.st_size) / 1048576.0,
              mib(baseline));
  std::printf("start: RSS %.1f MiB (peak %.1f MiB), loaded in %.2f s\n", mib(status_kib("VmRSS:")),
              mib(status_kib("VmHWM:")), load_s);

  std::atomic<bool> stop{false};
  // Lookup latencies of the window under way, in microseconds: a fixed
  // histogram, so that measuring takes no memory of its own.
  constexpr std::size_t buckets = 100000;
  std::vector<std::atomic<std::uint32_t>> histogram(buckets + 1);
  const auto window = [&] {
    std::vector<std::uint64_t> counts(buckets + 1);
    std::uint64_t total = 0;
    for (std::size_t i = 0; i <= buckets; ++i) total += counts[i] = histogram[i].exchange(0);
    const auto at = [&](double q) {
      const auto wanted = static_cast<std::uint64_t>(q * static_cast<double>(total));
      std::uint64_t seen = 0;
      for (std::size_t i = 0; i <= buckets; ++i)
        if ((seen += counts[i]) >= wanted && counts[i]) return static_cast<double>(i) / 1000.0;
      return 0.0;
    };
    char text[160];
    std::snprintf(text, sizeof text, "%llu lookups, p50 %.3f ms, p99 %.3f ms, p99.99 %.3f ms, max %.2f ms",
                  static_cast<unsigned long long>(total), at(0.5), at(0.99), at(0.9999), at(1.0));
    return std::string(text);
  };
  std::thread prober([&] {
    std::size_t n = 0;
    while (!stop) {
      sdps::asio::io_context io;
      const auto start = std::chrono::steady_clock::now();
      auto job = [&]() -> sdps::awaitable<void> {
        std::string name = synthetic_name(n++ % 1000);
        co_await store->lookup(std::move(name));
      };
      sdps::asio::co_spawn(io, std::move(job), sdps::asio::detached);
      io.run();
      const long us = std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - start).count();
      histogram[static_cast<std::size_t>(std::min<long>(us, buckets))].fetch_add(1, std::memory_order_relaxed);
    }
  });

  // The yardstick: the slowest lookup over as long a time without a re-read.
  window();
  std::this_thread::sleep_for(std::chrono::seconds(2));
  std::printf("no change, 2 s: %s\n", window().c_str());

  for (int i = 1; i <= changes; ++i) {
    reset_peak();
    window();
    const auto begin = std::chrono::steady_clock::now();
    rewrite(file, file, state);
    {
      std::unique_lock guard(mutex);
      cv.wait(guard, [&] { return swaps >= i; });
    }
    const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - begin).count();
    const std::string during = window();
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    std::printf("change %d: RSS %.1f MiB, peak during the re-read %.1f MiB, rewrite+re-read %.2f s; meanwhile %s\n", i,
                mib(status_kib("VmRSS:")), mib(status_kib("VmHWM:")), took, during.c_str());
  }
  stop = true;
  prober.join();
  store.reset();
  std::remove(file.c_str());
  return 0;
}
