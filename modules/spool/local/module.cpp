// The local_spool module's entry point; its logic is in local_spool.cpp.

#include "local_spool.hpp"

SDPS_MODULE("local_spool", "one punt's spool folder: maildrop locks, snapshots and messages",
            sdps::local::local_spool);
