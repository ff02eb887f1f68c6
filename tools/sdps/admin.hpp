#pragma once
// The sdps admin tool: what every subcommand gets from the config file.

#include <sdps/log.hpp>

#include <filesystem>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace sdps::admin {

/// The parts of an sdps config the admin tool works on. Any of the shipped
/// configs (embedded, back end, front end) names the same hosts and spools.
struct site {
  std::filesystem::path config_file;
  std::filesystem::path hosts;                         // `hosts:`, resolved
  std::map<std::string, std::filesystem::path> punts;  // `punts:`, resolved, by name
  std::string customer_domain;                         // "demon.co.uk"
  std::string password_cost = "interactive";           // `password_cost:` (Argon2id), unchecked
  std::string server_name;                             // `server_name:` (default: the machine's name)
  std::uint64_t max_message_size = 50ull << 20;        // `max_message_size:` (lmtp), octets
};

/// `'text'` for an error message, made printable and cut to `limit`.
/// Built by appending: GCC 12 at -O3 reports a false -Wrestrict on
/// `"'" + std::string` (operator+(const char*, string&&) inlined; GCC bug
/// 105651), so the tools do not write messages that way.
inline std::string quoted(std::string_view text, std::size_t limit) {
  std::string out = "'";
  out += printable(text, limit);
  out += '\'';
  return out;
}

/// Subcommands. `args` are the words after the subcommand's first word
/// ("host", "deliver", "spool"). Each returns a sysexits.h status and
/// prints errors to stderr as "sdps: ...".
int host_main(const site& s, const std::vector<std::string>& args);     // host.cpp
int deliver_main(const site& s, const std::vector<std::string>& args);  // deliver.cpp
int spool_main(const site& s, const std::vector<std::string>& args);    // spool.cpp
int flush_main(const site& s, const std::vector<std::string>& args);    // flush.cpp
int expire_main(const site& s, const std::vector<std::string>& args);   // expire.cpp
int lmtp_main(const site& s, const std::vector<std::string>& args);     // lmtp.cpp

}  // namespace sdps::admin
