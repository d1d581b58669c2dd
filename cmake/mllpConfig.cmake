# find_package(mllp) support for an installed mllp: defines mllp::mllp (shared) and
# mllp::mllp_static.
get_filename_component(_mllp_prefix "${CMAKE_CURRENT_LIST_DIR}/../../.." ABSOLUTE)
include(CMakeFindDependencyMacro)
find_dependency(Threads)
if(NOT TARGET mllp::mllp)
  add_library(mllp::mllp SHARED IMPORTED)
  set_target_properties(mllp::mllp PROPERTIES
    IMPORTED_LOCATION "${_mllp_prefix}/lib/libmllp.so"
    IMPORTED_SONAME "libmllp.so.0"
    INTERFACE_INCLUDE_DIRECTORIES "${_mllp_prefix}/include")
  add_library(mllp::mllp_static STATIC IMPORTED)
  set_target_properties(mllp::mllp_static PROPERTIES
    IMPORTED_LOCATION "${_mllp_prefix}/lib/libmllp.a"
    INTERFACE_INCLUDE_DIRECTORIES "${_mllp_prefix}/include"
    INTERFACE_LINK_LIBRARIES "Threads::Threads;dl;m")
endif()
unset(_mllp_prefix)
