// The `sasl` module's entry point; the logic is in sasl.cpp (a library the
// unit tests link too).

#include "sasl.hpp"

SDPS_MODULE("sasl", "SASL AUTH PLAIN (RFC 5034), finished by auth as PASS", sdps::sasl::sasl_module);
