/// @file device.h
/// Host-callable CUDA queries. Plain C++: no <cuda_runtime.h>, no __global__.
#pragma once

#include <string>
#include <vector>

namespace matalign {
namespace cuda {

/// Number of visible CUDA devices; 0 when the driver is missing or no device is visible
/// (the reason is then in device_query_error()).
int device_count();

/// Why device_count() returned 0, or "" (e.g. "CUDA driver version is insufficient…").
std::string device_query_error();

/// CUDA toolkit version this build was compiled with, e.g. "13.0.88".
std::string compiled_cuda_version();

/// CMAKE_CUDA_ARCHITECTURES of this build, e.g. {"75-real", …, "90"}.
std::vector<std::string> compiled_architectures();

}  // namespace cuda
}  // namespace matalign
