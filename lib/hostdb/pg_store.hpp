#pragma once
// The host store in PostgreSQL (store.hpp), on libpq: the schema
// (schema.sql), lookups on a small pool of non-blocking connections driven
// by Asio on the store's own thread, LISTEN for changes, and the blocking
// admin operations. docs/hoststore.md.

#include "hostdb/store.hpp"

#include <string_view>

namespace sdps::hostdb {

/// The PostgreSQL store for `uri` (already checked by locate()). Starts
/// the store's thread and connects in the background.
std::unique_ptr<host_store> open_pg_store(const std::string& uri, store_options options);

/// `sdps host ...` on the database at `uri`: one blocking connection,
/// made here (throws store_unavailable when it cannot be).
std::unique_ptr<host_admin> open_pg_admin(const std::string& uri);

/// The text of schema.sql, as `init` runs it.
std::string_view schema_sql();

}  // namespace sdps::hostdb
