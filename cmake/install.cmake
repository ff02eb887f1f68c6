# What `cmake --install` puts where, by GNUInstallDirs (included from the
# top-level CMakeLists.txt). For the prefix /usr, GNUInstallDirs makes the
# full sysconfdir /etc and localstatedir /var, as Debian expects.

# --- configs: /etc/sdps/*.yaml, their paths pointed at the state folders.
set(SDPS_STATE_DIR ${CMAKE_INSTALL_FULL_LOCALSTATEDIR}/lib/sdps)
set(SDPS_SPOOL_DIR ${CMAKE_INSTALL_FULL_LOCALSTATEDIR}/spool/sdps)
set(SDPS_CONFIG_DIR ${CMAKE_INSTALL_FULL_SYSCONFDIR}/sdps)
file(GLOB sdps_configs CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/config/*.yaml)
foreach(source ${sdps_configs})
  get_filename_component(name ${source} NAME)
  file(READ ${source} text)
  string(REPLACE "# Paths are relative to this file's folder." "# Installed copy: paths point at ${SDPS_STATE_DIR} and ${SDPS_SPOOL_DIR}." text "${text}")
  string(REPLACE "../var/spool/" "${SDPS_SPOOL_DIR}/" text "${text}")
  string(REPLACE "../var/hosts" "${SDPS_STATE_DIR}/hosts" text "${text}")
  string(REPLACE "../var/frontend.secret" "${SDPS_CONFIG_DIR}/frontend.secret" text "${text}")
  if(SDPS_INSTALL_LISTEN AND name STREQUAL "sdps.yaml")
    string(REPLACE "listen: [127.0.0.1:1110]" "listen: [${SDPS_INSTALL_LISTEN}]" text "${text}")
  endif()
  if(SDPS_INSTALL_USER)
    string(REGEX REPLACE "\n(listen: [^\n]*\n)" "\n\\1user: ${SDPS_INSTALL_USER}                   # sdpsd switches to this user; `sdps` as root too\n" text "${text}")
  endif()
  file(WRITE ${CMAKE_BINARY_DIR}/installed-config/${name} "${text}")
  install(FILES ${CMAKE_BINARY_DIR}/installed-config/${name} DESTINATION ${SDPS_CONFIG_DIR})
endforeach()
install(DIRECTORY DESTINATION ${SDPS_STATE_DIR})
install(DIRECTORY DESTINATION ${SDPS_SPOOL_DIR}/finchley)
install(DIRECTORY DESTINATION ${SDPS_SPOOL_DIR}/docklands)

# --- man pages
install(FILES ${CMAKE_SOURCE_DIR}/man/sdps.1 DESTINATION ${CMAKE_INSTALL_MANDIR}/man1)
install(FILES ${CMAKE_SOURCE_DIR}/man/sdps.yaml.5 DESTINATION ${CMAKE_INSTALL_MANDIR}/man5)
install(FILES ${CMAKE_SOURCE_DIR}/man/sdpsd.8 DESTINATION ${CMAKE_INSTALL_MANDIR}/man8)

# --- systemd units (Debian 12 keeps them in /lib/systemd/system).
if(SDPS_INSTALL_SYSTEMD_UNITS)
  set(SDPS_SYSTEMD_UNIT_DIR "" CACHE PATH "Where the systemd units go (default: /lib/systemd/system for the prefix /usr)")
  if(SDPS_SYSTEMD_UNIT_DIR)
    set(unit_dir ${SDPS_SYSTEMD_UNIT_DIR})
  elseif(CMAKE_INSTALL_PREFIX STREQUAL "/usr")
    set(unit_dir /lib/systemd/system)
  else()
    set(unit_dir ${CMAKE_INSTALL_PREFIX}/lib/systemd/system)
  endif()
  foreach(unit sdpsd.service sdpsd@.service)
    configure_file(${CMAKE_SOURCE_DIR}/packaging/systemd/${unit}.in ${CMAKE_BINARY_DIR}/systemd/${unit} @ONLY)
    install(FILES ${CMAKE_BINARY_DIR}/systemd/${unit} DESTINATION ${unit_dir})
  endforeach()
endif()

# --- the CMake package: find_package(sdps) gives sdps::api and sdps_add_module().
include(CMakePackageConfigHelpers)
file(STRINGS ${CMAKE_SOURCE_DIR}/include/sdps/abi.hpp abi_line REGEX "^#define SDPS_ABI_VERSION [0-9]+")
string(REGEX REPLACE ".* ([0-9]+)$" "\\1" SDPS_ABI_VERSION_NUMBER "${abi_line}")
set(SDPS_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/sdps)
install(TARGETS sdps_api EXPORT sdpsTargets)
install(EXPORT sdpsTargets NAMESPACE sdps:: DESTINATION ${SDPS_CMAKE_DIR})
configure_package_config_file(${CMAKE_SOURCE_DIR}/cmake/sdpsConfig.cmake.in
  ${CMAKE_BINARY_DIR}/cmake/sdpsConfig.cmake INSTALL_DESTINATION ${SDPS_CMAKE_DIR}
  PATH_VARS SDPS_INSTALL_MODULE_DIR)
write_basic_package_version_file(${CMAKE_BINARY_DIR}/cmake/sdpsConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES ${CMAKE_BINARY_DIR}/cmake/sdpsConfig.cmake ${CMAKE_BINARY_DIR}/cmake/sdpsConfigVersion.cmake
  DESTINATION ${SDPS_CMAKE_DIR})
