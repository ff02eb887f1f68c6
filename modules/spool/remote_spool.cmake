# The front end's remote_spool module (issue 4), beside local_spool: one
# instance per punt served by a back end. Included at the end of this
# folder's CMakeLists.txt; owned with modules/backend/, which links the
# protocol library for the back-end side.

# The back-end protocol's pure parts (secret, proofs, XLIST lines,
# un-stuffing), shared by both sides.
add_library(sdps_remote_protocol STATIC remote_protocol.cpp)
target_include_directories(sdps_remote_protocol PUBLIC ${CMAKE_CURRENT_SOURCE_DIR})
target_link_libraries(sdps_remote_protocol PUBLIC sdps_api PkgConfig::SODIUM PRIVATE sdps_warnings)

# The module's logic, linked by both the .so and the unit tests.
add_library(sdps_remote_spool STATIC remote_link.cpp remote_spool.cpp)
target_link_libraries(sdps_remote_spool PUBLIC sdps_remote_protocol PRIVATE sdps_warnings)
# GCC 12 misreports Asio's awaitable frame allocator (operator new/delete of
# awaitable_frame_base) as mismatched when it inlines a coroutine that holds
# several frames, also in optimised builds without sanitizers; the root
# CMakeLists.txt silences the same false positive for ASan builds.
target_compile_options(sdps_remote_spool PRIVATE -Wno-mismatched-new-delete)

sdps_add_module(remote_spool SOURCES remote_module.cpp LIBRARIES sdps_remote_spool)

sdps_add_unit_test(remote_spool_unit_tests
  SOURCES tests/remote_protocol_test.cpp tests/remote_spool_test.cpp
  LIBRARIES sdps_remote_spool sdps_lock sdps_merge sdps_commands sdps_extensions sdps_core)
if(TARGET remote_spool_unit_tests)
  target_include_directories(remote_spool_unit_tests PRIVATE ${CMAKE_SOURCE_DIR}/modules/commands/tests)
endif()
