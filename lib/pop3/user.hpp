#pragma once
/// @file
/// USER's argument: the login forms of the spec, shared by the auth module
/// (front end, embedded) and backend_auth (back end), so both accept
/// exactly the same names.

#include <sdps/session.hpp>

#include <optional>
#include <string_view>

namespace sdps::pop3 {

/// Parses USER's argument: `host`, `host.DOMAIN`, `user+host`, `user@host`,
/// `user+host.DOMAIN` or `user@host.DOMAIN` (DOMAIN = `customer_domain`,
/// any case). Surrounding spaces are ignored. The host goes through
/// hostdb::normalise_host; the user part (before the last `+` or `@`) must
/// be an RFC 5322 dot-atom of at most 64 octets without `/`, whose atext
/// may include well-formed UTF-8 (RFC 6531: `frédé+sample`, never C1
/// controls), and has its ASCII letters lower-cased, as the spool's file
/// names do (docs/spool.md, `u=`). Nullopt when invalid. Says nothing about
/// whether the host exists.
std::optional<identity> parse_user(std::string_view argument, std::string_view customer_domain);
}  // namespace sdps::pop3
