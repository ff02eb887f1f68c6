#pragma once
/// @file
/// Durations as people write them in sdps YAML files and on command lines.

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

namespace sdps::base {

/// Whether a duration of 0 is acceptable: the caller says (a timeout of 0
/// may mean "none" in one place and be a mistake in another).
enum class zero_duration { allowed, refused };

/// Parses "250ms", "30s", "5m", "2h", "1d" or a bare number of seconds
/// ("30"): digits, then at most one unit, nothing else. Nullopt for
/// anything else, for a value too large for milliseconds, and for 0 (in
/// any unit) when `zero` is refused.
std::optional<std::chrono::milliseconds> parse_duration(std::string_view text, zero_duration zero);

/// What a refused duration should have been, for every message about one
/// (the setting or option is named before it):
/// "must be a duration such as 250ms, 30s, 5m, 2h or 1d", or with
/// `refused`, "must be a duration above 0 such as 250ms, 30s, 5m, 2h or 1d".
std::string duration_expected(zero_duration zero);

}  // namespace sdps::base
