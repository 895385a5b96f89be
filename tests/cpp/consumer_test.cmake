# ctest matalign_cmake_package: the installed CMake package works for a C++ consumer.
# Installs this build tree to a temporary prefix, configures and builds examples/cpp against
# it with find_package(matalign CONFIG), runs it, and compares its output with the same
# example linked in-tree (EXPECTED_EXE, the reference): both must print the same numbers, and
# the example's own float64 brute-force check of its kNN graphs must say "ok".
# Inputs (-D): BUILD_DIR, SOURCE_DIR, WORK_DIR, EXPECTED_EXE, GENERATOR, CXX, CXX_FLAGS,
# LINKER_FLAGS, BUILD_TYPE.
foreach(v BUILD_DIR SOURCE_DIR WORK_DIR EXPECTED_EXE GENERATOR CXX)
  if(NOT DEFINED ${v})
    message(FATAL_ERROR "consumer_test.cmake: -D${v}=... is required")
  endif()
endforeach()

function(run_step what)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "${what} failed (${rc}):\n${out}\n${err}")
  endif()
endfunction()

file(REMOVE_RECURSE ${WORK_DIR})
set(prefix ${WORK_DIR}/prefix)
run_step("install" ${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${prefix})
foreach(f matalignConfig.cmake matalignConfigVersion.cmake matalignTargets.cmake knn.h graph.h)
  file(GLOB_RECURSE found ${prefix}/*/${f})
  if(NOT found)
    message(FATAL_ERROR "not installed under ${prefix}: ${f}")
  endif()
endforeach()
run_step("configure the consumer" ${CMAKE_COMMAND} -S ${SOURCE_DIR}/examples/cpp
  -B ${WORK_DIR}/build -G ${GENERATOR} -DCMAKE_PREFIX_PATH=${prefix}
  -DCMAKE_CXX_COMPILER=${CXX} -DCMAKE_BUILD_TYPE=${BUILD_TYPE}
  "-DCMAKE_CXX_FLAGS=${CXX_FLAGS}" "-DCMAKE_EXE_LINKER_FLAGS=${LINKER_FLAGS}")
run_step("build the consumer" ${CMAKE_COMMAND} --build ${WORK_DIR}/build)

execute_process(COMMAND ${WORK_DIR}/build/matalign_example RESULT_VARIABLE rc
  OUTPUT_VARIABLE got ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "the consumer exited with ${rc}:\n${got}\n${err}")
endif()
execute_process(COMMAND ${EXPECTED_EXE} RESULT_VARIABLE rc OUTPUT_VARIABLE want)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "the in-tree example exited with ${rc}")
endif()
message(STATUS "consumer output:\n${got}")
if(NOT got STREQUAL want)
  message(FATAL_ERROR "the installed package's consumer printed\n${got}\nbut the in-tree build "
                      "of the same example printed\n${want}")
endif()
if(NOT got MATCHES "kNN check against float64 brute force: ok")
  message(FATAL_ERROR "the example's kNN graphs disagree with the float64 brute force")
endif()
if(NOT got MATCHES "cknna = [0-9]")
  message(FATAL_ERROR "no CKNNA value in the consumer's output")
endif()
file(REMOVE_RECURSE ${WORK_DIR})
