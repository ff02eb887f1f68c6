// The remote_spool module's entry point; its logic is in remote_spool.cpp.

#include "remote_spool.hpp"

SDPS_MODULE("remote_spool", "one punt served by a remote back end: locks, snapshots and messages over the network",
            sdps::remote::remote_spool);
