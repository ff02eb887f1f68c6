# What `cmake --install` puts where, by GNUInstallDirs (included from the
# top-level CMakeLists.txt). For the prefix /usr, GNUInstallDirs makes the
# full sysconfdir /etc and localstatedir /var, as Debian expects.

# --- configs (/etc/sdps/*.yaml, their paths pointed at the state
# folders), state folders and systemd units. Worked out when installing,
# not when configuring, so `cmake --install --prefix /usr` (with DESTDIR
# staging) gives /etc and /var as GNUInstallDirs does for /usr.
set(SDPS_SYSTEMD_UNIT_DIR "" CACHE PATH "Where the systemd units go (default: /lib/systemd/system for the prefix /usr)")
install(CODE "
  set(SDPS_SOURCE_DIR \"${CMAKE_SOURCE_DIR}\")
  set(SDPS_BINARY_DIR \"${CMAKE_BINARY_DIR}\")
  set(SDPS_SYSCONFDIR \"${CMAKE_INSTALL_SYSCONFDIR}\")
  set(SDPS_LOCALSTATEDIR \"${CMAKE_INSTALL_LOCALSTATEDIR}\")
  set(SDPS_SBINDIR \"${CMAKE_INSTALL_SBINDIR}\")
  set(SDPS_BINDIR \"${CMAKE_INSTALL_BINDIR}\")
  set(SDPS_INSTALL_USER \"${SDPS_INSTALL_USER}\")
  set(SDPS_INSTALL_LISTEN \"${SDPS_INSTALL_LISTEN}\")
  set(SDPS_INSTALL_SYSTEMD_UNITS \"${SDPS_INSTALL_SYSTEMD_UNITS}\")
  set(SDPS_SYSTEMD_UNIT_DIR \"${SDPS_SYSTEMD_UNIT_DIR}\")
  include(\"${CMAKE_SOURCE_DIR}/cmake/install_site.cmake\")
")

# --- man pages
install(FILES ${CMAKE_SOURCE_DIR}/man/sdps.1 DESTINATION ${CMAKE_INSTALL_MANDIR}/man1)
install(FILES ${CMAKE_SOURCE_DIR}/man/sdps.yaml.5 DESTINATION ${CMAKE_INSTALL_MANDIR}/man5)
install(FILES ${CMAKE_SOURCE_DIR}/man/sdpsd.8 DESTINATION ${CMAKE_INSTALL_MANDIR}/man8)
# sdps-modules(7): the modules' settings, written from their README files
# at build time (scripts/make-modules-man), so the page follows them.
file(GLOB SDPS_MODULE_READMES CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/modules/*/README.md
     ${CMAKE_SOURCE_DIR}/modules/spool/*/README.md ${CMAKE_SOURCE_DIR}/modules/spool/remote/backend.md)
set(SDPS_MODULES_MAN ${CMAKE_BINARY_DIR}/man/sdps-modules.7)
add_custom_command(OUTPUT ${SDPS_MODULES_MAN}
  COMMAND ${Python3_EXECUTABLE} ${CMAKE_SOURCE_DIR}/scripts/make-modules-man ${CMAKE_SOURCE_DIR} ${SDPS_MODULES_MAN}
  DEPENDS ${CMAKE_SOURCE_DIR}/scripts/make-modules-man ${SDPS_MODULE_READMES}
  COMMENT "sdps-modules(7) from the modules' README files" VERBATIM)
add_custom_target(sdps_modules_man ALL DEPENDS ${SDPS_MODULES_MAN})
install(FILES ${SDPS_MODULES_MAN} DESTINATION ${CMAKE_INSTALL_MANDIR}/man7)

# --- the CMake package: find_package(sdps) gives sdps::api and sdps_add_module().
include(CMakePackageConfigHelpers)
file(STRINGS ${CMAKE_SOURCE_DIR}/include/sdps/abi.hpp abi_line REGEX "^#define SDPS_ABI_VERSION [0-9]+")
string(REGEX REPLACE ".* ([0-9]+)$" "\\1" SDPS_ABI_VERSION_NUMBER "${abi_line}")
set(SDPS_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/sdps)
install(TARGETS sdps_api EXPORT sdpsTargets)
install(EXPORT sdpsTargets NAMESPACE sdps:: DESTINATION ${SDPS_CMAKE_DIR})
configure_package_config_file(${CMAKE_SOURCE_DIR}/cmake/sdpsConfig.cmake.in
  ${CMAKE_BINARY_DIR}/for-install/sdpsConfig.cmake INSTALL_DESTINATION ${SDPS_CMAKE_DIR}
  PATH_VARS SDPS_INSTALL_MODULE_DIR)
write_basic_package_version_file(${CMAKE_BINARY_DIR}/for-install/sdpsConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES ${CMAKE_BINARY_DIR}/for-install/sdpsConfig.cmake ${CMAKE_BINARY_DIR}/for-install/sdpsConfigVersion.cmake
  DESTINATION ${SDPS_CMAKE_DIR})

# The same package from a build folder: with CMAKE_PREFIX_PATH=<build
# folder>, find_package(sdps) finds lib/cmake/sdps/ there (the install's
# layout) and builds modules against this build's headers and flags, for
# the modules folder this build's sdpsd searches.
set(SDPS_BUILD_CMAKE_DIR ${CMAKE_BINARY_DIR}/lib/cmake/sdps)
export(TARGETS sdps_api NAMESPACE sdps:: FILE ${SDPS_BUILD_CMAKE_DIR}/sdpsTargets.cmake)
set(SDPS_INSTALL_MODULE_DIR_OF_INSTALL ${SDPS_INSTALL_MODULE_DIR})
set(SDPS_INSTALL_MODULE_DIR ${SDPS_MODULE_OUTPUT_DIR})
configure_package_config_file(${CMAKE_SOURCE_DIR}/cmake/sdpsConfig.cmake.in ${SDPS_BUILD_CMAKE_DIR}/sdpsConfig.cmake
  INSTALL_DESTINATION ${SDPS_BUILD_CMAKE_DIR} INSTALL_PREFIX ${CMAKE_BINARY_DIR} PATH_VARS SDPS_INSTALL_MODULE_DIR)
set(SDPS_INSTALL_MODULE_DIR ${SDPS_INSTALL_MODULE_DIR_OF_INSTALL})
write_basic_package_version_file(${SDPS_BUILD_CMAKE_DIR}/sdpsConfigVersion.cmake COMPATIBILITY SameMinorVersion)
