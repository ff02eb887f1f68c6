// The merge module's entry point; the logic is in merge.cpp.
#include "merge.hpp"

SDPS_MODULE("merge", "one maildrop over several punts, oldest message first", sdps::merge::merge_module);
