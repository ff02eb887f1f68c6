// The lock module's entry point; the logic is in lock.cpp.
#include "lock.hpp"

SDPS_MODULE("lock", "takes the session's maildrop lock on every punt, in punt-name order", sdps::lock::lock_module);
