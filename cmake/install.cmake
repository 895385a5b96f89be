# Install and export rules: the C++ engine as a CMake package, usable without Python.
#
#   cmake -S . -B build/lib -DMATALIGN_BUILD_PYTHON=OFF -DMATALIGN_ENABLE_CUDA=OFF
#   cmake --build build/lib -j2 && cmake --install build/lib --prefix /opt/matalign
#
# then, in a consumer:  find_package(matalign 0.1 CONFIG REQUIRED)
#                       target_link_libraries(app PRIVATE matalign::core)
# (examples/cpp is such a consumer). Installs the static library libmatalign_core.a, the
# headers under include/matalign/, and lib/cmake/matalign/{matalignConfig,
# matalignConfigVersion,matalignTargets}.cmake. Off in wheel builds (scikit-build-core
# installs only the Python module there).
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

add_library(matalign::core ALIAS matalign_core)
set_target_properties(matalign_core PROPERTIES EXPORT_NAME core)
# The include directory is the source tree's when building, the prefix's once installed.
set_target_properties(matalign_core PROPERTIES INTERFACE_INCLUDE_DIRECTORIES
  "$<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}/cpp/include>;$<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>")

install(TARGETS matalign_core EXPORT matalignTargets
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(DIRECTORY ${PROJECT_SOURCE_DIR}/cpp/include/matalign
  DESTINATION ${CMAKE_INSTALL_INCLUDEDIR} FILES_MATCHING PATTERN "*.h")

set(MATALIGN_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/matalign)
install(EXPORT matalignTargets NAMESPACE matalign:: DESTINATION ${MATALIGN_CMAKE_DIR})
set(MATALIGN_WITH_OPENMP ${OpenMP_CXX_FOUND})
configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/matalignConfig.cmake.in
  ${CMAKE_CURRENT_BINARY_DIR}/matalignConfig.cmake INSTALL_DESTINATION ${MATALIGN_CMAKE_DIR})
# 0.x: a minor version may change the API, so only the same major.minor is compatible.
write_basic_package_version_file(${CMAKE_CURRENT_BINARY_DIR}/matalignConfigVersion.cmake
  VERSION ${PROJECT_VERSION} COMPATIBILITY SameMinorVersion)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/matalignConfig.cmake
  ${CMAKE_CURRENT_BINARY_DIR}/matalignConfigVersion.cmake DESTINATION ${MATALIGN_CMAKE_DIR})
