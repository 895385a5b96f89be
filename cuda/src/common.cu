// Shared machinery of matalign_cuda (see common.cuh): error translation, device guard, input
// staging, squared norms, the tile GEMM, and the row scan behind input validation.
#include "common.cuh"

#include "matalign/cuda/plan.h"

#include <cmath>
#include <cstring>
#include <limits>
#include <sstream>

namespace matalign {
namespace cuda {
namespace detail {

void throw_cuda(cudaError_t e, const char* call, const char* file, int line, int64_t bytes) {
  cudaGetLastError();  // clear a non-sticky error so that later calls are not blamed for it
  const std::string name = cudaGetErrorName(e), text = cudaGetErrorString(e);
  std::ostringstream s;
  if (e == cudaErrorMemoryAllocation) {
    size_t free_b = 0, total_b = 0;
    const bool known = cudaMemGetInfo(&free_b, &total_b) == cudaSuccess;
    cudaGetLastError();
    s << "CUDA out of memory";
    if (bytes > 0) s << " allocating " << bytes << " bytes (" << (bytes >> 20) << " MiB) for " << file;
    else s << " in " << call;
    if (known) s << "; " << (free_b >> 20) << " MiB free of " << (total_b >> 20) << " MiB";
    s << " (pass smaller tile_rows/tile_cols or free device memory: memory cached by torch or "
         "CuPy is not free to matalign, see torch.cuda.empty_cache() and "
         "cupy.get_default_memory_pool().free_all_blocks())";
    throw OutOfMemory(s.str(), bytes);
  }
  s << call << " failed: " << name << ": " << text << " (" << file << ":" << line << ")";
  throw CudaError(s.str(), call, static_cast<int>(e), text);
}

DeviceGuard::DeviceGuard(int device) {
  MATALIGN_CUDA_CHECK(cudaGetDevice(&previous_));
  if (previous_ != device) MATALIGN_CUDA_CHECK(cudaSetDevice(device));
}

DeviceGuard::~DeviceGuard() {
  int now = -1;
  if (previous_ >= 0 && cudaGetDevice(&now) == cudaSuccess && now != previous_) cudaSetDevice(previous_);
  cudaGetLastError();
}

AllocContext& alloc_context() {
  thread_local AllocContext ctx;
  return ctx;
}

CallScope::CallScope(const Launch& l) : guard_(l.device), previous_(alloc_context()) {
  const cudaStream_t s = stream_of(l);
  for (const std::uintptr_t w : l.wait_streams) {
    if (w == l.stream) continue;
    cudaEvent_t ev = nullptr;
    MATALIGN_CUDA_CHECK(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming));
    const cudaError_t rec = cudaEventRecord(ev, reinterpret_cast<cudaStream_t>(w));
    const cudaError_t wait = rec == cudaSuccess ? cudaStreamWaitEvent(s, ev, 0) : rec;
    cudaEventDestroy(ev);  // the wait already queued keeps what it needs
    check(rec, "cudaEventRecord(producer stream)", __FILE__, __LINE__);
    check(wait, "cudaStreamWaitEvent(call stream, producer event)", __FILE__, __LINE__);
  }
  int pools = 0;
  MATALIGN_CUDA_CHECK(cudaDeviceGetAttribute(&pools, cudaDevAttrMemoryPoolsSupported, l.device));
  AllocContext& ctx = alloc_context();
  ctx.stream = s;
  ctx.pools = pools != 0;
}

CallScope::~CallScope() { alloc_context() = previous_; }

int64_t free_bytes() {
  size_t f = 0, t = 0;
  MATALIGN_CUDA_CHECK(cudaMemGetInfo(&f, &t));
  return static_cast<int64_t>(f);
}

void check_launch(const Launch& l, const char* fn) {
  // Sizes first: a bad tile is the caller's error on every machine, with or without a device.
  plan::check_tiles(l.tile_rows, l.tile_cols, fn);
  int count = 0;
  const cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess) {
    cudaGetLastError();
    count = 0;
  }
  MATALIGN_CHECK(count > 0, fn, ": no CUDA device visible");
  MATALIGN_CHECK(l.device >= 0 && l.device < count, fn, ": device cuda:", l.device,
                 " does not exist (", count, " device", count == 1 ? "" : "s", " visible)");
}

template <class T>
void check_matrix(const Matrix<T>& x, const Launch& l, const char* fn, const char* name) {
  MATALIGN_CHECK(x.data != nullptr && x.rows > 0 && x.cols > 0, fn, ": ", name,
                 " must be a non-empty matrix, got shape (", x.rows, ", ", x.cols, ")");
  MATALIGN_CHECK(x.row_stride >= 0 && x.col_stride >= 0, fn, ": ", name,
                 " has negative strides; pass a copy");
  mul_checked(x.rows, x.cols, "matrix size");
  if (!x.on_device) return;
  cudaPointerAttributes a{};
  MATALIGN_CUDA_CHECK(cudaPointerGetAttributes(&a, x.data));
  MATALIGN_CHECK(a.type == cudaMemoryTypeDevice || a.type == cudaMemoryTypeManaged, fn, ": ",
                 name, " is not device memory (pointer type ", static_cast<int>(a.type), ")");
  MATALIGN_CHECK(a.type == cudaMemoryTypeManaged || a.device == l.device, fn, ": ", name,
                 " lives on cuda:", a.device, " but the call runs on cuda:", l.device,
                 "; pass device='cuda:", a.device, "' or move the array");
}

namespace {

// Rows are staged through host memory in blocks of about 32 MB: any strides (F order,
// memmaps, slices) are gathered on the host without a full host copy of the matrix.
constexpr int64_t kStageBytes = int64_t(32) << 20;

}  // namespace

template <class T>
DevMat<T> stage(const Matrix<T>& x, Buffer<T>& storage, const Launch& l, const char* what) {
  if (x.on_device) return DevMat<T>{x.data, x.rows, x.cols, x.row_stride, x.col_stride};
  const int64_t n = x.rows, d = x.cols;
  storage.allocate(mul_checked(n, d, what), what);
  const cudaStream_t s = stream_of(l);
  const int64_t block = std::max<int64_t>(1, kStageBytes / (d * int64_t(sizeof(T))));
  if (x.col_stride == 1 && x.row_stride == d) {
    MATALIGN_CUDA_CHECK(cudaMemcpyAsync(storage.get(), x.data, static_cast<size_t>(n * d * sizeof(T)),
                                        cudaMemcpyHostToDevice, s));
  } else if (x.col_stride == 1) {
    MATALIGN_CUDA_CHECK(cudaMemcpy2DAsync(storage.get(), d * sizeof(T), x.data,
                                          x.row_stride * sizeof(T), d * sizeof(T), n,
                                          cudaMemcpyHostToDevice, s));
  } else {
    std::vector<T> host(static_cast<size_t>(std::min(n, block) * d));
    for (int64_t r0 = 0; r0 < n; r0 += block) {
      const int64_t r1 = std::min(n, r0 + block);
      for (int64_t i = r0; i < r1; ++i)
        for (int64_t j = 0; j < d; ++j)
          host[static_cast<size_t>((i - r0) * d + j)] = x.data[i * x.row_stride + j * x.col_stride];
      MATALIGN_CUDA_CHECK(cudaMemcpyAsync(storage.get() + r0 * d, host.data(),
                                          static_cast<size_t>((r1 - r0) * d * sizeof(T)),
                                          cudaMemcpyHostToDevice, s));
      // The staging block is reused: wait for the copy out of it.
      MATALIGN_CUDA_CHECK(cudaStreamSynchronize(s));
    }
  }
  return DevMat<T>{storage.get(), n, d, d, 1};
}

namespace {

template <class T>
__device__ __forceinline__ T fma_t(T a, T b, T c);
template <>
__device__ __forceinline__ float fma_t<float>(float a, float b, float c) { return __fmaf_rn(a, b, c); }
template <>
__device__ __forceinline__ double fma_t<double>(double a, double b, double c) { return __fma_rn(a, b, c); }

// Squared norms, 128 rows per block: 32-column slices of the block's rows are staged in shared
// memory with consecutive threads reading consecutive columns (coalesced for C order), then each
// thread runs its row's FMA chain over the slice, columns in order (the CPU engine's chain).
constexpr int kNormRows = 128, kNormCols = 32;

template <class T>
__global__ void __launch_bounds__(kNormRows) norms_kernel(DevMat<T> x, T* out) {
  __shared__ T tile[kNormRows][kNormCols + 1];
  const int64_t row0 = int64_t(blockIdx.x) * kNormRows;
  const int64_t i = row0 + threadIdx.x;
  T acc = T(0);
  for (int64_t k0 = 0; k0 < x.cols; k0 += kNormCols) {
    const int kn = static_cast<int>(x.cols - k0 < kNormCols ? x.cols - k0 : kNormCols);
    for (int e = threadIdx.x; e < kNormRows * kNormCols; e += kNormRows) {
      const int rr = e / kNormCols, cc = e % kNormCols;
      tile[rr][cc] = (cc < kn && row0 + rr < x.rows) ? x.at(row0 + rr, k0 + cc) : T(0);
    }
    __syncthreads();
    for (int cc = 0; cc < kn; ++cc) acc = fma_t<T>(tile[threadIdx.x][cc], tile[threadIdx.x][cc], acc);
    __syncthreads();
  }
  if (i < x.rows) out[i] = acc;
}

// A 64×64 output block per 256 threads, 4×4 outputs per thread (rows ty + 16·a, columns
// tx + 16·b), depth in steps of 16 through shared memory. Simple rather than fast: every
// output is one FMA chain over the dimensions in order, exactly as the CPU micro-kernel, so
// the GPU and CPU engines agree bit for bit; the depth loop stops at d (no padded FMAs, which
// would turn a -0 sum into +0).
constexpr int kBM = 64, kBN = 64, kBK = 16, kThreads = 256;

template <class T>
__global__ void __launch_bounds__(kThreads)
gemm_kernel(DevMat<T> a, int64_t r0, int64_t R, DevMat<T> b, int64_t c0, int64_t C, T* out,
            int64_t ldo) {
  __shared__ T As[kBK][kBM + 1];
  __shared__ T Bs[kBK][kBN + 1];
  const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
  const int64_t bi = int64_t(blockIdx.y) * kBM, bj = int64_t(blockIdx.x) * kBN;
  const int64_t d = a.cols;
  T acc[4][4];
#pragma unroll
  for (int p = 0; p < 4; ++p)
#pragma unroll
    for (int q = 0; q < 4; ++q) acc[p][q] = T(0);
  for (int64_t k0 = 0; k0 < d; k0 += kBK) {
    const int kn = static_cast<int>(d - k0 < kBK ? d - k0 : kBK);
    // Consecutive threads read consecutive dimensions of one row (coalesced for C order).
    for (int e = threadIdx.x; e < kBK * kBM; e += kThreads) {
      const int kk = e % kBK, ii = e / kBK;
      const int64_t ra = bi + ii, rb = bj + ii;
      As[kk][ii] = (kk < kn && ra < R) ? a.at(r0 + ra, k0 + kk) : T(0);
      Bs[kk][ii] = (kk < kn && rb < C) ? b.at(c0 + rb, k0 + kk) : T(0);
    }
    __syncthreads();
    for (int kk = 0; kk < kn; ++kk) {
      T av[4], bv[4];
#pragma unroll
      for (int p = 0; p < 4; ++p) av[p] = As[kk][ty + 16 * p];
#pragma unroll
      for (int q = 0; q < 4; ++q) bv[q] = Bs[kk][tx + 16 * q];
#pragma unroll
      for (int p = 0; p < 4; ++p)
#pragma unroll
        for (int q = 0; q < 4; ++q) acc[p][q] = fma_t<T>(av[p], bv[q], acc[p][q]);
    }
    __syncthreads();
  }
#pragma unroll
  for (int p = 0; p < 4; ++p) {
    const int64_t i = bi + ty + 16 * p;
    if (i >= R) continue;
#pragma unroll
    for (int q = 0; q < 4; ++q) {
      const int64_t j = bj + tx + 16 * q;
      if (j < C) out[i * ldo + j] = acc[p][q];
    }
  }
}

template <class T>
__global__ void scan_kernel(DevMat<T> x, unsigned long long* first_bad, unsigned long long* max_bits) {
  const int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (i >= x.rows) return;
  double m = 0.0;
  bool bad = false;
  for (int64_t j = 0; j < x.cols; ++j) {
    const double v = static_cast<double>(x.at(i, j));
    if (!isfinite(v)) {
      bad = true;
      break;
    }
    m = fmax(m, fabs(v));
  }
  if (bad) atomicMin(first_bad, static_cast<unsigned long long>(i));
  // Non-negative doubles order like their bit patterns.
  atomicMax(max_bits, static_cast<unsigned long long>(__double_as_longlong(m)));
}

// The CPU's detail::column_centre operation for operation (plain double operations, no
// contraction, correctly rounded sqrt): per block of 4096 rows and column, Σ (x − x_0) and
// Σ (x − x_0)² in row order (one thread each; consecutive threads read consecutive columns),
// then per column the blocks in order and the centre rule (the mean rounded to a multiple of
// 2^⌊log2 sd⌋).
constexpr int64_t kMeanChunk = 4096;

template <class T>
__global__ void column_part_kernel(DevMat<T> x, double* part) {
  const int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  const int64_t d = x.cols, nchunks = (x.rows + kMeanChunk - 1) / kMeanChunk;
  if (e >= nchunks * d) return;
  const int64_t c = e / d, col = e % d;
  const int64_t r1 = (c + 1) * kMeanChunk < x.rows ? (c + 1) * kMeanChunk : x.rows;
  const double ref = static_cast<double>(x.at(0, col));
  double p1 = 0.0, p2 = 0.0;
  for (int64_t r = c * kMeanChunk; r < r1; ++r) {
    const double v = __dsub_rn(static_cast<double>(x.at(r, col)), ref);
    p1 = __dadd_rn(p1, v);
    p2 = __dadd_rn(p2, __dmul_rn(v, v));
  }
  part[2 * c * d + col] = p1;
  part[2 * c * d + d + col] = p2;
}

template <class T>
__global__ void column_centre_kernel(DevMat<T> x, const double* part, int64_t nchunks, double* mu) {
  const int64_t col = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  const int64_t d = x.cols;
  if (col >= d) return;
  double s1 = 0.0, s2 = 0.0;
  for (int64_t c = 0; c < nchunks; ++c) {
    s1 = __dadd_rn(s1, part[2 * c * d + col]);
    s2 = __dadd_rn(s2, part[2 * c * d + d + col]);
  }
  const double dn = static_cast<double>(x.rows);
  const double m1 = __ddiv_rn(s1, dn);
  const double mean = __dadd_rn(static_cast<double>(x.at(0, col)), m1);
  const double var = __dsub_rn(__ddiv_rn(s2, dn), __dmul_rn(m1, m1));
  const double sd = var > 0.0 ? __dsqrt_rn(var) : 0.0;
  double out = mean;
  if (!isfinite(mean)) {
    out = 0.0;
  } else if (sd > 0.0 && isfinite(sd)) {
    int e = 0;
    frexp(sd, &e);
    const double g = ldexp(1.0, e - 1);
    const double q = __ddiv_rn(mean, g);
    if (isfinite(q)) out = __dmul_rn(g, rint(q));
  }
  mu[col] = out;
}

template <class T>
__global__ void centre_kernel(DevMat<T> x, const double* mu, T* out) {
  const int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (e >= x.rows * x.cols) return;
  const int64_t i = e / x.cols, k = e % x.cols;
  out[e] = static_cast<T>(__dsub_rn(static_cast<double>(x.at(i, k)), mu[k]));
}

}  // namespace

template <class T>
DevMat<T> centred_on(const DevMat<T>& x, bool in_storage, Buffer<T>& storage, Buffer<T>& out,
                     const double* mu, cudaStream_t s) {
  const int64_t n = x.rows, d = x.cols;
  // In place only over our own C-ordered staging copy (each element read, then written).
  T* dst = storage.get();
  if (!in_storage) {
    out.allocate(mul_checked(n, d, "centred copy"), "centred copy");
    dst = out.get();
  }
  centre_kernel<T><<<grid_for(n * d, 256), 256, 0, s>>>(x, mu, dst);
  MATALIGN_CUDA_LAUNCHED("centre_kernel");
  return DevMat<T>{dst, n, d, d, 1};
}

template <class T>
DevMat<T> centred(const DevMat<T>& x, bool in_storage, Buffer<T>& storage, Buffer<T>& out,
                  Buffer<double>& mu, cudaStream_t s) {
  const int64_t d = x.cols;
  const int64_t nchunks = ceil_div(x.rows, kMeanChunk);
  Buffer<double> part(mul_checked(2 * nchunks, d, "column centre"), "column centre");
  mu.allocate(d, "column centre");
  column_part_kernel<T><<<grid_for(nchunks * d, 256), 256, 0, s>>>(x, part.get());
  MATALIGN_CUDA_LAUNCHED("column_part_kernel");
  column_centre_kernel<T><<<grid_for(d, 256), 256, 0, s>>>(x, part.get(), nchunks, mu.get());
  MATALIGN_CUDA_LAUNCHED("column_centre_kernel");
  // `part` is freed stream-ordered on return (after the kernels that read it).
  return centred_on(x, in_storage, storage, out, mu.get(), s);
}

template <class T>
void squared_norms(const DevMat<T>& x, T* out, cudaStream_t s) {
  norms_kernel<T><<<grid_for(x.rows, kNormRows), kNormRows, 0, s>>>(x, out);
  MATALIGN_CUDA_LAUNCHED("norms_kernel");
}

template <class T>
void gemm_tile(const DevMat<T>& a, int64_t r0, int64_t R, const DevMat<T>& b, int64_t c0,
               int64_t C, T* out, int64_t ldo, cudaStream_t s) {
  static_assert(kBM == plan::kGemmBlockRows, "plan.h's grid limit assumes this block height");
  MATALIGN_INTERNAL(ceil_div(R, kBM) <= plan::kMaxGridY);  // check_tiles caps every tile
  const dim3 grid(static_cast<unsigned>(ceil_div(C, kBN)), static_cast<unsigned>(ceil_div(R, kBM)));
  gemm_kernel<T><<<grid, kThreads, 0, s>>>(a, r0, R, b, c0, C, out, ldo);
  MATALIGN_CUDA_LAUNCHED("gemm_kernel");
}

#define MATALIGN_INSTANTIATE(T)                                                                    \
  template void check_matrix<T>(const Matrix<T>&, const Launch&, const char*, const char*);       \
  template DevMat<T> stage<T>(const Matrix<T>&, Buffer<T>&, const Launch&, const char*);          \
  template void squared_norms<T>(const DevMat<T>&, T*, cudaStream_t);                              \
  template DevMat<T> centred<T>(const DevMat<T>&, bool, Buffer<T>&, Buffer<T>&, Buffer<double>&,  \
                                cudaStream_t);                                                     \
  template DevMat<T> centred_on<T>(const DevMat<T>&, bool, Buffer<T>&, Buffer<T>&, const double*, \
                                   cudaStream_t);                                                  \
  template void gemm_tile<T>(const DevMat<T>&, int64_t, int64_t, const DevMat<T>&, int64_t,       \
                             int64_t, T*, int64_t, cudaStream_t);
MATALIGN_INSTANTIATE(float)
MATALIGN_INSTANTIATE(double)
#undef MATALIGN_INSTANTIATE

}  // namespace detail

template <class T>
ScanResult scan_rows(const Matrix<T>& x, const Launch& l) {
  detail::check_launch(l, "scan_rows");
  detail::CallScope scope(l);
  detail::check_matrix(x, l, "scan_rows", "X");
  detail::Buffer<T> storage;
  const detail::DevMat<T> dx = detail::stage(x, storage, l, "scan_rows input");
  const cudaStream_t s = detail::stream_of(l);
  detail::Buffer<unsigned long long> flags(2, "scan_rows flags");
  const unsigned long long init[2] = {std::numeric_limits<unsigned long long>::max(), 0ull};
  MATALIGN_CUDA_CHECK(cudaMemcpyAsync(flags.get(), init, sizeof(init), cudaMemcpyHostToDevice, s));
  detail::scan_kernel<T><<<detail::grid_for(x.rows, 256), 256, 0, s>>>(dx, flags.get(), flags.get() + 1);
  MATALIGN_CUDA_LAUNCHED("scan_kernel");
  unsigned long long out[2];
  MATALIGN_CUDA_CHECK(cudaMemcpyAsync(out, flags.get(), sizeof(out), cudaMemcpyDeviceToHost, s));
  MATALIGN_CUDA_CHECK(cudaStreamSynchronize(s));
  ScanResult r;
  r.first_nonfinite_row =
      out[0] == std::numeric_limits<unsigned long long>::max() ? -1 : static_cast<int64_t>(out[0]);
  double m;
  static_assert(sizeof(m) == sizeof(out[1]), "double is 64-bit");
  std::memcpy(&m, &out[1], sizeof(m));
  r.max_abs = m;
  return r;
}

void raise_cuda_error(int code, int64_t bytes) {
  MATALIGN_CHECK(code != 0, "raise_cuda_error: code 0 is cudaSuccess, not an error");
  detail::throw_cuda(static_cast<cudaError_t>(code), "raise_cuda_error(code)", "raise_cuda_error", 0,
                     bytes);
  MATALIGN_INTERNAL(false);  // throw_cuda always throws
}

template ScanResult scan_rows<float>(const Matrix<float>&, const Launch&);
template ScanResult scan_rows<double>(const Matrix<double>&, const Launch&);

}  // namespace cuda
}  // namespace matalign
