#include "hostdb/record.hpp"

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <utility>

namespace sdps::hostdb {

namespace {

namespace ip = boost::asio::ip;

char lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

std::string lowered(std::string_view text) {
  std::string out(text);
  for (char& c : out) c = lower(c);
  return out;
}

}  // namespace

bool host_record::dialup_from(const ip::address& a) const { return base::contains(dialup, a); }

// --- names ------------------------------------------------------------------

std::string normalise_host(std::string_view text, std::string_view customer_domain) {
  std::string name = lowered(text);
  if (!customer_domain.empty()) {
    const std::string suffix = std::string(".").append(lowered(customer_domain));
    if (name.size() > suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0)
      name.resize(name.size() - suffix.size());
  }
  if (name.empty() || name.size() > 63 || name.front() == '-' || name.back() == '-') return {};
  for (char c : name)
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) return {};
  return name;
}

// --- database -----------------------------------------------------------------

const host_record* database::find(std::string_view name) const {
  const auto it = hosts_.find(name);
  return it == hosts_.end() ? nullptr : &it->second;
}

host_record* database::find(std::string_view name) {
  const auto it = hosts_.find(name);
  return it == hosts_.end() ? nullptr : &it->second;
}

bool database::add(host_record record) {
  std::string name = record.name;
  return hosts_.emplace(std::move(name), std::move(record)).second;
}

bool database::remove(std::string_view name) {
  const auto it = hosts_.find(name);
  if (it == hosts_.end()) return false;
  hosts_.erase(it);
  return true;
}

}  // namespace sdps::hostdb
