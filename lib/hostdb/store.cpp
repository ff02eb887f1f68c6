#include "hostdb/store.hpp"

#include "hostdb/file_store.hpp"
#include "hostdb/pg_store.hpp"
#include "hostdb/table.hpp"

#include <libpq-fe.h>

#include <memory>

namespace sdps::hostdb {

std::string location::to_string() const { return type == kind::file ? file.string() : uri; }

location locate(std::string_view hosts, const std::filesystem::path& base) {
  location out;
  if (hosts.empty()) throw std::invalid_argument("'hosts' is empty: give a hosts file or a postgresql:// URI");
  if (hosts.rfind("postgresql://", 0) != 0 && hosts.rfind("postgres://", 0) != 0) {
    out.type = location::kind::file;
    const std::filesystem::path path(hosts);
    out.file = path.is_absolute() ? path : base / path;
    return out;
  }
  out.type = location::kind::postgresql;
  out.uri = std::string(hosts);
  char* error = nullptr;
  const std::unique_ptr<PQconninfoOption, decltype(&PQconninfoFree)> options(PQconninfoParse(out.uri.c_str(), &error),
                                                                             &PQconninfoFree);
  if (!options) {
    std::string why = error ? error : "out of memory";
    if (error) PQfreemem(error);
    while (!why.empty() && (why.back() == '\n' || why.back() == ' ')) why.pop_back();
    throw std::invalid_argument("'hosts' is not a valid PostgreSQL URI: " + why);
  }
  for (const PQconninfoOption* o = options.get(); o->keyword; ++o)
    if (std::string_view(o->keyword) == "password" && o->val && *o->val)
      throw std::invalid_argument(
          "'hosts' holds a database password: remove it from the URI and give it to libpq in ~/.pgpass of the "
          "user sdpsd runs as, in a file named by passfile= in the URI, or by PGPASSFILE");
  return out;
}

std::unique_ptr<host_store> open_store(const location& where, store_options options) {
  if (where.type == location::kind::file) return open_file_store(where.file, std::move(options), where.owner);
  return open_pg_store(where.uri, std::move(options));
}

std::unique_ptr<host_admin> open_admin(const location& where, std::chrono::milliseconds lock_wait) {
  if (where.type == location::kind::file) return open_file_admin(where.file, lock_wait, where.owner);
  return open_pg_admin(where.uri);
}

bool host_admin::set_password(std::string_view name, password_kind which, const std::string& hash) {
  return edit(name, [&](host_record& r) {
           std::string& field = which == password_kind::dialup ? r.dialup_hash : r.pop3_hash;
           if (field == hash) return false;
           field = hash;
           return true;
         }) != edit_outcome::no_host;
}

bool host_admin::set_dialup(std::string_view name, const std::vector<prefix>& dialup) {
  return edit(name, [&](host_record& r) {
           const bool same = r.dialup.size() == dialup.size() &&
                             std::equal(r.dialup.begin(), r.dialup.end(), dialup.begin(),
                                        [](const prefix& a, const prefix& b) {
                                          return a == b;
                                        });
           if (same) return false;
           r.dialup = dialup;
           return true;
         }) != edit_outcome::no_host;
}

// ---------------------------------------------------------------------------
// host_finder

// The version of the hosts file last read, and its table.
class host_finder::file_version {
 public:
  file_version(std::filesystem::path file, std::optional<uid_t> owner) : file_(std::move(file)), owner_(owner) {}

  // Reads the file again when its stamp has changed. Throws as
  // host_table::read() and check_place() do.
  const host_table& current() {
    check_place(file_, owner_);
    const file_stamp now = stamp(file_);
    if (!table_ || now != table_->stamp()) table_ = std::make_unique<host_table>(host_table::read(file_));
    return *table_;
  }

 private:
  const std::filesystem::path file_;
  const std::optional<uid_t> owner_;
  std::unique_ptr<host_table> table_;
};

host_finder::host_finder(location where) : where_(std::move(where)) {}

host_finder::~host_finder() = default;

lookup_result host_finder::find(std::string_view host) {
  std::lock_guard guard(mutex_);
  lookup_result out;
  try {
    std::optional<host_record> record;
    if (where_.type == location::kind::file) {
      if (!file_) file_ = std::make_unique<file_version>(where_.file, where_.owner);
      record = file_->current().find(host);
    } else {
      if (!admin_) admin_ = open_admin(where_);
      record = admin_->find(host);
    }
    out.status = record ? lookup_status::found : lookup_status::unknown;
    if (record) out.record = std::move(*record);
  } catch (const malformed_row& e) {
    out.status = lookup_status::malformed;
    out.detail = e.what();
  } catch (const store_unavailable& e) {
    admin_.reset();  // connect again at the next look-up
    out.status = lookup_status::unavailable;
    out.detail = e.what();
  } catch (const std::exception& e) {  // the file cannot be read, or is insecure
    out.status = lookup_status::unavailable;
    out.detail = e.what();
  }
  return out;
}

}  // namespace sdps::hostdb
