// Internal machinery shared by the .cu files of matalign_cuda: checked CUDA calls, device
// buffers, input staging, squared norms and the tile GEMM. Not installed, not included by
// anything outside cuda/src.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "matalign/common.h"
#include "matalign/cuda/engine.h"
#include "matalign/cuda/errors.h"

namespace matalign {
namespace cuda {
namespace detail {

/// Throws CudaError (or OutOfMemory for cudaErrorMemoryAllocation) for a failed call.
void throw_cuda(cudaError_t e, const char* call, const char* file, int line, int64_t bytes);

inline void check(cudaError_t e, const char* call, const char* file, int line, int64_t bytes = 0) {
  if (e != cudaSuccess) throw_cuda(e, call, file, line, bytes);
}

}  // namespace detail
}  // namespace cuda
}  // namespace matalign

/// Every CUDA runtime call goes through this: an error becomes a C++ exception naming the call.
#define MATALIGN_CUDA_CHECK(call) ::matalign::cuda::detail::check((call), #call, __FILE__, __LINE__)
/// After a kernel launch: launch-configuration errors surface here, not at the next call.
#define MATALIGN_CUDA_LAUNCHED(name) \
  ::matalign::cuda::detail::check(cudaGetLastError(), "launch of " name, __FILE__, __LINE__)

namespace matalign {
namespace cuda {
namespace detail {

/// Makes `device` current for the scope and restores the previous device afterwards.
class DeviceGuard {
 public:
  explicit DeviceGuard(int device);
  ~DeviceGuard();
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int previous_ = -1;
};

/// Where the Buffers of the running call are allocated (thread-local; set by CallScope).
struct AllocContext {
  cudaStream_t stream = nullptr;
  bool pools = false;  ///< cudaMallocAsync available on the call's device
};
AllocContext& alloc_context();

/// The scope of one engine call: makes launch.device current, makes the call's stream wait on
/// every producer stream of launch.wait_streams (an event recorded on each), and routes the
/// Buffers allocated inside it to cudaMallocAsync on the call's stream. Restores the previous
/// device and allocation context on exit.
class CallScope {
 public:
  explicit CallScope(const Launch& l);
  ~CallScope();
  CallScope(const CallScope&) = delete;
  CallScope& operator=(const CallScope&) = delete;

 private:
  DeviceGuard guard_;
  AllocContext previous_;
};

/// Free bytes on the current device.
int64_t free_bytes();

/// An owning device allocation of `count` elements of T (RAII; freed on every path).
template <class T>
class Buffer {
 public:
  Buffer() = default;
  Buffer(int64_t count, const char* what) { allocate(count, what); }
  ~Buffer() { release(); }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  Buffer(Buffer&& o) noexcept : p_(o.p_), n_(o.n_), stream_(o.stream_), async_(o.async_) {
    o.p_ = nullptr, o.n_ = 0;
  }
  Buffer& operator=(Buffer&& o) noexcept {
    if (this != &o) {
      release();
      p_ = o.p_, n_ = o.n_, stream_ = o.stream_, async_ = o.async_;
      o.p_ = nullptr, o.n_ = 0;
    }
    return *this;
  }

  void allocate(int64_t count, const char* what) {
    release();
    const int64_t bytes = mul_checked(std::max<int64_t>(count, 1), int64_t(sizeof(T)), what);
    const AllocContext& ctx = alloc_context();
    void* p = nullptr;
    const cudaError_t e = ctx.pools ? cudaMallocAsync(&p, static_cast<size_t>(bytes), ctx.stream)
                                    : cudaMalloc(&p, static_cast<size_t>(bytes));
    if (e != cudaSuccess) throw_cuda(e, ctx.pools ? "cudaMallocAsync" : "cudaMalloc", what, 0, bytes);
    p_ = static_cast<T*>(p);
    n_ = count;
    stream_ = ctx.stream;
    async_ = ctx.pools;
  }
  void release() noexcept {
    // Stream-ordered: the memory returns to the pool after the work queued on the call's
    // stream. Without pools, wait for that work first (cudaFree does not promise to).
    // Nothing can be thrown from here; a failed free leaves nothing to undo.
    if (p_) {
      if (async_) {
        cudaFreeAsync(p_, stream_);
      } else {
        cudaStreamSynchronize(stream_);
        cudaFree(p_);
      }
    }
    p_ = nullptr;
    n_ = 0;
  }
  T* get() const { return p_; }
  int64_t size() const { return n_; }

 private:
  T* p_ = nullptr;
  int64_t n_ = 0;
  cudaStream_t stream_ = nullptr;
  bool async_ = false;
};

/// A device-resident strided view, readable from kernels.
template <class T>
struct DevMat {
  const T* data;
  int64_t rows, cols, rs, cs;
  __host__ __device__ T at(int64_t i, int64_t j) const { return data[i * rs + j * cs]; }
};

inline cudaStream_t stream_of(const Launch& l) { return reinterpret_cast<cudaStream_t>(l.stream); }

/// Check the launch (device id in range) and a matrix's shape/strides; for device input,
/// check that the pointer lives on launch.device.
void check_launch(const Launch& l, const char* fn);
template <class T>
void check_matrix(const Matrix<T>& x, const Launch& l, const char* fn, const char* name);

/// The matrix on the device: device input as is, host input copied in row blocks (any
/// strides) into `storage` as a C-ordered n × d array.
template <class T>
DevMat<T> stage(const Matrix<T>& x, Buffer<T>& storage, const Launch& l, const char* what);

/// x centred (the translation-invariant metrics compute on centred rows, as the CPU engine
/// does): mu (cols doubles, on the device) gets the column centre bitwise equal to the CPU's
/// detail::column_centre (the mean rounded to a multiple of 2^⌊log2 sd⌋, same operations in
/// the same order); the result holds T(double(x_ik) − mu_k), C order, in x's own staging
/// buffer when x lives there (`in_storage`), else in `out`.
template <class T>
DevMat<T> centred(const DevMat<T>& x, bool in_storage, Buffer<T>& storage, Buffer<T>& out,
                  Buffer<double>& mu, cudaStream_t s);
/// The same with a given centre (e.g. queries on the database's mean).
template <class T>
DevMat<T> centred_on(const DevMat<T>& x, bool in_storage, Buffer<T>& storage, Buffer<T>& out,
                     const double* mu, cudaStream_t s);

/// out[i] = Σ_k x_ik² with one FMA per element in k order (the CPU engine's norms).
template <class T>
void squared_norms(const DevMat<T>& x, T* out, cudaStream_t s);

/// out[i*ldo + j] = <a row r0+i, b row c0+j> for i < R, j < C: one FMA per dimension in
/// dimension order, starting from 0 (bitwise the CPU micro-kernel's value).
template <class T>
void gemm_tile(const DevMat<T>& a, int64_t r0, int64_t R, const DevMat<T>& b, int64_t c0,
               int64_t C, T* out, int64_t ldo, cudaStream_t s);

/// Call the progress hook; throws Cancelled when it asks to stop.
inline void poll(const Launch& l, int64_t done, int64_t total) {
  if (l.progress && !l.progress(done, total)) throw Cancelled();
}

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

/// Blocks of a 1-D grid over n items (at least 1).
inline unsigned grid_for(int64_t n, int threads) {
  return static_cast<unsigned>(std::max<int64_t>(1, ceil_div(n, threads)));
}

}  // namespace detail
}  // namespace cuda
}  // namespace matalign
