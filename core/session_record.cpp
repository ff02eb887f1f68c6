#include "session_record.hpp"

#include "metrics.hpp"

#include <cstdio>

namespace sdps::core {

void session_record::command(const std::string& verb, bool known, bool positive, std::uint64_t body_octets) {
  // Verbs no module declared come from the client: count them under one
  // label so a scrape cannot be made to grow without bound.
  process_metrics().command(known ? verb : "OTHER");
  if (!positive) return;
  if (verb == "RETR") {
    ++retr_;
    retr_octets_ += body_octets;
  } else if (verb == "TOP") {
    ++top_;
    top_octets_ += body_octets;
  } else if (verb == "DELE") {
    ++dele_;
  }
}

log_fields session_record::logout_fields(const std::optional<identity>& login, bool logged_in,
                                         const asio::ip::tcp::endpoint& remote,
                                         const asio::ip::tcp::endpoint& local, bool tls) const {
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count();
  char duration[32];
  std::snprintf(duration, sizeof duration, "%.3fs", seconds);
  const bool known = logged_in && login;
  return {
      {"login", known ? login->display() : "-"},
      {"host", known ? login->host : "-"},
      {"user", known && !login->user.empty() ? login->user : "-"},
      {"rip", remote.address().to_string()},
      {"lip", local.address().to_string()},
      {"tls", tls ? "yes" : "no"},
      {"retr", std::to_string(retr_) + "/" + std::to_string(retr_octets_)},
      {"top", std::to_string(top_) + "/" + std::to_string(top_octets_)},
      {"dele", std::to_string(dele_)},
      {"end", how()},
      {"duration", duration},
  };
}

}  // namespace sdps::core
