#pragma once
/// @file
/// remote_spool's health probe (sdps::punt_probe): is the back end there,
/// and does it hold the front-end secret? One link of its own per probe,
/// kept open between checks so that a back end sees one connection a
/// minute, not one per check.

#include "remote_link.hpp"

#include <sdps/maildrop.hpp>

#include <memory>

namespace sdps::remote {

/// check(): on a new link, connect and XAUTH (the back end proves it
/// holds the secret, as at a login); on the link a previous check left
/// open, `CAPA`. A kept link that fails (the back end's `login_timeout`
/// ends an idle connection that never logged in: a minute by default) is
/// replaced at once, in the same check. Every step is bounded by the
/// instance's connect_timeout and read_timeout. All calls on the
/// executor the probe was made for.
class backend_probe final : public punt_probe {
 public:
  backend_probe(executor ex, link_options options, std::shared_ptr<const backend_secret> secret, logger& log);
  ~backend_probe() override;

  awaitable<punt_health> check() override;
  /// Closes the link: a check under way fails at once.
  void stop() override;

 private:
  /// A new link, connected and authenticated; throws spool_error.
  awaitable<void> open();
  /// CAPA on the kept link, its listing read to the end; throws spool_error.
  awaitable<void> ask();

  executor executor_;
  link_options options_;
  std::shared_ptr<const backend_secret> secret_;
  logger& log_;
  std::shared_ptr<backend_link> link_;
  bool stopped_ = false;
};

}  // namespace sdps::remote
