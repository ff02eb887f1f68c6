#include "line_reader.hpp"

#include <sodium.h>

namespace sdps::core {

std::size_t line_reader::feed(std::string_view bytes) {
  // Octets allowed before the LF: with the LF the line is at most limit_.
  const std::size_t cap = limit_ - 1;
  std::size_t used = 0;
  while (used < bytes.size() && ready_ == ready::none) {
    const std::string_view rest = bytes.substr(used);
    const std::size_t lf = rest.find('\n');
    const bool complete = lf != std::string_view::npos;
    const std::string_view piece = rest.substr(0, complete ? lf : rest.size());
    if (discarding_) {
      used += piece.size() + (complete ? 1 : 0);
      discarding_ = !complete;
      continue;
    }
    if (partial_.size() + piece.size() > cap) {
      used += piece.size() + (complete ? 1 : 0);
      sodium_memzero(partial_.data(), partial_.size());
      partial_.clear();
      discarding_ = !complete;
      ready_ = ready::overlong;
      break;
    }
    partial_.append(piece);
    used += piece.size();
    if (!complete) break;
    ++used;
    if (!partial_.empty() && partial_.back() == '\r') partial_.pop_back();
    sodium_memzero(line_.data(), line_.size());
    line_.swap(partial_);
    partial_.clear();
    ready_ = ready::line;
  }
  return used;
}

line_reader::status line_reader::next() {
  const ready r = ready_;
  ready_ = ready::none;
  switch (r) {
    case ready::line: return status::line;
    case ready::overlong: return status::overlong;
    case ready::none: break;
  }
  return status::need_more;
}

void line_reader::wipe() {
  sodium_memzero(line_.data(), line_.size());
  sodium_memzero(partial_.data(), partial_.size());
  line_.clear();
}

void line_reader::reset() {
  wipe();
  partial_.clear();
  discarding_ = false;
  ready_ = ready::none;
}

}  // namespace sdps::core
