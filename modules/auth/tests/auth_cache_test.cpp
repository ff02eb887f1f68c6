// The auth cache on its own, with a clock the test moves by hand. The auth
// module's use of it is tested in auth_module_test.cpp ("auth cache: ...").

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
// Entries these tests make are not for verified_offline().
const auth_cache::digest no_offline{};

}  // namespace

TEST_CASE("auth cache: a remembered password passes; another password never does", "[auth][cache]") {
  manual_clock t;
  auth_cache cache(1h, 10, t.fn());
  REQUIRE(cache.enabled());
  const auto good = cache.fingerprint(stored, "pop3 secret");
  CHECK_FALSE(cache.verified("sample", credential::pop3, good));  // nothing yet
  cache.remember("sample", credential::pop3, good, no_offline);
  CHECK(cache.verified("sample", credential::pop3, good));
  CHECK(cache.verified("sample", credential::pop3, cache.fingerprint(stored, "pop3 secret")));

  // Right after a good login, every other password is still unknown.
  for (const char* wrong : {"pop3 secreT", "pop3 secret ", "", "pop3", "pop3 secret\r\n"})
    CHECK_FALSE(cache.verified("sample", credential::pop3, cache.fingerprint(stored, wrong)));
  // Only for this host, and only for this kind of password.
  CHECK_FALSE(cache.verified("other", credential::pop3, good));
  CHECK_FALSE(cache.verified("sample", credential::dialup, good));
  CHECK_FALSE(cache.verified("sample", credential::none, good));
  cache.remember("sample", credential::none, good, no_offline);  // not a success: ignored
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
  a.remember("sample", credential::pop3, d, no_offline);
  CHECK_FALSE(a.verified("sample", credential::pop3, a.fingerprint(stored + "x", password)));
}

TEST_CASE("auth cache: entries expire after the ttl, counted from the check", "[auth][cache]") {
  manual_clock t;
  auth_cache cache(60s, 10, t.fn());
  const auto d = cache.fingerprint(stored, "pw");
  cache.remember("sample", credential::pop3, d, no_offline);
  t.now += 59s;
  CHECK(cache.verified("sample", credential::pop3, d));  // a hit does not extend the entry
  t.now += 1s;
  CHECK_FALSE(cache.verified("sample", credential::pop3, d));
  CHECK(cache.size() == 0);  // removed when found expired
  cache.remember("sample", credential::pop3, d, no_offline);  // a fresh check starts a new period
  t.now += 30s;
  CHECK(cache.verified("sample", credential::pop3, d));
}

TEST_CASE("auth cache: ttl 0 or size 0 store nothing", "[auth][cache]") {
  for (auto [ttl, size] : {std::pair{0ms, std::size_t{10}}, std::pair{std::chrono::milliseconds(1h), std::size_t{0}}}) {
    auth_cache cache(ttl, size);
    CHECK_FALSE(cache.enabled());
    const auto d = cache.fingerprint(stored, "pw");
    cache.remember("sample", credential::pop3, d, no_offline);
    CHECK_FALSE(cache.verified("sample", credential::pop3, d));
    CHECK(cache.size() == 0);
  }
}

TEST_CASE("auth cache: the size is bounded; the least recently used entry goes first", "[auth][cache]") {
  manual_clock t;
  auth_cache cache(1h, 3, t.fn());
  auto d = [&](const std::string& host) { return cache.fingerprint(stored, "pw of " + host); };
  for (const char* host : {"a", "b", "c"}) cache.remember(host, credential::pop3, d(host), no_offline);
  CHECK(cache.verified("a", credential::pop3, d("a")));  // a is now the most recent; b the least
  cache.remember("d", credential::pop3, d("d"), no_offline);
  CHECK(cache.size() == 3);
  CHECK_FALSE(cache.verified("b", credential::pop3, d("b")));
  for (const char* host : {"a", "c", "d"}) CHECK(cache.verified(host, credential::pop3, d(host)));
  // Replacing an entry does not grow the cache.
  cache.remember("a", credential::pop3, d("a"), no_offline);
  CHECK(cache.size() == 3);
  // (std::string("h").append(...), not "h" + std::to_string(...): GCC 12's
  // -Wrestrict false positive in Release builds, docs/toolchain.md.)
  for (int i = 0; i < 100; ++i)
    cache.remember(std::string("h").append(std::to_string(i)), credential::dialup, d("x"), no_offline);
  CHECK(cache.size() == 3);
}

TEST_CASE("auth cache: forget drops both of a host's entries and no other", "[auth][cache]") {
  auth_cache cache(1h, 10);
  const auto p = cache.fingerprint(stored, "pop3 pw");
  const auto q = cache.fingerprint(stored, "dial pw");
  cache.remember("sample", credential::pop3, p, no_offline);
  cache.remember("sample", credential::dialup, q, no_offline);
  cache.remember("other", credential::pop3, p, no_offline);
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
        cache.remember(host, credential::pop3, good, no_offline);
        cache.verified(host, credential::pop3, good);
        if (cache.verified(host, credential::pop3, cache.fingerprint(stored, "bad " + host))) ++wrong_admitted;
        if (i % 7 == 0) cache.forget(host);
      }
    });
  for (auto& t : threads) t.join();
  CHECK(wrong_admitted == 0);
  CHECK(cache.size() <= 64);
}

TEST_CASE("auth cache: offline, the password alone vouches, the dialup one from its prefixes only", "[auth][cache]") {
  manual_clock t;
  auth_cache cache(60s, 10, t.fn());
  const auto from = [](const char* a) { return boost::asio::ip::make_address(a); };
  const auto pop3 = cache.offline_fingerprint("pop3 pw");
  const auto dial = cache.offline_fingerprint("dial pw");
  CHECK(pop3 != dial);
  // Another key than the stored-hash digest's: the two never coincide.
  CHECK(pop3 != cache.fingerprint("", "pop3 pw"));
  CHECK(cache.verified_offline("sample", pop3, from("203.0.113.5")) == credential::none);
  cache.remember("sample", credential::pop3, cache.fingerprint(stored, "pop3 pw"), pop3);
  cache.remember("sample", credential::dialup, cache.fingerprint(stored, "dial pw"), dial,
                 {*base::address_prefix::parse("192.0.2.0/24")});
  CHECK(cache.verified_offline("sample", pop3, from("203.0.113.5")) == credential::pop3);
  CHECK(cache.verified_offline("sample", dial, from("192.0.2.77")) == credential::dialup);
  CHECK(cache.verified_offline("sample", dial, from("::ffff:192.0.2.77")) == credential::dialup);
  CHECK(cache.verified_offline("sample", dial, from("203.0.113.5")) == credential::none);
  CHECK(cache.verified_offline("sample", cache.offline_fingerprint("wrong"), from("192.0.2.77")) == credential::none);
  CHECK(cache.verified_offline("other", pop3, from("203.0.113.5")) == credential::none);
  // A POP3 entry keeps no prefixes; entries expire offline as online.
  t.now += 60s;
  CHECK(cache.verified_offline("sample", pop3, from("203.0.113.5")) == credential::none);
  CHECK(cache.size() == 0);
}

TEST_CASE("auth cache: clear drops every entry", "[auth][cache]") {
  auth_cache cache(1h, 10);
  const auto p = cache.fingerprint(stored, "pw");
  cache.remember("a", credential::pop3, p, cache.offline_fingerprint("pw"));
  cache.remember("b", credential::dialup, p, cache.offline_fingerprint("pw"));
  cache.clear();
  CHECK(cache.size() == 0);
  CHECK_FALSE(cache.verified("a", credential::pop3, p));
  CHECK(cache.verified_offline("a", cache.offline_fingerprint("pw"), boost::asio::ip::make_address("192.0.2.1")) ==
        credential::none);
}
