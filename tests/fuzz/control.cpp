// The control socket's protocol (lib/control, docs/control.md): what
// sdpsd reads from `sdps` and `sdps` from sdpsd.
//
// Properties: a line that parses formats back to one line (one LF, at the
// end; no CR; one tab per field) that parses to the same record; values
// survive any octets; a request, a session, a server and a punt record
// read back from their own formatting to the same value; a kick request
// always names exactly one selector.

#include "fuzz.hpp"

#include "control/protocol.hpp"

#include <algorithm>
#include <string>

namespace ctl = sdps::control;

namespace {

std::string one_line(const ctl::record& r) {
  const std::string text = ctl::format(r);
  SDPS_FUZZ_CHECK(!text.empty() && text.back() == '\n');
  SDPS_FUZZ_CHECK(std::count(text.begin(), text.end(), '\n') == 1);
  SDPS_FUZZ_CHECK(text.find('\r') == std::string::npos);
  SDPS_FUZZ_CHECK(static_cast<std::size_t>(std::count(text.begin(), text.end(), '\t')) == r.fields.size());
  return text.substr(0, text.size() - 1);
}

bool same(const ctl::record& a, const ctl::record& b) { return a.kind == b.kind && a.fields == b.fields; }

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text = sdps::fuzz::text(data, size);

  // Any octets as a value (and as a kind, when it is a word).
  ctl::record any("x");
  any.set("v", std::string(text));
  const auto back = ctl::parse(one_line(any));
  SDPS_FUZZ_CHECK(back && *back->get("v") == text);

  const auto parsed = ctl::parse(text);
  if (!parsed) return 0;
  const auto again = ctl::parse(one_line(*parsed));
  SDPS_FUZZ_CHECK(again && same(*again, *parsed));

  const auto request = ctl::read_request(*parsed);
  if (const auto* r = std::get_if<ctl::request>(&request)) {
    const auto round = ctl::read_request(*ctl::parse(one_line(ctl::to_record(*r))));
    const auto* s = std::get_if<ctl::request>(&round);
    SDPS_FUZZ_CHECK(s && s->what == r->what);
    if (r->what == ctl::request::verb::kick) {
      SDPS_FUZZ_CHECK(s->which.what == r->which.what && s->which.value == r->which.value);
      const int given = (parsed->get("id") != nullptr) + (parsed->get("host") != nullptr) +
                        (parsed->get("login") != nullptr);
      SDPS_FUZZ_CHECK(given == 1);
    }
  }

  if (const auto session = ctl::read_session(*parsed)) {
    const auto round = ctl::read_session(*ctl::parse(one_line(ctl::to_record(*session))));
    SDPS_FUZZ_CHECK(round && round->id == session->id && round->login == session->login &&
                    round->host == session->host && round->user == session->user &&
                    round->client == session->client && round->tls == session->tls &&
                    round->state == session->state && round->since == session->since &&
                    round->sent == session->sent && round->gone == session->gone);
  }
  if (const auto server = ctl::read_server(*parsed)) {
    const auto round = ctl::read_server(*ctl::parse(one_line(ctl::to_record(*server))));
    SDPS_FUZZ_CHECK(round && round->role == server->role && round->probe_interval_ms == server->probe_interval_ms &&
                    round->sessions == server->sessions);
  }
  if (const auto punt = ctl::read_punt(*parsed)) {
    const auto round = ctl::read_punt(*ctl::parse(one_line(ctl::to_record(*punt))));
    SDPS_FUZZ_CHECK(round && round->name == punt->name && round->up == punt->up &&
                    round->latency_us == punt->latency_us && round->sessions == punt->sessions &&
                    round->checked_ms_ago == punt->checked_ms_ago && round->detail == punt->detail);
  }
  return 0;
}
