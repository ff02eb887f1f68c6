// The extensions module's entry point; the logic is in extensions.cpp.
#include "extensions.hpp"

SDPS_MODULE("extensions", "SDPS's LAST (RFC 1460) and *ENV commands", sdps::extensions::extensions_module);
