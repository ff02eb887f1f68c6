// The `auth` module's entry point; the logic is in auth_module.cpp (a
// library the unit tests link too).

#include "auth_module.hpp"

SDPS_MODULE("auth", "USER/PASS against the host database (Argon2id)", sdps::auth::auth_module);
