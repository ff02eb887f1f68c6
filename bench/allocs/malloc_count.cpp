// malloc_count.so: counts a process's heap allocations, for
// bench/allocations.py. Preloaded (LD_PRELOAD) into sdpsd, it wraps malloc,
// calloc, realloc and aligned allocations (C++'s operator new ends in
// malloc), counting calls and octets in atomics; SIGUSR2 writes the totals
// so far, one line "calls octets", to the file named by
// SDPS_MALLOC_COUNT_FILE. Nothing else changes: the real allocator does
// the work (glibc's __libc_* entry points, so no dlsym at start-up).
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <cstring>

extern "C" {
void* __libc_malloc(std::size_t);
void* __libc_calloc(std::size_t, std::size_t);
void* __libc_realloc(void*, std::size_t);
void* __libc_memalign(std::size_t, std::size_t);
}

namespace {

std::atomic<unsigned long long> calls{0};
std::atomic<unsigned long long> octets{0};

void count(std::size_t n) {
  calls.fetch_add(1, std::memory_order_relaxed);
  octets.fetch_add(n, std::memory_order_relaxed);
}

// Async-signal-safe: formats with no allocation and writes with write(2).
void report(int) {
  const char* file = std::getenv("SDPS_MALLOC_COUNT_FILE");
  if (!file) return;
  char line[64];
  unsigned long long v[2] = {calls.load(), octets.load()};
  std::size_t at = 0;
  for (int k = 0; k < 2; ++k) {
    char digits[24];
    int n = 0;
    do {
      digits[n++] = static_cast<char>('0' + v[k] % 10);
      v[k] /= 10;
    } while (v[k] && n < 23);
    while (n) line[at++] = digits[--n];
    line[at++] = k == 0 ? ' ' : '\n';
  }
  const int fd = ::open(file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return;
  const ssize_t ignored = ::write(fd, line, at);
  (void)ignored;
  ::close(fd);
}

__attribute__((constructor)) void install() {
  struct sigaction sa;
  std::memset(&sa, 0, sizeof sa);
  sa.sa_handler = report;
  sa.sa_flags = SA_RESTART;
  ::sigaction(SIGUSR2, &sa, nullptr);
}

}  // namespace

extern "C" {

__attribute__((visibility("default"))) void* malloc(std::size_t n) {
  count(n);
  return __libc_malloc(n);
}
__attribute__((visibility("default"))) void* calloc(std::size_t k, std::size_t n) {
  count(k * n);
  return __libc_calloc(k, n);
}
__attribute__((visibility("default"))) void* realloc(void* p, std::size_t n) {
  count(n);
  return __libc_realloc(p, n);
}
__attribute__((visibility("default"))) void* memalign(std::size_t a, std::size_t n) {
  count(n);
  return __libc_memalign(a, n);
}
__attribute__((visibility("default"))) void* aligned_alloc(std::size_t a, std::size_t n) {
  count(n);
  return __libc_memalign(a, n);
}
__attribute__((visibility("default"))) int posix_memalign(void** out, std::size_t a, std::size_t n) {
  count(n);
  void* p = __libc_memalign(a, n);
  if (!p) return 12;  // ENOMEM
  *out = p;
  return 0;
}

}  // extern "C"
