#pragma once
// What the commands and extensions modules share: parsing POP3 numeric
// arguments against a session's maildrop and marks, and the `source:`
// setting they accept. Header-only, so each module's .so carries its own
// copy.

#include <sdps/maildrop.hpp>
#include <sdps/module.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace sdps::pop3 {

/// The value of a plain decimal argument (digits only: no sign, no '+', no
/// spaces), or nullopt if it is anything else. Values beyond uint64 saturate.
inline std::optional<std::uint64_t> parse_decimal(std::string_view text) {
  if (text.empty()) return std::nullopt;
  std::uint64_t value = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return std::nullopt;
    const std::uint64_t digit = static_cast<std::uint64_t>(c - '0');
    value = value > (UINT64_MAX - digit) / 10 ? UINT64_MAX : value * 10 + digit;
  }
  return value;
}

/// A message-number argument resolved against a maildrop: the message's
/// index (number - 1), or the -ERR reply to send instead.
struct message_choice {
  std::size_t index = 0;
  std::optional<response> error;
};

/// Resolves `argument` as a message number of `drop`. `syntax` is the usage
/// text for the reply ("RETR msg"). Numbers are 1 to count(), plain
/// decimal of at most 10 digits. A message `marked` deleted is refused
/// unless `allow_deleted`.
inline message_choice choose_message(const maildrop& drop, const marks& marked, std::string_view argument,
                                     std::string_view syntax, bool allow_deleted = false) {
  message_choice out;
  const auto number = parse_decimal(argument);
  if (!number) {
    out.error = response::err("invalid message number (syntax: " + std::string(syntax) + ")");
    return out;
  }
  const std::size_t count = drop.count();
  if (argument.size() > 10 || *number == 0 || *number > count) {
    out.error = response::err("no such message, only " + std::to_string(count) +
                              (count == 1 ? " message" : " messages") + " in maildrop");
    return out;
  }
  out.index = static_cast<std::size_t>(*number - 1);
  if (!allow_deleted && marked.deleted(out.index))
    out.error = response::err("message " + std::to_string(*number) + " already deleted");
  return out;
}

/// "1 message" / "3 messages".
inline std::string count_messages(std::size_t n) {
  return std::to_string(n) + (n == 1 ? " message" : " messages");
}

/// Reads a maildrop reader's optional `source:` setting. A session has one
/// maildrop, opened at login from the chain's last maildrop source (the
/// core's, session::maildrop()); `source:` may only name that instance,
/// as a statement of what the reader expects. Empty when absent.
inline std::string source_setting(module_config& config) {
  std::string source = config.options().string_or("source", "");
  if (config.options().has("source") && source.empty())
    config.options().fail("source", "'source' must name the module instance providing the sessions' maildrop");
  return source;
}

/// Checks a `source:` read by source_setting() against the chain: it must
/// name the instance the sessions' maildrop comes from (the last provider
/// of sdps::maildrop_source). Throws config_error naming `instance`.
/// Called from start().
inline void check_source(const registry& services, const std::string& source, const std::string& instance) {
  if (source.empty()) return;
  const registry::entry* last = nullptr;
  for (const registry::entry& e : services.entries())
    if (e.service == std::string_view(maildrop_source::service_id) && (!last || e.position >= last->position))
      last = &e;
  if (!last)
    throw config_error("module instance '" + instance + "' needs a maildrop source (a spool or merge) in the chain");
  if (last->instance != source)
    throw config_error("module instance '" + instance + "': 'source: " + source +
                       "' is not where the sessions' maildrop comes from: a session has one maildrop, opened at "
                       "login from the chain's last maildrop source, '" + last->instance +
                       "'; remove 'source:' or name that instance");
}

}  // namespace sdps::pop3
