#include "sasl.hpp"

#include "pop3/user.hpp"

#include <sodium.h>

#include <algorithm>
#include <cctype>
#include <vector>

namespace sdps::sasl {

namespace {

response refused(session& s) {
  return response::err(s.can_start_tls() ? "[AUTH] plaintext login is not allowed here: use STLS first"
                                         : "[AUTH] plaintext login is not allowed here: connect with TLS");
}

void wipe(std::string& text) {
  sodium_memzero(text.data(), text.size());
  text.clear();
}

}  // namespace

plain_message::~plain_message() {
  wipe(authzid);
  wipe(authcid);
  wipe(password);
}

std::optional<plain_message> decode_plain(std::string_view base64) {
  std::vector<unsigned char> raw(base64.size() / 4 * 3 + 3);
  std::size_t length = 0;
  const char* end = nullptr;
  if (sodium_base642bin(raw.data(), raw.size(), base64.data(), base64.size(), nullptr, &length, &end,
                        sodium_base64_VARIANT_ORIGINAL) != 0 ||
      end != base64.data() + base64.size()) {
    sodium_memzero(raw.data(), raw.size());
    return std::nullopt;
  }
  const std::string_view text(reinterpret_cast<const char*>(raw.data()), length);
  std::optional<plain_message> out;
  const auto first = text.find('\0');
  const auto second = first == std::string_view::npos ? first : text.find('\0', first + 1);
  if (second != std::string_view::npos && text.find('\0', second + 1) == std::string_view::npos) {
    out.emplace();
    out->authzid = text.substr(0, first);
    out->authcid = text.substr(first + 1, second - first - 1);
    out->password = text.substr(second + 1);
    if (out->authcid.empty() || out->password.empty()) out.reset();
  }
  sodium_memzero(raw.data(), raw.size());
  return out;
}

sasl_module::sasl_module(module_config& config)
    : instance_(config.instance()), domain_(config.server().customer_domain()) {
  if (sodium_init() < 0) throw config_error("module instance '" + instance_ + "': libsodium failed to initialise");
}

std::vector<command_spec> sasl_module::commands() const { return {{"AUTH", pop3_state::authorization}}; }

void sasl_module::start(const registry& services) {
  if (services.in_stage(login_stage::verify).empty())
    throw config_error("module instance '" + instance_ +
                       "' takes logins, but no module of the chain checks passwords (login stage verify: auth)");
}

void sasl_module::capabilities(session& s, std::vector<std::string>& lines) const {
  if (s.state() == pop3_state::authorization && s.plaintext_auth_allowed()) lines.push_back("SASL PLAIN");
}

awaitable<verdict> sasl_module::on_command(session& s, const command& cmd) {
  const auto args = cmd.args();
  if (args.empty())
    co_return verdict::answer(response::ok("SASL mechanisms follow").with_body(std::string("PLAIN\r\n")));
  std::string mechanism(args[0]);
  std::transform(mechanism.begin(), mechanism.end(), mechanism.begin(),
                 [](unsigned char c) { return static_cast<char>(std::toupper(c)); });
  if (mechanism != "PLAIN") co_return verdict::answer(response::err("unsupported SASL mechanism; AUTH lists them"));
  if (args.size() > 2) co_return verdict::answer(response::err("syntax: AUTH PLAIN [initial-response]"));
  if (!s.plaintext_auth_allowed()) co_return verdict::answer(refused(s));

  std::string encoded;
  if (args.size() == 2) {
    // RFC 5034 section 4: "=" is an empty initial response.
    encoded = args[1] == "=" ? std::string() : std::string(args[1]);
  } else {
    auto line = co_await s.continuation("");
    // Too long (the core logged it), or the client left (then nobody
    // reads this): the reply any overlong line gets.
    if (!line) co_return verdict::answer(response::err("line too long (the limit is 512 octets)"));
    encoded = std::move(*line);
    if (encoded == "*") co_return verdict::answer(response::err("AUTH cancelled"));
  }
  const auto message = decode_plain(encoded);
  wipe(encoded);
  if (!message) co_return verdict::answer(response::err("[AUTH] malformed PLAIN response"));

  auto who = pop3::parse_user(message->authcid, domain_);
  if (!who) co_return verdict::answer(response::err("[AUTH] invalid login"));
  if (!message->authzid.empty()) {
    // Acting for another identity is not offered: the authorization
    // identity may only name the authentication identity (in any of its forms).
    const auto as = pop3::parse_user(message->authzid, domain_);
    if (!as || as->host != who->host || as->user != who->user)
      co_return verdict::answer(
          response::err("[AUTH] the authorization identity must be empty or the authentication identity"));
  }
  co_return verdict::login(credentials(std::move(*who), "PLAIN", message->password));
}

}  // namespace sdps::sasl
