/// @file engine.h
/// Host-callable CUDA engine: the tile loop of matalign/tiling.h on one GPU, with the reducers
/// TopK (exact kNN), PairSums (RBF CKA, distance correlation) and RankCount (exact
/// information imbalance), plus the graph metrics (mutual kNN, CKNNA) on the device.
///
/// Plain C++ (no <cuda_runtime.h>, no __global__): pointers, int64 sizes, a device id and a
/// std::uintptr_t stream. Every input matrix is either in host memory (copied to the device
/// in row blocks, any strides) or already on the device (read in place, any strides; a
/// CuPy/torch array handed over by pointer). Outputs are host buffers of the documented
/// shape; each call synchronises its stream before returning.
///
/// Numerics follow the CPU engine exactly where it is cheap to: every inner product and
/// squared norm is one fused multiply-add per dimension in dimension order, in T (so kNN
/// graphs and RankCount counts are bitwise those of the CPU engine), squared distances are
/// (2·ip) − (n_i + n_j), kNN ties go to the lower index, and sums accumulate in double in a
/// fixed order (per row over column tiles in increasing order, rows combined serially), so a
/// result never depends on scheduling.
///
/// Memory: every device buffer is allocated with cudaMallocAsync on the call's stream (the
/// device's default memory pool; plain cudaMalloc where pools are unsupported) and freed the
/// same way, so a call neither synchronises the device on free nor blocks other streams.
///
/// Errors: std::invalid_argument for bad values (ValueError), matalign::cuda::OutOfMemory
/// (MemoryError, with the bytes asked for) and matalign::cuda::CudaError for CUDA failures.
#pragma once

#include <cstdint>
#include <vector>

#include "matalign/common.h"
#include "matalign/graph.h"
#include "matalign/pairwise.h"

namespace matalign {
namespace cuda {

/// An n × d matrix, element (i, j) at data[i*row_stride + j*col_stride] (strides in
/// elements, >= 0). on_device: data is a device pointer on the call's device.
template <class T>
struct Matrix {
  const T* data = nullptr;
  int64_t rows = 0;
  int64_t cols = 0;
  int64_t row_stride = 0;
  int64_t col_stride = 1;
  bool on_device = false;
};

/// Where and how a call runs.
struct Launch {
  int device = 0;              ///< CUDA device id (checked against the visible devices)
  std::uintptr_t stream = 0;   ///< cudaStream_t the call runs on (0 = legacy default stream)
  /// Producer streams of the inputs (torch's or CuPy's current stream when each array was
  /// handed over): the call's stream waits on an event recorded on each of them before any
  /// work, so no input is read before its producer has written it.
  std::vector<std::uintptr_t> wait_streams;
  int64_t tile_rows = 0;       ///< rows per tile; 0 = automatic, from free device memory
  int64_t tile_cols = 0;       ///< columns per tile; 0 = automatic
  ProgressFn progress;         ///< polled on the host between tiles
};

/// Exact kNN by largest inner product (ip = true) or smallest squared L2, as knn_exact of the
/// CPU engine (same tie rule, same values). Self mode (queries == nullptr): exclude_self
/// removes each row's own index.
/// @param[in]  normalize  divide every row (of x and queries) by its Euclidean norm on the
///                        device first (metric "cosine" for device input; norms accumulated
///                        in double, each element rounded once); a zero row is a ValueError
/// @param[out] values   (m or n) × k host buffer, C order
/// @param[out] indices  (m or n) × k host buffer, C order
template <class T>
void knn_exact(const Matrix<T>& x, const Matrix<T>* queries, int64_t k, bool ip, bool exclude_self,
               bool normalize, T* values, int64_t* indices, const Launch& launch);

/// Per-row floats of a ScreenSide's `terms`: the bound terms s, n, t, e, g, nhi, nlo, c, dc of
/// matalign/detail/screen_bound.h's ScreenTerms, then the re-scoring term w
/// (screen_rescore_term).
constexpr int kScreenTerms = 10;

/// One side (database rows or queries) of the int8 screen, quantised on the host by the CPU
/// engine's own function (centred on the database mean, per-row scale, int8 codes): host
/// arrays, read during the call only.
struct ScreenSide {
  const int8_t* q = nullptr;      ///< rows × dp int8 codes, zero past the depth d
  int64_t rows = 0;
  int64_t dp = 0;                 ///< code row length (d rounded up to a multiple of 4)
  const float* terms = nullptr;   ///< rows × kScreenTerms
};

/// What a screened call did (for benchmarks and tests).
struct ScreenStats {
  int64_t seed_columns = 0;    ///< columns [0, S) searched by the dense path for every row
  int64_t tiles = 0;           ///< screened tiles
  int64_t survivors = 0;       ///< pairs that passed the bound test (counted per line)
  int64_t overflow_lines = 0;  ///< lines re-scored against all of their tile's columns
  int64_t merged = 0;          ///< re-scored candidates that entered a merge
};

/// Exact kNN through the int8 tensor-core screen (sm_75+; docs/ARCHITECTURE.md, "GPU int8
/// screen"): the same graph as knn_exact (normalize = false) bit for bit. xs (and qs for a
/// query graph) are the quantised sides of x (and queries). stats may be null.
template <class T>
void knn_screen(const Matrix<T>& x, const Matrix<T>* queries, int64_t k, bool ip, bool exclude_self,
                const ScreenSide& xs, const ScreenSide* qs, T* values, int64_t* indices,
                const Launch& launch, ScreenStats* stats);

/// PairSums over M spaces (1 <= M <= 8), as matalign::pair_sums.
/// @param[out] rowsums  M × n host buffer; cross  M × M host buffer
template <class T>
void pair_sums(const std::vector<Matrix<T>>& spaces, PairFn fn, const std::vector<double>& gamma,
               double* rowsums, double* cross, const Launch& launch);

/// RankCount, as matalign::rank_count (bitwise the same counts).
/// @param[in]  targets  n × k host buffer
/// @param[out] counts   n × k host buffer
template <class T>
void rank_count(const Matrix<T>& y, const int64_t* targets, int64_t k, int64_t* counts,
                const Launch& launch);

/// CKNNA from two inner-product graphs (host buffers, n × k), as matalign::cknna; per_row is
/// not computed on the device. Bitwise the CPU value (same per-row arithmetic, same chunked
/// summation order).
template <class T>
CknnaResult cknna(const int64_t* idx_x, const T* val_x, const int64_t* idx_y, const T* val_y,
                  int64_t n, int64_t k, double eps, const Launch& launch);

/// mutual_knn from two graphs (host buffers, n × k), as matalign::mutual_knn.
/// @param[out] per_row  n values |nx(i) ∩ ny(i)|/k (local_agreement) or nullptr
double mutual_knn(const int64_t* idx_x, const int64_t* idx_y, int64_t n, int64_t k,
                  double* per_row, const Launch& launch);

/// Cheap checks of a device matrix before heavy work: the first row holding a NaN/±Inf (or
/// -1) and the largest |x| over the finite values.
struct ScanResult {
  int64_t first_nonfinite_row = -1;
  double max_abs = 0.0;
};
template <class T>
ScanResult scan_rows(const Matrix<T>& x, const Launch& launch);

/// Throws what a failing CUDA call with error `code` throws (OutOfMemory for
/// cudaErrorMemoryAllocation, with `bytes` as the size asked for; CudaError otherwise): the
/// engine's one error path, callable without a device, so that its translation to Python
/// (MemoryError, matalign.CudaError) is tested on every build with CUDA.
[[noreturn]] void raise_cuda_error(int code, int64_t bytes);

}  // namespace cuda
}  // namespace matalign
