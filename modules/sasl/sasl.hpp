#pragma once
// The sasl module: SASL AUTH (RFC 5034) with the PLAIN mechanism (RFC 4616).
// Settings are documented in README.md beside this file.

#include <sdps/module.hpp>

#include <optional>
#include <string>
#include <string_view>

namespace sdps::sasl {

/// A decoded PLAIN message: authzid NUL authcid NUL passwd.
struct plain_message {
  std::string authzid;
  std::string authcid;
  std::string password;
  ~plain_message();
};

/// Decodes the base64 client response of PLAIN (RFC 4616). Nullopt when it
/// is not base64 or not three NUL-separated fields (authcid and password
/// non-empty). Pure, for unit tests.
std::optional<plain_message> decode_plain(std::string_view base64);

/// The `sasl` module instance.
///
/// `AUTH` lists the mechanisms; `AUTH PLAIN [initial-response]` reads the
/// response (from the command line, or from a `+ ` continuation), checks
/// its form and the authorization identity, and hands the core a login
/// (verdict::login) of the authentication identity with the password,
/// mechanism "PLAIN": the core runs it through every login stage, so the
/// verifier (`auth`) checks the password exactly as for USER/PASS (both
/// passwords, the dialup rule, the fail delay), and site policies, locks
/// and the maildrop follow as for any login. Anywhere in the chain.
class sasl_module final : public sdps::module {
 public:
  explicit sasl_module(module_config& config);

  std::vector<command_spec> commands() const override;
  /// Refuses to start unless some instance verifies logins.
  void start(const registry& services) override;
  awaitable<verdict> on_command(session& s, const command& cmd) override;
  /// `SASL PLAIN` where the plaintext policy allows a password.
  void capabilities(session& s, std::vector<std::string>& lines) const override;

 private:
  std::string instance_;
  std::string domain_;
};

}  // namespace sdps::sasl
