#include "session_record.hpp"

#include "metrics.hpp"


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

logging::fields session_record::logout_fields(const identity* who, bool logged_in,
                                              const asio::ip::tcp::endpoint& remote,
                                              const asio::ip::tcp::endpoint& local, bool tls) const {
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count();
  // A refused login's claim came from the client: made printable. (The
  // parsers that produce identities refuse controls already; this is the
  // log's own guard.)
  return {
      logging::text_field("login", who ? printable(who->display(), 140) : "-"),
      logging::text_field("host", who ? printable(who->host, 80) : "-"),
      logging::text_field("user", who && !who->user.empty() ? printable(who->user, 80) : "-"),
      logging::text_field("auth", logged_in ? "yes" : who ? "failed" : "none"),
      logging::text_field("rip", remote.address().to_string()),
      logging::text_field("lip", local.address().to_string()),
      logging::text_field("tls", tls ? "yes" : "no"),
      logging::count_field("retr", retr_, retr_octets_),
      logging::count_field("top", top_, top_octets_),
      logging::number_field("dele", dele_),
      logging::text_field("end", how()),
      logging::seconds_field("duration", seconds),
  };
}

}  // namespace sdps::core
