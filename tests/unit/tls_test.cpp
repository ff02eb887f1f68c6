// Session ticket keys (core/tls.hpp): which key seals, which still opens,
// when each is retired. Time is passed in, so every case is exact.

#include "tls.hpp"

#include <catch2/catch.hpp>

using namespace std::chrono_literals;
using sdps::core::ticket_keys;

namespace {

const ticket_keys::clock::time_point t0 = ticket_keys::clock::time_point{} + 1000h;

bool same(const ticket_keys::key& a, const ticket_keys::key& b) {
  return a.name == b.name && a.cipher == b.cipher && a.mac == b.mac;
}

}  // namespace

TEST_CASE("a key seals for its period, then opens for one more and asks for renewal") {
  ticket_keys keys(1h, t0);
  const auto first = keys.sealing(t0);
  bool renew = true;
  auto opened = keys.opening(first.name, t0 + 30min, renew);
  REQUIRE(opened);
  CHECK(same(*opened, first));
  CHECK_FALSE(renew);
  CHECK(same(keys.sealing(t0 + 59min), first));

  // Its period is over: a fresh key seals, the first one still opens.
  const auto second = keys.sealing(t0 + 61min);
  CHECK(second.name != first.name);
  CHECK(second.cipher != first.cipher);
  CHECK(second.mac != first.mac);
  opened = keys.opening(first.name, t0 + 90min, renew);
  REQUIRE(opened);
  CHECK(same(*opened, first));
  CHECK(renew);
  opened = keys.opening(second.name, t0 + 90min, renew);
  REQUIRE(opened);
  CHECK_FALSE(renew);

  // The second key's period is over too: the first no longer opens.
  CHECK_FALSE(keys.opening(first.name, t0 + 122min, renew));
  opened = keys.opening(second.name, t0 + 122min, renew);
  REQUIRE(opened);
  CHECK(renew);
}

TEST_CASE("opening a ticket rotates too: a server that seals nothing still retires its keys") {
  ticket_keys keys(1h, t0);
  const auto first = keys.sealing(t0);
  bool renew = false;
  CHECK(keys.opening(first.name, t0 + 61min, renew));
  CHECK(renew);
  CHECK_FALSE(keys.opening(first.name, t0 + 123min, renew));
}

TEST_CASE("after two idle periods no old key opens") {
  ticket_keys keys(1h, t0);
  const auto first = keys.sealing(t0);
  bool renew = false;
  CHECK_FALSE(keys.opening(first.name, t0 + 2h, renew));
  CHECK_FALSE(same(keys.sealing(t0 + 2h), first));
}

TEST_CASE("rotate() (SIGHUP): the current key opens once more, and is gone after the next rotation") {
  ticket_keys keys(1h, t0);
  const auto first = keys.sealing(t0);
  keys.rotate(t0 + 1min);
  const auto second = keys.sealing(t0 + 1min);
  CHECK_FALSE(same(first, second));
  bool renew = false;
  CHECK(keys.opening(first.name, t0 + 2min, renew));
  CHECK(renew);
  keys.rotate(t0 + 3min);
  CHECK_FALSE(keys.opening(first.name, t0 + 3min, renew));
  CHECK(keys.opening(second.name, t0 + 3min, renew));
  CHECK(renew);
  // The period counts from the last rotation.
  CHECK(same(keys.sealing(t0 + 62min), keys.sealing(t0 + 3min)));
}

TEST_CASE("a name that no key has does not open") {
  ticket_keys keys(1h, t0);
  ticket_keys::key unknown;
  unknown.name.fill(0x5a);
  bool renew = true;
  CHECK_FALSE(keys.opening(unknown.name, t0, renew));
  ticket_keys other(1h, t0);
  CHECK_FALSE(keys.opening(other.sealing(t0).name, t0, renew));
}
