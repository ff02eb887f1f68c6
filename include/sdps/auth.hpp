#pragma once
/// @file
/// The service that tells a login-rewriting module where passwords are checked.

namespace sdps {

/// Offered by an instance that verifies PASS (the password for
/// session::login()) before passing it on, as `auth` does. A module that
/// turns another login form into PASS with verdict::next_as() (`sasl`'s
/// AUTH PLAIN) must come before one, and checks so in start(): otherwise
/// the rewritten PASS would reach lock and merge unchecked.
struct password_verifier {
  static constexpr const char* service_id = "sdps.password_verifier";
};

}  // namespace sdps
