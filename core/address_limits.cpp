#include "address_limits.hpp"

namespace sdps::core {

asio::ip::address address_limits::canonical(const asio::ip::address& a) {
  if (a.is_v6() && a.to_v6().is_v4_mapped()) return asio::ip::make_address_v4(asio::ip::v4_mapped, a.to_v6());
  return a;
}

bool address_limits::take(const asio::ip::address& a, bool& first_refusal, bool limited) {
  entry& e = table_[a];
  if (limited && max_ != 0 && e.sessions >= max_) {
    first_refusal = !e.refusal_logged;
    e.refusal_logged = true;
    return false;
  }
  ++e.sessions;
  return true;
}

void address_limits::give_back(const asio::ip::address& a) {
  const auto it = table_.find(a);
  if (it == table_.end()) return;
  if (it->second.sessions > 0) --it->second.sessions;
  if (it->second.sessions == 0)
    table_.erase(it);  // also forgets refusal_logged: the next flood is logged again
  else if (max_ == 0 || it->second.sessions < max_)
    it->second.refusal_logged = false;
}

std::unique_ptr<address_limits::ticket> address_limits::admit(const asio::ip::address& address,
                                                              bool& first_refusal, bool limited) {
  first_refusal = false;
  const auto a = canonical(address);
  std::lock_guard guard(mutex_);
  if (!take(a, first_refusal, limited)) {
    // An entry made only to remember the refusal must not outlive the sessions.
    if (table_[a].sessions == 0) table_.erase(a);
    return nullptr;
  }
  return std::make_unique<ticket>(*this, a);
}

std::size_t address_limits::count(const asio::ip::address& address) const {
  std::lock_guard guard(mutex_);
  const auto it = table_.find(canonical(address));
  return it == table_.end() ? 0 : it->second.sessions;
}

address_limits::ticket::~ticket() {
  std::lock_guard guard(table_->mutex_);
  table_->give_back(address_);
}

bool address_limits::ticket::rekey(const asio::ip::address& real) {
  const auto a = canonical(real);
  if (a == address_) return true;
  std::lock_guard guard(table_->mutex_);
  bool ignored = false;
  if (!table_->take(a, ignored)) return false;
  table_->give_back(address_);
  address_ = a;
  return true;
}

}  // namespace sdps::core
