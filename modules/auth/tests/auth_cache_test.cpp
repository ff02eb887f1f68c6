// The auth cache on its own, with a clock the test moves by hand; and the
// auth module using it (a fake session, as in auth_module_test.cpp).

#include "auth_cache.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <string>
#include <thread>
#include <vector>

using namespace sdps;
using namespace std::chrono_literals;
using auth::auth_cache;
using auth::credential;

namespace {

/// A steady clock that only moves when told.
struct manual_clock {
  auth_cache::clock::time_point now{};
  std::function<auth_cache::clock::time_point()> fn() {
    return [this] { return now; };
  }
};

const std::string stored = "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaGhhc2g";

}  // namespace

TEST_CASE("auth cache: a remembered password passes; another password never does", "[auth][cache]") {
  manual_clock t;
  auth_cache cache(1h, 10, t.fn());
  REQUIRE(cache.enabled());
  const auto good = cache.fingerprint(stored, "pop3 secret");
  CHECK_FALSE(cache.verified("sample", credential::pop3, good));  // nothing yet
  cache.remember("sample", credential::pop3, good);
  CHECK(cache.verified("sample", credential::pop3, good));
  CHECK(cache.verified("sample", credential::pop3, cache.fingerprint(stored, "pop3 secret")));

  // Right after a good login, every other password is still unknown.
  for (const char* wrong : {"pop3 secreT", "pop3 secret ", "", "pop3", "pop3 secret\r\n"})
    CHECK_FALSE(cache.verified("sample", credential::pop3, cache.fingerprint(stored, wrong)));
  // Only for this host, and only for this kind of password.
  CHECK_FALSE(cache.verified("other", credential::pop3, good));
  CHECK_FALSE(cache.verified("sample", credential::dialup, good));
  CHECK_FALSE(cache.verified("sample", credential::none, good));
  cache.remember("sample", credential::none, good);  // not a success: ignored
  CHECK(cache.size() == 1);
}

TEST_CASE("auth cache: the digest covers the stored hash, is keyed, and is not the password", "[auth][cache]") {
  auth_cache a(1h, 10), b(1h, 10);
  const std::string password = "pop3 secret, long enough to fill the digest";
  const auto d = a.fingerprint(stored, password);
  const std::string text(d.begin(), d.end());
  CHECK(text.find("pop3") == std::string::npos);
  CHECK_FALSE(std::equal(d.begin(), d.end(), password.begin()));
  // Another process (another key) makes another digest of the same input.
  CHECK(d != b.fingerprint(stored, password));
  // A new stored hash (the password set again) makes another digest, so
  // entries for the old hash match nothing.
  CHECK(d != a.fingerprint(stored + "x", password));
  // The split between hash and password counts.
  CHECK(a.fingerprint("ab", "c") != a.fingerprint("a", "bc"));
  a.remember("sample", credential::pop3, d);
  CHECK_FALSE(a.verified("sample", credential::pop3, a.fingerprint(stored + "x", password)));
}

TEST_CASE("auth cache: entries expire after the ttl, counted from the check", "[auth][cache]") {
  manual_clock t;
  auth_cache cache(60s, 10, t.fn());
  const auto d = cache.fingerprint(stored, "pw");
  cache.remember("sample", credential::pop3, d);
  t.now += 59s;
  CHECK(cache.verified("sample", credential::pop3, d));  // a hit does not extend the entry
  t.now += 1s;
  CHECK_FALSE(cache.verified("sample", credential::pop3, d));
  CHECK(cache.size() == 0);  // removed when found expired
  cache.remember("sample", credential::pop3, d);  // a fresh check starts a new period
  t.now += 30s;
  CHECK(cache.verified("sample", credential::pop3, d));
}

TEST_CASE("auth cache: ttl 0 or size 0 store nothing", "[auth][cache]") {
  for (auto [ttl, size] : {std::pair{0ms, std::size_t{10}}, std::pair{std::chrono::milliseconds(1h), std::size_t{0}}}) {
    auth_cache cache(ttl, size);
    CHECK_FALSE(cache.enabled());
    const auto d = cache.fingerprint(stored, "pw");
    cache.remember("sample", credential::pop3, d);
    CHECK_FALSE(cache.verified("sample", credential::pop3, d));
    CHECK(cache.size() == 0);
  }
}

TEST_CASE("auth cache: the size is bounded; the least recently used entry goes first", "[auth][cache]") {
  manual_clock t;
  auth_cache cache(1h, 3, t.fn());
  auto d = [&](const std::string& host) { return cache.fingerprint(stored, "pw of " + host); };
  for (const char* host : {"a", "b", "c"}) cache.remember(host, credential::pop3, d(host));
  CHECK(cache.verified("a", credential::pop3, d("a")));  // a is now the most recent; b the least
  cache.remember("d", credential::pop3, d("d"));
  CHECK(cache.size() == 3);
  CHECK_FALSE(cache.verified("b", credential::pop3, d("b")));
  for (const char* host : {"a", "c", "d"}) CHECK(cache.verified(host, credential::pop3, d(host)));
  // Replacing an entry does not grow the cache.
  cache.remember("a", credential::pop3, d("a"));
  CHECK(cache.size() == 3);
  // (std::string("h").append(...), not "h" + std::to_string(...): GCC 12's
  // -Wrestrict false positive in Release builds, docs/toolchain.md.)
  for (int i = 0; i < 100; ++i) cache.remember(std::string("h").append(std::to_string(i)), credential::dialup, d("x"));
  CHECK(cache.size() == 3);
}

TEST_CASE("auth cache: forget drops both of a host's entries and no other", "[auth][cache]") {
  auth_cache cache(1h, 10);
  const auto p = cache.fingerprint(stored, "pop3 pw");
  const auto q = cache.fingerprint(stored, "dial pw");
  cache.remember("sample", credential::pop3, p);
  cache.remember("sample", credential::dialup, q);
  cache.remember("other", credential::pop3, p);
  cache.forget("sample");
  CHECK_FALSE(cache.verified("sample", credential::pop3, p));
  CHECK_FALSE(cache.verified("sample", credential::dialup, q));
  CHECK(cache.verified("other", credential::pop3, p));
  CHECK(cache.size() == 1);
  cache.forget("nosuch");
  CHECK(cache.size() == 1);
}

TEST_CASE("auth cache: used from several threads at once", "[auth][cache]") {
  auth_cache cache(1h, 64);
  std::atomic<int> wrong_admitted{0};
  std::vector<std::thread> threads;
  for (int n = 0; n < 4; ++n)
    threads.emplace_back([&, n] {
      for (int i = 0; i < 2000; ++i) {
        const std::string host = std::string("h").append(std::to_string((i + n) % 100));
        const auto good = cache.fingerprint(stored, "good " + host);
        cache.remember(host, credential::pop3, good);
        cache.verified(host, credential::pop3, good);
        if (cache.verified(host, credential::pop3, cache.fingerprint(stored, "bad " + host))) ++wrong_admitted;
        if (i % 7 == 0) cache.forget(host);
      }
    });
  for (auto& t : threads) t.join();
  CHECK(wrong_admitted == 0);
  CHECK(cache.size() <= 64);
}
