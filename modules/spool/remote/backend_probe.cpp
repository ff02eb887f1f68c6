#include "backend_probe.hpp"

#include "front_auth.hpp"

namespace sdps::remote {

backend_probe::backend_probe(executor ex, link_options options, std::shared_ptr<const backend_secret> secret,
                             logger& log)
    : executor_(std::move(ex)), options_(std::move(options)), secret_(std::move(secret)), log_(log) {}

backend_probe::~backend_probe() {
  if (link_) link_->close("probe ended");
}

void backend_probe::stop() {
  stopped_ = true;
  if (link_) link_->close("probe stopped");
}

awaitable<void> backend_probe::open() {
  auto link = std::make_shared<backend_link>(executor_, options_, secret_, log_, "probe: punt " + options_.punt);
  link_ = link;
  const status greeting = co_await greet(link);
  std::vector<std::string> nothing;
  co_await authenticate(link, secret_, greeting, std::move(nothing));
}

awaitable<void> backend_probe::ask() {
  const std::shared_ptr<backend_link> link = link_;
  std::vector<std::string> capa{"CAPA"};
  co_await link->send(std::move(capa));
  const capabilities listed = co_await read_capabilities(link);
  if (!listed.answered) throw link->failure("CAPA refused");
}

awaitable<punt_health> backend_probe::check() {
  punt_health out;
  if (stopped_) {
    out.detail = "not probed: stopping";
    co_return out;
  }
  const bool kept = link_ && link_->usable();
  try {
    if (kept)
      co_await ask();
    else
      co_await open();
    out.up = true;
    // Kept for the next check, leaving no deadline pending meanwhile.
    link_->park();
    co_return out;
  } catch (const std::exception& e) {
    out.detail = e.what();
  }
  if (link_) link_->close(out.detail);
  link_.reset();
  if (!kept || stopped_) co_return out;
  // The kept link may simply have been ended by the back end (its
  // login_timeout): only a new one says whether the back end is down.
  log_.debug("probe: punt ", options_.punt, ": the kept link failed (", out.detail, "); trying a new one");
  try {
    co_await open();
    link_->park();
    out.up = true;
    out.detail.clear();
  } catch (const std::exception& e) {
    out.detail = e.what();
    if (link_) link_->close(out.detail);
    link_.reset();
  }
  co_return out;
}

}  // namespace sdps::remote
