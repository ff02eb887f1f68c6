// The backend_listing module's entry point; its logic is in backend_listing.cpp.

#include "backend_listing.hpp"

SDPS_MODULE("backend_listing", "back end: XLIST (the whole maildrop in one reply) and XREAD for front ends",
            sdps::backend::backend_listing);
