// USER's login forms, as auth and backend_auth accept them.

#include "pop3/user.hpp"

#include <catch2/catch.hpp>

#include <string>

using namespace sdps;

TEST_CASE("parse_user: every USER form of the spec", "[pop3][user]") {
  const std::string domain = "demon.co.uk";
  auto check = [&](const char* text, const char* host, const char* user) {
    INFO(text);
    const auto who = pop3::parse_user(text, domain);
    REQUIRE(who);
    CHECK(who->host == host);
    CHECK(who->user == user);
  };
  check("sample", "sample", "");
  check("Sample", "sample", "");
  check("sample.demon.co.uk", "sample", "");
  check("SAMPLE.DEMON.CO.UK", "sample", "");
  check("fred+sample", "sample", "fred");
  check("fred@sample", "sample", "fred");
  check("fred+sample.demon.co.uk", "sample", "fred");
  check("Fred@Sample.Demon.Co.Uk", "sample", "fred");
  check("  fred+sample  ", "sample", "fred");
  check("fred.bloggs+sample", "sample", "fred.bloggs");
  check("fred+lists+sample", "sample", "fred+lists");
  check("o'neil@sample", "sample", "o'neil");
  check("a!#$%&'*+-=?^_`{|}~z@sample", "sample", "a!#$%&'*+-=?^_`{|}~z");
  check((std::string(64, 'u') + "+sample").c_str(), "sample", std::string(64, 'u').c_str());
}

TEST_CASE("parse_user: invalid names are refused", "[pop3][user]") {
  for (const char* bad :
       {"", "   ", "+sample", "@sample", "fred+", "fred@", "fred+sample.other.com", "sample.other.com",
        "fred sample", "fred+sam ple", ".fred+sample", "fred.+sample", "fr..ed+sample", "a/b+sample",
        "../x+sample", "fred@bob@sample", "fred\"+sample", "fred(x)+sample", "fred,x+sample", "fred\\x+sample",
        "fred+-sample", "fred+sam_ple", "fred\t+sample", "fr\xc3\xa9+sample", "demon.co.uk"}) {
    INFO("'" << bad << "'");
    CHECK_FALSE(pop3::parse_user(bad, "demon.co.uk"));
  }
  CHECK_FALSE(pop3::parse_user(std::string(65, 'u') + "+sample", "demon.co.uk"));
  CHECK_FALSE(pop3::parse_user(std::string("fred\0+sample", 12), "demon.co.uk"));
}
