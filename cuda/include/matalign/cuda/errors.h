/// @file errors.h
/// Exceptions thrown by matalign_cuda. Plain C++: no <cuda_runtime.h>. The binding maps
/// CudaError to matalign.CudaError (a RuntimeError) and OutOfMemory to MemoryError.
#pragma once

#include <cstdint>
#include <new>
#include <stdexcept>
#include <string>

namespace matalign {
namespace cuda {

/// A CUDA runtime call failed. what() = "<call> failed: <cudaErrorName>: <cudaGetErrorString>
/// (<file>:<line>)"; call() is the failing call as written in the source, code() the
/// cudaError_t value.
class CudaError : public std::runtime_error {
 public:
  CudaError(const std::string& what, std::string call, int code, std::string error_string)
      : std::runtime_error(what), call_(std::move(call)), code_(code),
        error_string_(std::move(error_string)) {}
  const std::string& call() const { return call_; }
  int code() const { return code_; }
  const std::string& error_string() const { return error_string_; }

 private:
  std::string call_;
  int code_;
  std::string error_string_;
};

/// A device allocation failed (cudaErrorMemoryAllocation). bytes() is the size asked for
/// (0 when the failing call was not an allocation of ours, e.g. inside a library).
class OutOfMemory : public std::bad_alloc {
 public:
  OutOfMemory(std::string what, int64_t bytes) : what_(std::move(what)), bytes_(bytes) {}
  const char* what() const noexcept override { return what_.c_str(); }
  int64_t bytes() const { return bytes_; }

 private:
  std::string what_;
  int64_t bytes_;
};

}  // namespace cuda
}  // namespace matalign
