/// @file knn.h
/// Exact k-nearest-neighbour graphs on the tile loop (reducer: TopK).
#pragma once

#include <cstdint>

#include "matalign/common.h"

namespace matalign {

enum class Metric { ip = 0, l2 = 1 };

struct KnnOptions {
  int64_t tile_rows = 0;  ///< rows (queries) per tile; 0 = automatic
  int64_t tile_cols = 0;  ///< database columns per inner block; 0 = automatic
  int n_threads = 0;      ///< 0 = all cores (OMP_NUM_THREADS respected)
  bool rescore = false;   ///< recompute candidate scores exactly in double, then re-rank
  Simd simd = Simd::scalar;
  bool simd_auto = true;  ///< ignore `simd` and use simd_best()
  /// int8/int16 screen (knn_screen.cpp): -1 = where it is faster (AVX-512 VNNI and the range
  /// of screen_auto_bits), 0 = never (float GEMM in the input
  /// dtype), 1 = int8, 2 = int16 (portable kernels without VNNI). The screened graph is the
  /// exact graph of the float64 computation: indices and values bit for bit those of
  /// knn_exact<double> on the same rows converted to double.
  int screen = -1;
  /// Metric::l2 only: the point both sides are centred on (d doubles, the caller's; it must
  /// outlive the call), or nullptr for the database's column centre (near its mean). Squared distances do not
  /// depend on it in exact arithmetic; the float GEMM's rounding does (the screen passes its
  /// own centre when it searches a block of the database).
  const double* centre = nullptr;
  ProgressFn progress;
};

/// Exact kNN by largest inner product (Metric::ip) or smallest squared L2 (Metric::l2).
///
/// Self mode (queries == nullptr): the database is x; row i's own index is excluded by INDEX
/// when exclude_self (a duplicate row is still its twin's nearest neighbour). Only tiles with
/// column block >= row block are computed and each pair feeds both rows (half the GEMM work).
/// Query mode: every query row against every database row, nothing excluded.
///
/// Order: best first; ties (equal float values) by lower index. The GEMM accumulates each
/// inner product with one fused multiply-add per dimension in dimension order on every SIMD
/// level, so all levels and all thread counts give bitwise-identical graphs.
///
/// @param[in]  x        database, n × d (any strides)
/// @param[in]  queries  m × d queries, or nullptr for the self graph
/// @param[in]  k        neighbours per row, 1..(n - exclude_self) in self mode, 1..n otherwise
/// @param[out] values   (m or n) × k, C order: inner products or squared L2 distances
/// @param[out] indices  (m or n) × k, C order, database row indices
template <class T>
void knn_exact(const MatrixView<T>& x, const MatrixView<T>* queries, int64_t k, Metric metric,
               bool exclude_self, T* values, int64_t* indices, const KnnOptions& options);

/// Precision screen="auto" picks on a VNNI CPU: 8 (int8), 16 (int16) or 0 (the float GEMM),
/// from the measured crossovers (bench/bench_screen.py, bench/README.md). With w = n·d/256
/// (database rows at D = 256 doing the same GEMM work per query row): self graphs take int8
/// for k <= min(24, w/800), int16 for k <= min(256, w/180); queries int8 for
/// k <= min(48, w/400), int16 for k <= min(256, w/125).
int screen_auto_bits(int64_t k, bool self, int64_t n, int64_t d);

/// Index of the first row of x holding a NaN or ±Inf, or -1 (OpenMP, any strides).
template <class T>
int64_t first_nonfinite_row(const MatrixView<T>& x, int n_threads = 0);

}  // namespace matalign
