// The commands module's entry point; the logic is in commands.cpp.
#include "commands.hpp"

SDPS_MODULE("commands", "RFC 1939 commands and RFC 2449 CAPA", sdps::commands::commands_module);
