// POP3 numeric arguments (lib/pop3/arguments.hpp) and a command's words
// (sdps::command::args), as RETR, DELE, LIST, TOP and UIDL take them.
//
// Properties: parse_decimal agrees with a wide-integer model (digits only,
// saturating at UINT64_MAX) and prints back to its input when the input
// has no leading zeros; choose_message, against maildrops of 0 to 7
// messages with some marked deleted, either picks the message the argument names
// (in range, not deleted unless allowed) or answers an -ERR, never both.

#include "fuzz.hpp"

#include "pop3/arguments.hpp"

#include <stdexcept>
#include <string>
#include <vector>

namespace {

/// A maildrop of `n` messages.
class numbered_maildrop final : public sdps::maildrop {
 public:
  explicit numbered_maildrop(std::size_t n) : infos_(n) {}
  std::size_t count() const override { return infos_.size(); }
  const sdps::message_info& info(std::size_t index) const override { return infos_.at(index); }
  sdps::awaitable<std::unique_ptr<sdps::body_source>> retrieve(std::size_t, sdps::retrieval) override {
    throw std::logic_error("not used");
  }
  sdps::awaitable<sdps::envelope> envelope(std::size_t) override { throw std::logic_error("not used"); }
  sdps::awaitable<sdps::removal_result> remove(std::vector<std::size_t>) override {
    throw std::logic_error("not used");
  }

 private:
  std::vector<sdps::message_info> infos_;
};

/// The session's marks on it: every third message deleted.
sdps::marks every_third(std::size_t n) {
  sdps::marks m;
  for (std::size_t i = 0; i < n; i += 3) m.mark_deleted(i);
  return m;
}

std::optional<std::uint64_t> model_decimal(std::string_view text) {
  if (text.empty()) return std::nullopt;
  unsigned __int128 value = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return std::nullopt;
    value = value * 10 + static_cast<unsigned>(c - '0');
    if (value > UINT64_MAX) value = static_cast<unsigned __int128>(UINT64_MAX) + 1;  // stays "too big"
  }
  return value > UINT64_MAX ? UINT64_MAX : static_cast<std::uint64_t>(value);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text = sdps::fuzz::text(data, size);

  const auto value = sdps::pop3::parse_decimal(text);
  SDPS_FUZZ_CHECK(value == model_decimal(text));
  if (value && *value != UINT64_MAX && (text.size() == 1 || text.front() != '0'))
    SDPS_FUZZ_CHECK(std::to_string(*value) == text);

  sdps::command cmd;
  cmd.name = "RETR";
  cmd.argument.assign(text);
  const auto words = cmd.args();
  const std::string_view first = words.empty() ? std::string_view() : words.front();

  for (std::size_t n = 0; n < 8; ++n) {
    numbered_maildrop drop(n);
    const sdps::marks marked = every_third(n);
    for (const bool allow_deleted : {false, true}) {
      const auto choice = sdps::pop3::choose_message(drop, marked, first, "RETR msg", allow_deleted);
      if (choice.error) {
        SDPS_FUZZ_CHECK(!choice.error->text.empty());
        continue;
      }
      SDPS_FUZZ_CHECK(choice.index < drop.count());
      SDPS_FUZZ_CHECK(first.size() <= 10 && sdps::pop3::parse_decimal(first) == choice.index + 1);
      SDPS_FUZZ_CHECK(allow_deleted || !marked.deleted(choice.index));
    }
  }
  return 0;
}
