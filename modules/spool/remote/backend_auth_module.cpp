// The backend_auth module's entry point; its logic is in backend_auth.cpp.

#include "backend_auth.hpp"

SDPS_MODULE("backend_auth", "back end: front ends authenticate with XAUTH (shared secret), then act for a login",
            sdps::backend::backend_auth);
