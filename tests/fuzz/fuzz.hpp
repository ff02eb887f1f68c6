#pragma once
// What every fuzz target shares: the libFuzzer entry point, a property
// check that aborts (so libFuzzer and the replay runner both report it as
// a crash, with the input saved), and deterministic chunking of the input
// so that streaming parsers see it split at many different places.
// docs/fuzzing.md: building, running and adding targets.

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);

namespace sdps::fuzz {

[[noreturn]] inline void property_failed(const char* what, const char* file, int line) {
  std::fprintf(stderr, "%s:%d: property failed: %s\n", file, line, what);
  std::abort();
}

/// The input as text.
inline std::string_view text(const std::uint8_t* data, std::size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

/// Cuts a text into pieces of pseudo-random sizes (1 to `largest`), the
/// same way for the same text: the seed is a hash of it, so the fuzzer
/// explores split points as it mutates, and a saved input replays exactly.
class chunker {
 public:
  explicit chunker(std::string_view whole, std::size_t largest = 64) : rest_(whole), largest_(largest) {
    state_ = 1469598103934665603ull;
    for (char c : whole) state_ = (state_ ^ static_cast<unsigned char>(c)) * 1099511628211ull;
    state_ |= 1;
  }
  bool done() const { return rest_.empty(); }
  /// The next piece (empty once done()).
  std::string_view next() { return take(rest_.size()); }
  /// A size from 1 to `largest`, from the same sequence.
  std::size_t size() {
    state_ ^= state_ << 13;
    state_ ^= state_ >> 7;
    state_ ^= state_ << 17;
    // Mostly small pieces, sometimes large ones.
    const std::size_t limit = (state_ >> 60) < 12 ? 8 : largest_;
    return 1 + static_cast<std::size_t>((state_ >> 20) % limit);
  }

 private:
  std::string_view take(std::size_t available) {
    const std::size_t wanted = size();
    const std::size_t n = available < wanted ? available : wanted;
    const std::string_view piece = rest_.substr(0, n);
    rest_.remove_prefix(n);
    return piece;
  }
  std::string_view rest_;
  std::size_t largest_;
  std::uint64_t state_;
};

}  // namespace sdps::fuzz

/// Checks a property of the code under test; aborts with the condition's
/// text if it does not hold.
#define SDPS_FUZZ_CHECK(condition) \
  ((condition) ? void(0) : ::sdps::fuzz::property_failed(#condition, __FILE__, __LINE__))
