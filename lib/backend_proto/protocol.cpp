#include "backend_proto/protocol.hpp"

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

bool plain_decimal(std::string_view text) {
  return !text.empty() && text.size() <= 19 &&
         std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; });
}

std::uint64_t decimal(std::string_view text) {
  std::uint64_t value = 0;
  for (char c : text) value = value * 10 + static_cast<std::uint64_t>(c - '0');
  return value;
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
  const int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) {
    const int error = errno;
    throw config_error(what + " cannot be read (" + std::strerror(error) +
                       (error == ENOENT ? "); make one with: umask 077; head -c 32 /dev/urandom > " + file.string()
                                        : ")"));
  }
  struct closer {
    int fd;
    ~closer() { ::close(fd); }
  } guard{fd};
  struct stat st {};
  if (::fstat(fd, &st) != 0) throw config_error(what + ": " + std::strerror(errno));
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
    const ssize_t n = ::read(fd, contents.data() + have, contents.size() - have);
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
  std::array<std::string_view, 4> field;
  std::size_t n = 0;
  while (!line.empty()) {
    const auto space = line.find(' ');
    if (n == field.size()) return std::nullopt;
    field[n++] = line.substr(0, space);
    if (space == std::string_view::npos) break;
    line.remove_prefix(space + 1);
    if (line.empty()) return std::nullopt;  // trailing space
  }
  if (n != field.size()) return std::nullopt;
  const std::string_view uidl = field[1];
  if (uidl.empty() || uidl.size() > 70) return std::nullopt;
  for (char c : uidl)
    if (c <= 0x20 || c >= 0x7f) return std::nullopt;
  if (!plain_decimal(field[0]) || !plain_decimal(field[2]) || !plain_decimal(field[3])) return std::nullopt;
  listing_entry out;
  out.number = static_cast<std::size_t>(decimal(field[0]));
  if (out.number == 0) return std::nullopt;
  out.uidl.assign(uidl);
  out.size = decimal(field[2]);
  const std::uint64_t arrival = decimal(field[3]);
  if (arrival > static_cast<std::uint64_t>(INT64_MAX)) return std::nullopt;
  out.arrival = static_cast<std::int64_t>(arrival);
  return out;
}

// -- unstuffer -----------------------------------------------------------------------

unstuffer::step unstuffer::feed(std::string_view in, std::span<char> out) {
  step r;
  auto emit = [&](char c) { out[r.produced++] = c; };
  while (r.consumed < in.size() && state_ != state::done) {
    const char c = in[r.consumed];
    switch (state_) {
      case state::line_start:
        if (c == '.') {
          state_ = state::after_dot;
          ++r.consumed;
          continue;
        }
        if (r.produced == out.size()) return r;
        emit(c);
        state_ = c == '\n' ? state::line_start : state::mid_line;
        break;
      case state::mid_line: {
        // The bulk of a message: copy up to the end of the line at once.
        const std::size_t room = out.size() - r.produced;
        if (room == 0) return r;
        const std::size_t avail = std::min(room, in.size() - r.consumed);
        const char* from = in.data() + r.consumed;
        const void* eol = std::memchr(from, '\n', avail);
        const std::size_t n = eol ? static_cast<std::size_t>(static_cast<const char*>(eol) - from) + 1 : avail;
        std::memcpy(out.data() + r.produced, from, n);
        r.produced += n;
        r.consumed += n;
        if (eol) state_ = state::line_start;
        continue;
      }
      case state::after_dot:
        if (c == '\r') {
          state_ = state::after_dot_cr;
          ++r.consumed;
          continue;
        }
        if (c == '\n') {  // a bare ".\n": tolerated as the terminator
          state_ = state::done;
          ++r.consumed;
          continue;
        }
        // A stuffed line: the dot is dropped, the octet kept.
        if (r.produced == out.size()) return r;
        emit(c);
        state_ = state::mid_line;
        break;
      case state::after_dot_cr:
        if (c == '\n') {
          state_ = state::done;
          ++r.consumed;
          continue;
        }
        // ".\r" followed by something else: not the terminator, and not
        // what a conforming server sends; keep the octets after the dot
        // (this one is looked at again as part of the line).
        if (r.produced == out.size()) return r;
        emit('\r');
        state_ = state::mid_line;
        continue;
      case state::done:
        break;
    }
    ++r.consumed;
  }
  return r;
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

std::optional<address> parse_address(std::string_view text) {
  address out;
  std::string_view port;
  if (!text.empty() && text.front() == '[') {
    const auto close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':') return std::nullopt;
    out.host.assign(text.substr(1, close - 1));
    port = text.substr(close + 2);
  } else {
    const auto colon = text.rfind(':');
    if (colon == std::string_view::npos || text.find(':') != colon) return std::nullopt;
    out.host.assign(text.substr(0, colon));
    port = text.substr(colon + 1);
  }
  if (out.host.empty() || !plain_decimal(port) || port.size() > 5) return std::nullopt;
  const auto number = decimal(port);
  if (number == 0 || number > 65535) return std::nullopt;
  out.port.assign(port);
  return out;
}

lock_status pass_outcome(bool positive, std::string_view text) {
  if (positive) return lock_status::acquired;
  return pop3::code_of(text) == pop3::response_code::in_use ? lock_status::in_use : lock_status::unavailable;
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
