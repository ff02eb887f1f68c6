// Numeric arguments and message selection, as commands, extensions and
// backend_listing share them.

#include "pop3/arguments.hpp"
#include "pop3/response_code.hpp"

#include <catch2/catch.hpp>

#include <vector>

using namespace sdps;

namespace {

/// A maildrop of `n` messages that are never read.
class numbered_maildrop final : public maildrop {
 public:
  explicit numbered_maildrop(std::size_t n) : infos_(n) {}
  std::size_t count() const override { return infos_.size(); }
  const message_info& info(std::size_t index) const override { return infos_.at(index); }
  awaitable<std::unique_ptr<body_source>> retrieve(std::size_t, retrieval) override { throw spool_error("not here"); }
  awaitable<sdps::envelope> envelope(std::size_t) override { co_return sdps::envelope{}; }
  awaitable<removal_result> remove(std::vector<std::size_t>) override { co_return removal_result{}; }

 private:
  std::vector<message_info> infos_;
};

}  // namespace

TEST_CASE("parse_decimal takes plain digits only", "[pop3][arguments]") {
  CHECK(pop3::parse_decimal("0") == 0u);
  CHECK(pop3::parse_decimal("0042") == 42u);
  CHECK(pop3::parse_decimal("99999999999999999999999") == UINT64_MAX);
  for (const char* bad : {"", "+1", "-1", " 1", "1 ", "1a", "0x10"}) {
    INFO("'" << bad << "'");
    CHECK_FALSE(pop3::parse_decimal(bad));
  }
}

TEST_CASE("choose_message resolves a number against the maildrop and the session's marks", "[pop3][arguments]") {
  numbered_maildrop drop(2);
  marks marked;
  CHECK(pop3::choose_message(drop, marked, "2", "RETR msg").index == 1);
  CHECK_FALSE(pop3::choose_message(drop, marked, "2", "RETR msg").error);
  CHECK(pop3::choose_message(drop, marked, "x", "RETR msg").error->text == "invalid message number (syntax: RETR msg)");
  CHECK(pop3::choose_message(drop, marked, "3", "RETR msg").error->text ==
        "no such message, only 2 messages in maildrop");
  CHECK(pop3::choose_message(drop, marked, "0", "RETR msg").error->text ==
        "no such message, only 2 messages in maildrop");
  CHECK(pop3::choose_message(drop, marked, "00000000001", "RETR msg").error);
  marked.mark_deleted(0);
  CHECK(pop3::choose_message(drop, marked, "1", "RETR msg").error->text == "message 1 already deleted");
  CHECK_FALSE(pop3::choose_message(drop, marked, "1", "LIST [msg]", true).error);
  CHECK_FALSE(pop3::choose_message(drop, marked, "2", "RETR msg").error);
  // RSET (and a login): nothing is deleted any more.
  marked.reset();
  CHECK_FALSE(pop3::choose_message(drop, marked, "1", "RETR msg").error);
}

TEST_CASE("the session's marks: deleted messages and LAST", "[pop3][marks]") {
  numbered_maildrop drop(3);
  marks m;
  CHECK(m.deleted_count() == 0);
  CHECK(m.last() == 0);
  m.mark_deleted(2);
  m.mark_deleted(0);
  m.mark_deleted(2);  // twice is once
  CHECK(m.deleted_count() == 2);
  CHECK(m.deleted_indexes() == std::vector<std::size_t>{0, 2});
  CHECK_FALSE(m.deleted(1));
  CHECK_FALSE(m.deleted(99));
  m.touch(1);
  m.touch(0);
  CHECK(m.last() == 2);  // the highest touched, not the latest
  CHECK(live_totals(drop, m).first == 1);
  m.reset();
  CHECK(m.deleted_indexes().empty());
  CHECK(m.last() == 0);
  CHECK(live_totals(drop, m).first == 3);
}

TEST_CASE("count_messages agrees in number", "[pop3][arguments]") {
  CHECK(pop3::count_messages(0) == "0 messages");
  CHECK(pop3::count_messages(1) == "1 message");
  CHECK(pop3::count_messages(2) == "2 messages");
}

TEST_CASE("response codes are written and read whole", "[pop3][response_code]") {
  using pop3::response_code;
  CHECK(pop3::with_code(response_code::in_use, "maildrop already locked") == "[IN-USE] maildrop already locked");
  CHECK(pop3::with_code(response_code::none, "plain") == "plain");
  CHECK(pop3::code_of("[IN-USE] maildrop already locked") == response_code::in_use);
  CHECK(pop3::code_of("[in-use] x") == response_code::in_use);
  CHECK(pop3::code_of("[SYS/TEMP] 1 of 2 messages") == response_code::sys_temp);
  CHECK(pop3::code_of("[AUTH]") == response_code::auth);
  CHECK(pop3::code_of("[X-SOMETHING] y") == response_code::other);
  CHECK(pop3::code_of("maildrop [IN-USE] somewhere inside") == response_code::none);
  CHECK(pop3::code_of("[IN-USE-NOT] x") == response_code::other);
  CHECK(pop3::code_of("[IN USE] x") == response_code::none);
  CHECK(pop3::code_of("") == response_code::none);
  CHECK(pop3::code_of("[] x") == response_code::none);
}
