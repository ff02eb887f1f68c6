#pragma once
/// @file
/// The front end's side of XAUTH (docs/backend-protocol.md): answering a
/// back end's challenge with a proof of the shared secret and checking the
/// back end's proof in turn. Used by every link that talks to a back end:
/// a session's (remote_spool.cpp) and the health probe's (backend_probe.cpp).

#include "remote_link.hpp"

#include <memory>

namespace sdps::remote {

/// Connects `link` and reads the back end's greeting (backend_link::open())
/// and returns it. Throws spool_error.
awaitable<status> greet(std::shared_ptr<backend_link> link);

/// The XAUTH exchange on a connected link, starting from its greeting:
/// asks for a challenge if the greeting carried none, checks the punt it
/// names, sends `XAUTH FNONCE PROOF` followed by `more` (pipelined in the
/// same write: a login's USER, PASS, XLIST) and checks the back end's
/// proof. Returns once the proof is verified; the replies to `more` are
/// the caller's to read. (The caller holds the link alone: a new link,
/// nobody else's to take turns with.) Throws spool_error (the link closed) when the
/// back end refuses the connection or the proof, serves another punt, is
/// not an sdps back end, or does not hold the secret.
awaitable<void> authenticate(std::shared_ptr<backend_link> link, std::shared_ptr<const backend_secret> secret,
                             status greeting, std::vector<std::string> more);

/// What a back end's CAPA listed.
struct capabilities {
  /// CAPA was answered +OK (its listing is read).
  bool answered = false;
  /// XRESET is listed (backend_proto::reset_capability): the back end can
  /// end a login and keep the link, so the link can be pooled.
  bool resettable = false;
};

/// Reads the reply to a CAPA sent on `link` (a -ERR is not a failure: an
/// old back end may not list its capabilities). Throws spool_error when
/// the link fails or the listing passes short_reply_limit.
awaitable<capabilities> read_capabilities(std::shared_ptr<backend_link> link);

}  // namespace sdps::remote
