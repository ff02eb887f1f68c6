// Durations: one parser for the YAML files and the command lines.

#include "base/duration.hpp"

#include <catch2/catch.hpp>

using namespace std::chrono_literals;
using sdps::base::duration_expected;
using sdps::base::parse_duration;
using sdps::base::zero_duration;

TEST_CASE("durations in every unit, and bare seconds") {
  const auto allowed = zero_duration::allowed;
  CHECK(parse_duration("250ms", allowed) == 250ms);
  CHECK(parse_duration("30s", allowed) == 30s);
  CHECK(parse_duration("30", allowed) == 30s);
  CHECK(parse_duration("5m", allowed) == 5min);
  CHECK(parse_duration("2h", allowed) == 2h);
  CHECK(parse_duration("1d", allowed) == 24h);
  CHECK(parse_duration("007s", allowed) == 7s);
  CHECK(parse_duration("106751991167d", allowed) == std::chrono::milliseconds(106751991167LL * 86400000));
}

TEST_CASE("anything else is no duration") {
  for (const char* bad : {"", "s", "ms", "-1s", "+1s", "1 s", " 1s", "1s ", "1.5s", "1sec", "1S", "1y", "1ms5",
                          "0x10", "99999999999999999999", "106751991168d", "9223372036854775807s"}) {
    INFO("'" << bad << "'");
    CHECK_FALSE(parse_duration(bad, zero_duration::allowed));
  }
}

TEST_CASE("0 is the caller's choice, in any unit") {
  for (const char* zero : {"0", "0s", "0ms", "0m", "0h", "0d", "000"}) {
    INFO(zero);
    CHECK(parse_duration(zero, zero_duration::allowed) == 0ms);
    CHECK_FALSE(parse_duration(zero, zero_duration::refused));
  }
  CHECK(parse_duration("1ms", zero_duration::refused) == 1ms);
}

TEST_CASE("one wording for a refused duration") {
  CHECK(duration_expected(zero_duration::allowed) == "must be a duration such as 250ms, 30s, 5m, 2h or 1d");
  CHECK(duration_expected(zero_duration::refused) == "must be a duration above 0 such as 250ms, 30s, 5m, 2h or 1d");
}
