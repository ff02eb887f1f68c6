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
        "fred+-sample", "fred+sam_ple", "fred\t+sample", "demon.co.uk"}) {
    INFO("'" << bad << "'");
    CHECK_FALSE(pop3::parse_user(bad, "demon.co.uk"));
  }
  CHECK_FALSE(pop3::parse_user(std::string(65, 'u') + "+sample", "demon.co.uk"));
  CHECK_FALSE(pop3::parse_user(std::string("fred\0+sample", 12), "demon.co.uk"));
}

TEST_CASE("parse_user: UTF-8 user names (SMTPUTF8) are taken as sent", "[pop3][user]") {
  const std::string domain = "demon.co.uk";
  auto user_of = [&](const std::string& text) -> std::string {
    INFO(text);
    const auto who = pop3::parse_user(text, domain);
    REQUIRE(who);
    CHECK(who->host == "sample");
    return who->user;
  };
  CHECK(user_of("fr\xc3\xa9""d\xc3\xa9+sample") == "fr\xc3\xa9""d\xc3\xa9");          // frédé
  CHECK(user_of("Fr\xc3\xa9""d\xc3\xa9@Sample.demon.co.uk") == "fr\xc3\xa9""d\xc3\xa9");  // ASCII folded only
  CHECK(user_of("\xc3\x89mile+sample") == "\xc3\x89mile");                              // É stays É
  CHECK(user_of("\xe7\x94\xb0\xe4\xb8\xad+sample") == "\xe7\x94\xb0\xe4\xb8\xad");          // 田中
  CHECK(user_of("\xf0\x9f\x93\xa7.box+sample") == "\xf0\x9f\x93\xa7.box");                // U+1F4E7
  // 64 octets is the limit, counted in octets: 32 two-octet characters.
  std::string longest;
  for (int i = 0; i < 32; ++i) longest += "\xc3\xa9";
  CHECK(user_of(longest + "+sample") == longest);
  CHECK_FALSE(pop3::parse_user(longest + "e+sample", domain));
}

TEST_CASE("parse_user: invalid UTF-8, controls and path tricks are refused", "[pop3][user]") {
  for (const char* bad : {
           "fr\xc3+sample",              // truncated sequence
           "fr\xa9+sample",              // lone continuation byte
           "fr\xc0\xafx+sample",         // overlong '/'
           "fr\xe0\x80\xaf+sample",      // overlong '/', three octets
           "fr\xed\xa0\x80+sample",      // a UTF-16 surrogate
           "fr\xf4\x90\x80\x80+sample",  // above U+10FFFF
           "fr\xf8\x88\x80\x80\x80+sample",
           "fr\xff+sample",
           "fr\xc2\x85+sample",          // U+0085 NEL, a C1 control
           "fr\xc2\x9b+sample",          // U+009B CSI
           "fr\xe2\x80\xa8+sample",      // U+2028 LINE SEPARATOR
           "\xef\xbb\xbf""fred+sample",   // a byte order mark
           "fr\x7f+sample",
           "fred+sampl\xc3\xa9",          // never in the host part
           "\xc3\xa9/..+sample", "..\xc3\xa9+sample", "\xc3\xa9.+sample"}) {
    INFO("'" << bad << "'");
    CHECK_FALSE(pop3::parse_user(bad, "demon.co.uk"));
  }
}

