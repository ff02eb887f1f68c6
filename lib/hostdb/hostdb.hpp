#pragma once
// The host database: customer hosts, their dialup addresses and their two
// Argon2id password hashes. Shared by the auth module and the admin tool.
//
// One header for all of it:
//   record.hpp    a host's record, host names, the hosts as a map
//   file.hpp      the hosts file: parse, format, load, save, edit
//   password.hpp  Argon2id hashes and costs, wiped secrets
//   store.hpp     the host store (a file or PostgreSQL) behind `hosts:`

#include "hostdb/file.hpp"
#include "hostdb/password.hpp"
#include "hostdb/record.hpp"
