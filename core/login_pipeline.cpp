#include "login_pipeline.hpp"

#include "metrics.hpp"

namespace sdps::core {

namespace {

/// The client's address as logs show it: an IPv4 client on a dual-stack
/// listener as a.b.c.d, not ::ffff:a.b.c.d.
std::string address_for_log(const asio::ip::address& a) {
  if (a.is_v6() && a.to_v6().is_v4_mapped())
    return asio::ip::make_address_v4(asio::ip::v4_mapped, a.to_v6()).to_string();
  return a.to_string();
}

/// "finchley", "finchley and docklands", "a, b and c".
std::string join_names(const std::vector<std::string>& names) {
  std::string out;
  for (std::size_t i = 0; i < names.size(); ++i) {
    if (i > 0) out += i + 1 == names.size() ? " and " : ", ";
    out += names[i];
  }
  return out;
}

std::string count_messages(std::size_t n) { return std::to_string(n) + (n == 1 ? " message" : " messages"); }

login_verdict internal_refusal() {
  return login_verdict::refuse(response::err("[SYS/TEMP] internal server error, try again later"), "internal error");
}

}  // namespace

awaitable<response> login_pipeline::run(credentials presented) {
  session_engine& e = engine_;
  login_attempt attempt(std::move(presented));
  e.tried_ = attempt.who();
  for (const login_stage stage : login_stages_in_order) {
    if (stage == login_stage::open) {
      std::optional<login_verdict> opened = co_await open_maildrop(attempt);
      if (e.overran_) {
        undo();
        co_return response::err("[SYS/TEMP] the server took too long, try again later");
      }
      if (opened) co_return refused(attempt, std::move(*opened), e.chain_.source_instance());
    }
    for (const module_instance* l : e.chain_.in_stage(stage)) {
      std::optional<login_verdict> v =
          co_await e.guarded(*l, to_string(stage), l->object->on_login(e, stage, attempt));
      if (e.overran_) {
        undo();
        co_return response::err("[SYS/TEMP] the server took too long, try again later");
      }
      if (!v) co_return refused(attempt, internal_refusal(), l);
      if (v->refused()) co_return refused(attempt, std::move(*v), l);
      passed_.emplace_back(l, stage);
    }
    if (stage == login_stage::verify) {
      // The password is of no use to the later stages.
      detail::wipe(attempt.credentials_.password);
      if (!attempt.accepted())
        co_return refused(attempt, login_verdict::refuse(response::err("[AUTH] invalid login"), "not verified"),
                          nullptr);
    }
  }
  co_return enter(attempt);
}

awaitable<std::optional<login_verdict>> login_pipeline::open_maildrop(login_attempt& attempt) {
  session_engine& e = engine_;
  maildrop_source* source = e.chain_.source();
  if (!source) co_return std::nullopt;
  const module_instance& l = *e.chain_.source_instance();
  e.call_started(l, true);
  try {
    attempt.maildrop_ = co_await source->open(e, attempt.who());
  } catch (const spool_error& x) {
    if (e.call_ended()) co_return std::nullopt;
    l.log->warning("session ", e.id_, ": cannot open the maildrop of ", attempt.who().display(), ": ", x.what());
    co_return login_verdict::refuse(
        response::err("[SYS/TEMP] your mail cannot be read just now, try again later"), "maildrop unavailable");
  } catch (const std::exception& x) {
    if (e.call_ended()) co_return std::nullopt;
    l.log->error("session ", e.id_, ": opening the maildrop of ", attempt.who().display(), ": ", x.what());
    co_return internal_refusal();
  }
  if (e.call_ended()) co_return std::nullopt;
  if (!attempt.maildrop_) {
    l.log->error("session ", e.id_, ": the maildrop source opened nothing for ", attempt.who().display());
    co_return internal_refusal();
  }
  co_return std::nullopt;
}

void login_pipeline::undo() {
  for (auto it = passed_.rbegin(); it != passed_.rend(); ++it) {
    const module_instance& l = *it->first;
    try {
      l.object->undo_login(engine_, it->second);
    } catch (const std::exception& x) {
      l.log->error("session ", engine_.id_, ": undoing login stage ", to_string(it->second), ": ", x.what());
    }
  }
  passed_.clear();
}

response login_pipeline::refused(const login_attempt& attempt, login_verdict verdict, const module_instance* by) {
  undo();
  session_engine& e = engine_;
  e.log_.info("login failed: host ", attempt.who().host, " from ", address_for_log(e.remote_endpoint().address()), ": ",
              verdict.reason(), by ? " (" + by->instance + ")" : std::string());
  process_metrics().login_failed(verdict.reason());
  return std::move(verdict.reply());
}

response login_pipeline::enter(login_attempt& attempt) {
  session_engine& e = engine_;
  passed_.clear();
  e.login_ = attempt.who();
  e.maildrop_ = std::move(attempt.maildrop_);
  e.marks_.reset();
  e.state_ = pop3_state::transaction;
  e.authenticated_pending_ = true;
  e.dog_.clear(e.login_deadline_);
  const std::string who = e.login_->display();
  e.log_.info("login ", who, " from ", address_for_log(e.remote_endpoint().address()), " with ",
              attempt.method().empty() ? "credentials" : attempt.method());
  process_metrics().login_ok();
  if (!e.maildrop_) {
    e.log_.info(who, " logged in (no maildrop in this chain)");
    return response::ok(who + " logged in");
  }
  const auto totals = live_totals(*e.maildrop_, e.marks_);
  const std::vector<std::string> missing = e.maildrop_->missing();
  e.log_.info(who, " logged in: ", totals.first, " messages, ", totals.second, " octets",
              missing.empty() ? "" : ", punts missing: ", join_names(missing));
  std::string text = who + " has " + count_messages(totals.first) + " (" + std::to_string(totals.second) + " octets)";
  if (!missing.empty()) text += "; mail on " + join_names(missing) + " is unavailable";
  return response::ok(std::move(text));
}

}  // namespace sdps::core
