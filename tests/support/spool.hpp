#pragma once
// Helpers for tests that store mail with the spool store library
// (lib/spoolstore): delivering from a string, and recipients of the
// sample host.

#include "spoolstore/delivery.hpp"

#include <algorithm>
#include <string>
#include <vector>

namespace sdps::testing {

/// Delivers `message` with sdps::spoolstore::deliver from a string, in
/// pieces of `piece` octets (to exercise chunk boundaries).
inline std::vector<spoolstore::stored_copy> deliver_text(const std::vector<spoolstore::punt_target>& punts,
                                                        const std::string& from,
                                                        const std::vector<spoolstore::recipient>& to,
                                                        const std::string& message, logger* log = nullptr,
                                                        std::size_t piece = 7) {
  std::size_t at = 0;
  spoolstore::input_reader input = [&](std::span<char> buffer) {
    const std::size_t n = std::min({buffer.size(), piece, message.size() - at});
    message.copy(buffer.data(), n, at);
    at += n;
    return n;
  };
  return spoolstore::deliver(punts, from, to, input, log);
}

/// The recipient LOCAL@HOST.demon.co.uk.
inline spoolstore::recipient rcpt(const std::string& local, const std::string& host = "sample") {
  return {local + "@" + host + ".demon.co.uk", local, host};
}

}  // namespace sdps::testing
