#pragma once
/// @file
/// Binary compatibility between sdpsd and loadable modules.
///
/// A module is a shared object exporting `sdps_module_entry` (type
/// sdps_module_info) and `sdps_module_signature` (a marker string). sdpsd
/// reads the marker from the file before dlopen, then, once loaded, checks
/// `abi_version` (the struct's first member never moves) and
/// `build_signature` again, and only then calls `create`. Each mismatch is
/// refused with one line that names both sides. Use SDPS_MODULE() rather
/// than filling these in by hand.

#include <boost/version.hpp>
#include <cstdint>

/// Bumped whenever a public header changes in a way that breaks modules.
/// 2: body_source::size(); server_context::metrics() (sdps/metrics.hpp); in
///    the same release (no module was built for a released 2 without them):
///    session::secure(), can_start_tls(), start_tls(),
///    plaintext_auth_allowed(), continuation(), verdict::next_as().
/// 3: sessions run on several event loop threads at once (`threads:`):
///    module instances are shared between threads and must be thread-safe
///    (docs/modules.md); metrics::counter() and counter_handle.
/// 4: module::events() (the events an instance is called for).
/// 5: logins are the core's (sdps/login.hpp): verdict::login(), the login
///    stages (module::login_stages(), on_login(), undo_login()); the
///    session's identity set once (session::login() is const) and its
///    maildrop and marks in the session (session::maildrop(), marks());
///    maildrop::retrieve(index, retrieval) replaces retrieve + mark_read,
///    remove(indexes) replaces remove_deleted(); spool::lock(), open()
///    take the identity; typed slot keys (slot_key<T>); events() and
///    login_stages() default to none; module::check(); registry::instances();
///    session::end_login() and event::logout (a login ended, the session
///    goes on); body_source::stuffed() (a relayed body sent as it is);
///    module_config::declare_role(); module::reconfigure() (SIGHUP applies
///    changed settings a module accepts live), and check() runs as the
///    configured `user:`; spool::make_probe() and punt_probe
///    (background health probes, `sdps status`), spool::sessions() and
///    session_count; body_source::read_now() (what is ready, without a
///    coroutine); command::args() returns sdps::words (no heap).
///    Gone: verdict::next_as(), event::command_failed, password_verifier,
///    maildrop_source::current(), session::enter() (enter_update() remains).
#define SDPS_ABI_VERSION 5

#define SDPS_STR2_(x) #x
#define SDPS_STR_(x) SDPS_STR2_(x)

#if defined(__SANITIZE_ADDRESS__)
#define SDPS_ABI_SANITIZE_ "+asan"
#elif defined(__SANITIZE_THREAD__)
#define SDPS_ABI_SANITIZE_ "+tsan"
#else
#define SDPS_ABI_SANITIZE_ ""
#endif

#if defined(_GLIBCXX_USE_CXX11_ABI) && _GLIBCXX_USE_CXX11_ABI
#define SDPS_ABI_LIBCXX_ "cxx11"
#else
#define SDPS_ABI_LIBCXX_ "cxx98"
#endif

/// Everything besides the API version that must match for two objects to
/// share C++ types: compiler family and major version, standard library ABI,
/// Boost version (Asio's coroutine frames cross the boundary), sanitizers.
#define SDPS_BUILD_SIGNATURE                                          \
  "sdps-abi-" SDPS_STR_(SDPS_ABI_VERSION) " gcc-" SDPS_STR_(__GNUC__) \
  " " SDPS_ABI_LIBCXX_ " boost-" SDPS_STR_(BOOST_VERSION) SDPS_ABI_SANITIZE_

namespace sdps {
class module;
class module_config;
}  // namespace sdps

extern "C" {

/// What a module's shared object exports as `sdps_module_entry`.
struct sdps_module_info {
  std::uint32_t abi_version;    ///< SDPS_ABI_VERSION the module was built with
  const char* build_signature;  ///< SDPS_BUILD_SIGNATURE the module was built with
  const char* name;             ///< module name, as written after `module:` in YAML
  const char* summary;          ///< one line for `sdpsd --check` and logs
  /// Builds one instance from its validated settings. Called once per YAML
  /// entry at start-up, on the main thread. Throws sdps::config_error (or any
  /// std::exception) to refuse the configuration.
  sdps::module* (*create)(sdps::module_config& config);
};
}

/// The marker sdpsd reads from a module's file BEFORE loading it, so that a
/// module from an incompatible build (another ABI, or with sanitizers into
/// a binary without them, which would abort the process inside dlopen) is
/// refused with a message instead. SDPS_MODULE() emits it; the format is
/// "sdps-module-signature:abi=N;build=SIGNATURE" followed by a NUL.
#define SDPS_MODULE_SIGNATURE_MARKER "sdps-module-signature:"
#define SDPS_MODULE_SIGNATURE(ABI, BUILD)                                          \
  extern "C" __attribute__((used, visibility("default"))) const char              \
      sdps_module_signature[] = SDPS_MODULE_SIGNATURE_MARKER "abi=" SDPS_STR_(ABI) ";build=" BUILD

/// Defines the module's entry point. TYPE must be a subclass of sdps::module
/// constructible from `sdps::module_config&`.
#define SDPS_MODULE(NAME, SUMMARY, TYPE)                                              \
  SDPS_MODULE_SIGNATURE(SDPS_ABI_VERSION, SDPS_BUILD_SIGNATURE);                      \
  extern "C" __attribute__((visibility("default"))) const sdps_module_info            \
      sdps_module_entry = {SDPS_ABI_VERSION, SDPS_BUILD_SIGNATURE, NAME, SUMMARY,      \
                           [](sdps::module_config& c) -> sdps::module* { return new TYPE(c); }}
