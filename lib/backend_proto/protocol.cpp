#include "backend_proto/protocol.hpp"

#include "base/descriptor.hpp"
#include "pop3/response_code.hpp"

#include <sdps/settings.hpp>

#include <sodium.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <sstream>

namespace sdps::backend_proto {

namespace {

constexpr std::string_view proof_label = "sdps-xauth-1 ";
constexpr std::string_view hex_digits = "0123456789abcdef";

void ensure_sodium() {
  if (sodium_init() < 0) throw std::runtime_error("libsodium failed to initialise");
}

std::string to_hex(const unsigned char* data, std::size_t size) {
  std::string out(size * 2, '0');
  for (std::size_t i = 0; i < size; ++i) {
    out[2 * i] = hex_digits[data[i] >> 4];
    out[2 * i + 1] = hex_digits[data[i] & 15];
  }
  return out;
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;  // upper case too: a proof is lower-case hex (docs/backend-protocol.md)
}

/// 64 lower-case hex digits into 32 octets.
bool from_hex32(std::string_view text, std::array<unsigned char, 32>& out) {
  if (text.size() != 64) return false;
  for (std::size_t i = 0; i < 32; ++i) {
    const int hi = hex_value(text[2 * i]);
    const int lo = hex_value(text[2 * i + 1]);
    if (hi < 0 || lo < 0) return false;
    out[i] = static_cast<unsigned char>(hi << 4 | lo);
  }
  return true;
}

std::array<unsigned char, 32> raw_proof(const backend_secret& secret, role side, std::string_view server_nonce,
                                        std::string_view frontend_nonce, std::string_view punt) {
  std::string message(proof_label);
  message += side == role::frontend ? "frontend " : "backend ";
  message += server_nonce;
  message += ' ';
  message += frontend_nonce;
  message += ' ';
  message += punt;
  std::array<unsigned char, 32> out{};
  crypto_generichash(out.data(), out.size(), reinterpret_cast<const unsigned char*>(message.data()),
                     message.size(), secret.key().data(), secret.key().size());
  return out;
}

/// The contents with trailing white space dropped, checked for length,
/// then hashed into a key. Wipes `contents`.
void derive(std::string& contents, const std::string& what, std::array<unsigned char, backend_secret::key_size>& key) {
  std::size_t length = contents.size();
  while (length > 0 && std::strchr("\r\n \t", contents[length - 1]) != nullptr) --length;
  if (length < backend_secret::min_octets || length > backend_secret::max_octets) {
    sodium_memzero(contents.data(), contents.size());
    throw config_error(what + " must hold between " + std::to_string(backend_secret::min_octets) + " and " +
                       std::to_string(backend_secret::max_octets) + " octets (it holds " + std::to_string(length) +
                       "); make one with: umask 077; head -c 32 /dev/urandom > FILE");
  }
  crypto_generichash(key.data(), key.size(), reinterpret_cast<const unsigned char*>(contents.data()), length,
                     nullptr, 0);
  sodium_memzero(contents.data(), contents.size());
}

}  // namespace

// -- backend_secret ------------------------------------------------------------

backend_secret::~backend_secret() { sodium_memzero(key_.data(), key_.size()); }

std::shared_ptr<const backend_secret> backend_secret::from_contents(std::string contents) {
  ensure_sodium();
  std::shared_ptr<backend_secret> secret(new backend_secret());
  derive(contents, "the front-end secret", secret->key_);
  return secret;
}

std::shared_ptr<const backend_secret> backend_secret::load(const std::filesystem::path& file,
                                                           const std::string& where, logger& log) {
  ensure_sodium();
  const std::string what = where + ": the front-end secret file " + file.string();
  const base::unique_fd fd(::open(file.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY));
  if (!fd.valid()) {
    const int error = errno;
    throw config_error(what + " cannot be read (" + std::strerror(error) +
                       (error == ENOENT ? "); make one with: umask 077; head -c 32 /dev/urandom > " + file.string()
                                        : ")"));
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) throw config_error(what + ": " + std::strerror(errno));
  if (!S_ISREG(st.st_mode)) throw config_error(what + " is not a regular file");
  if (st.st_mode & (S_IROTH | S_IWOTH)) {
    std::ostringstream mode;
    mode << std::oct << (st.st_mode & 07777);
    throw config_error(what + " is readable or writable by every user (mode 0" + mode.str() +
                       "); make it private: chmod 600 " + file.string());
  }
  if (st.st_mode & (S_IRGRP | S_IWGRP))
    log.warning(file.string(), ": the front-end secret is accessible to the file's group; chmod 600 it unless "
                               "that group is only sdps");

  std::string contents(max_octets + 64, '\0');
  std::size_t have = 0;
  for (;;) {
    const ssize_t n = ::read(fd.get(), contents.data() + have, contents.size() - have);
    if (n < 0) {
      if (errno == EINTR) continue;
      const int error = errno;
      sodium_memzero(contents.data(), contents.size());
      throw config_error(what + " cannot be read (" + std::strerror(error) + ")");
    }
    if (n == 0) break;
    have += static_cast<std::size_t>(n);
    if (have == contents.size()) break;  // too long: derive() refuses it
  }
  std::string exact(contents.data(), have);
  sodium_memzero(contents.data(), contents.size());
  std::shared_ptr<backend_secret> secret(new backend_secret());
  derive(exact, what, secret->key_);
  return secret;
}

// -- nonces and proofs ------------------------------------------------------------

std::string new_nonce() {
  ensure_sodium();
  std::array<unsigned char, nonce_hex_size / 2> random{};
  randombytes_buf(random.data(), random.size());
  return to_hex(random.data(), random.size());
}

bool valid_nonce(std::string_view text) {
  return text.size() == nonce_hex_size &&
         std::all_of(text.begin(), text.end(), [](char c) { return hex_digits.find(c) != std::string_view::npos; });
}

std::string proof(const backend_secret& secret, role side, std::string_view server_nonce,
                  std::string_view frontend_nonce, std::string_view punt) {
  auto raw = raw_proof(secret, side, server_nonce, frontend_nonce, punt);
  std::string out = to_hex(raw.data(), raw.size());
  sodium_memzero(raw.data(), raw.size());
  return out;
}

bool verify_proof(const backend_secret& secret, role side, std::string_view server_nonce,
                  std::string_view frontend_nonce, std::string_view punt, std::string_view received) {
  std::array<unsigned char, 32> given{};
  if (!from_hex32(received, given)) return false;
  auto expected = raw_proof(secret, side, server_nonce, frontend_nonce, punt);
  const bool same = crypto_verify_32(expected.data(), given.data()) == 0;
  sodium_memzero(expected.data(), expected.size());
  return same;
}

// -- XLIST ---------------------------------------------------------------------------

std::string format_listing(const listing_entry& entry) {
  return std::to_string(entry.number) + " " + entry.uidl + " " + std::to_string(entry.size) + " " +
         std::to_string(entry.arrival);
}

std::optional<listing_entry> parse_listing(std::string_view line) {
  // One pass, no copies but the UIDL's: a front end parses one of these
  // for every message at every login.
  std::size_t at = 0;
  const auto number = [&](std::uint64_t& value) {
    const std::size_t start = at;
    value = 0;
    while (at < line.size() && line[at] >= '0' && line[at] <= '9') {
      if (at - start == 19) return false;  // at most 19 digits: no overflow
      value = value * 10 + static_cast<std::uint64_t>(line[at] - '0');
      ++at;
    }
    return at > start;
  };
  const auto space = [&] {
    if (at >= line.size() || line[at] != ' ') return false;
    ++at;
    return true;
  };
  std::uint64_t number_value = 0, size = 0, arrival = 0;
  if (!number(number_value) || number_value == 0 || !space()) return std::nullopt;
  const std::size_t uidl_start = at;
  while (at < line.size() && line[at] > 0x20 && line[at] < 0x7f) ++at;
  const std::size_t uidl_size = at - uidl_start;
  if (uidl_size == 0 || uidl_size > 70 || !space()) return std::nullopt;
  if (!number(size) || !space() || !number(arrival) || at != line.size()) return std::nullopt;
  if (arrival > static_cast<std::uint64_t>(INT64_MAX)) return std::nullopt;
  listing_entry out;
  out.number = static_cast<std::size_t>(number_value);
  out.uidl.assign(line.substr(uidl_start, uidl_size));
  out.size = size;
  out.arrival = static_cast<std::int64_t>(arrival);
  return out;
}

// -- body_scanner ----------------------------------------------------------------------

namespace {

enum class verdict_at { yes, no, undecided };

/// Whether the line starting at in[pos] is the terminator.
verdict_at terminator_at(std::string_view in, std::size_t pos) {
  constexpr std::string_view terminator = ".\r\n";
  for (std::size_t i = 0; i < terminator.size(); ++i) {
    if (pos + i >= in.size()) return verdict_at::undecided;
    if (in[pos + i] != terminator[i]) return verdict_at::no;
  }
  return verdict_at::yes;
}

}  // namespace

body_scanner::result body_scanner::scan(std::string_view in, std::size_t limit) {
  constexpr std::string_view candidate = "\n.\r\n";  // a line end, then the terminator
  std::size_t pos = 0;
  for (;;) {
    if (at_line_start_) {
      const verdict_at here = terminator_at(in, pos);
      if (here == verdict_at::yes) return {pos, true};
      if (here == verdict_at::undecided) return {pos, false};
      // An ordinary line (a stuffed one too): body to its end.
      at_line_start_ = false;
    }
    if (pos >= limit || pos >= in.size()) return {pos, false};
    // Inside a line: the only thing to find is a line end followed by the
    // terminator, so the bulk of a message costs one memmem and no more.
    const std::size_t stop = std::min(in.size(), limit);
    const std::string_view region = in.substr(pos, stop - pos);
    const void* hit = ::memmem(region.data(), region.size(), candidate.data(), candidate.size());
    if (hit) {
      pos += static_cast<std::size_t>(static_cast<const char*>(hit) - region.data()) + 1;
      at_line_start_ = true;
      continue;
    }
    // None whole before `stop`; one may begin after a line end among the
    // last octets and go on beyond: look at that line start with all the
    // input there is. (Each round starts further on, so this ends.)
    std::size_t open = stop;
    for (std::size_t j = stop > pos + 3 ? stop - 3 : pos; j < stop; ++j)
      if (in[j] == '\n' && candidate.substr(1).starts_with(in.substr(j + 1, stop - j - 1))) {
        open = j + 1;
        break;
      }
    pos = open;
    at_line_start_ = open < stop || in[stop - 1] == '\n';
  }
}

// -- small parsers ---------------------------------------------------------------------

std::optional<challenge> parse_challenge(std::string_view text) {
  const auto space = text.find(' ');
  if (space == std::string_view::npos) return std::nullopt;
  challenge out;
  out.nonce.assign(text.substr(0, space));
  std::string_view punt = text.substr(space + 1);
  const auto end = punt.find(' ');
  if (end != std::string_view::npos) punt = punt.substr(0, end);
  if (!valid_nonce(out.nonce) || punt.empty()) return std::nullopt;
  out.punt.assign(punt);
  return out;
}

lock_status pass_outcome(bool positive, std::string_view text) {
  if (positive) return lock_status::acquired;
  return pop3::code_of(text) == pop3::response_code::in_use ? lock_status::in_use : lock_status::unavailable;
}

bool same_word(std::string_view text, std::string_view word) {
  if (text.size() != word.size()) return false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const auto lower = [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; };
    if (lower(text[i]) != lower(word[i])) return false;
  }
  return true;
}

std::string format_update(const removal_result& result) {
  return std::to_string(result.removed) + " " + std::to_string(result.failed);
}

std::optional<removal_result> parse_update(std::string_view status_text) {
  // Two fields of at most 19 digits (no overflow), separated by one space.
  auto number = [](std::string_view& text) -> std::optional<std::size_t> {
    std::size_t n = 0;
    std::size_t digits = 0;
    while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9') {
      if (digits == 19) return std::nullopt;
      n = n * 10 + static_cast<std::size_t>(text[digits] - '0');
      ++digits;
    }
    if (digits == 0) return std::nullopt;
    text.remove_prefix(digits);
    return n;
  };
  std::string_view rest = status_text;
  const auto removed = number(rest);
  if (!removed || !rest.starts_with(' ')) return std::nullopt;
  rest.remove_prefix(1);
  const auto failed = number(rest);
  if (!failed || !(rest.empty() || rest.front() == ' ')) return std::nullopt;
  return removal_result{*removed, *failed};
}

}  // namespace sdps::backend_proto
