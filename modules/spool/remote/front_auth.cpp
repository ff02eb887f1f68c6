#include "front_auth.hpp"

namespace sdps::remote {

awaitable<status> greet(std::shared_ptr<backend_link> link) {
  co_await link->open();
  co_return link->greeting();
}

awaitable<void> authenticate(std::shared_ptr<backend_link> link, std::shared_ptr<const backend_secret> secret,
                             status greeting, std::vector<std::string> more) {
  const std::string& punt = link->options().punt;
  // No turn to take: nobody else holds a link that is being opened.
  if (!greeting.positive) throw link->failure("the back end refused the connection: " + printable(greeting.text));
  auto challenge = parse_challenge(greeting.text);
  if (!challenge) {
    std::vector<std::string> ask{"XAUTH"};
    co_await link->send(std::move(ask));
    const status offered = co_await link->read_status();
    if (!offered.positive) throw link->failure("XAUTH refused: " + printable(offered.text));
    challenge = parse_challenge(offered.text);
    if (!challenge)
      throw link->failure("not an sdps back end (XAUTH answered '" + printable(offered.text, 80) + "')");
  }
  if (challenge->punt != punt)
    throw link->failure("the back end serves punt '" + printable(challenge->punt, 40) + "', not '" + punt +
                        "': check this instance's 'backend:'");

  const std::string nonce = new_nonce();
  std::vector<std::string> lines{"XAUTH " + nonce + " " + proof(*secret, role::frontend, challenge->nonce, nonce, punt)};
  for (auto& line : more) lines.push_back(std::move(line));
  co_await link->send(std::move(lines));

  const status accepted = co_await link->read_status();
  if (!accepted.positive)
    throw link->failure("the back end refused this front end's proof (" + printable(accepted.text) +
                        "): both must read the same front-end secret");
  const std::string answer = accepted.text.substr(0, accepted.text.find(' '));
  if (!verify_proof(*secret, role::backend, challenge->nonce, nonce, punt, answer))
    throw link->failure("the back end's proof is wrong: it does not hold the front-end secret");
}

awaitable<capabilities> read_capabilities(std::shared_ptr<backend_link> link) {
  capabilities out;
  const status reply = co_await link->read_status();
  if (!reply.positive) co_return out;
  out.answered = true;
  const std::string_view listing = co_await link->read_block(short_reply_limit);
  bool resettable = false;
  const auto look = [&resettable](std::string_view line) {
    if (same_word(line.substr(0, line.find(' ')), reset_capability)) resettable = true;
  };
  for_each_line(listing, look);
  out.resettable = resettable;
  co_return out;
}

}  // namespace sdps::remote
