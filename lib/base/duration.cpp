#include "base/duration.hpp"

#include <charconv>
#include <cstdint>
#include <limits>

namespace sdps::base {

std::optional<std::chrono::milliseconds> parse_duration(std::string_view text, zero_duration zero) {
  const char* const end = text.data() + text.size();
  // Digits only: from_chars would take a sign.
  if (text.empty() || text.front() < '0' || text.front() > '9') return std::nullopt;
  std::int64_t value = 0;
  const auto [rest, ec] = std::from_chars(text.data(), end, value);
  if (ec != std::errc{}) return std::nullopt;
  const std::string_view unit(rest, static_cast<std::size_t>(end - rest));
  std::int64_t scale = 0;
  if (unit.empty() || unit == "s") scale = 1000;
  else if (unit == "ms") scale = 1;
  else if (unit == "m") scale = 60 * 1000;
  else if (unit == "h") scale = 3600 * 1000;
  else if (unit == "d") scale = 86400 * 1000;
  else return std::nullopt;
  if (value > std::numeric_limits<std::int64_t>::max() / scale) return std::nullopt;
  if (value == 0 && zero == zero_duration::refused) return std::nullopt;
  return std::chrono::milliseconds(value * scale);
}

std::string duration_expected(zero_duration zero) {
  return zero == zero_duration::allowed ? "must be a duration such as 250ms, 30s, 5m, 2h or 1d"
                                        : "must be a duration above 0 such as 250ms, 30s, 5m, 2h or 1d";
}

}  // namespace sdps::base
