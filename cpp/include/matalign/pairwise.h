/// @file pairwise.h
/// Global metrics' reducers on the tile loop (tiling.h; definitions: docs/METRICS.md): PairSums (CKA with an RBF
/// kernel, distance correlation) and RankCount (exact information imbalance). One streaming
/// pass over the pairs i < j, O(N·M) memory, float64 accumulation in a fixed order (results do
/// not depend on the thread count).
#pragma once

#include <cstdint>
#include <vector>

#include "matalign/common.h"

namespace matalign {

/// Pairwise function of one space.
enum class PairFn {
  distance = 0,  ///< f(i,j) = ‖x_i − x_j‖ (Euclidean; exactly 0 for identical rows)
  rbf = 1,       ///< f(i,j) = exp(−gamma·‖x_i − x_j‖²)
};

struct PairwiseOptions {
  int64_t tile_rows = 0;  ///< rows per tile (0 = automatic, from the number of spaces and d)
  int n_threads = 0;      ///< 0 = all cores
  Simd simd = Simd::automatic;
  /// rank_count of float64 rows: a float32 prefilter decides the comparisons a rigorous error
  /// bound settles, the rest are recomputed in float64 (the same counts, bit for bit)
  bool prefilter = true;
  ProgressFn progress;
};

/// PairSums over M spaces with the same n rows, in one pass (each tile computes the M spaces'
/// tiles once and all M(M+1)/2 products, so a model×model matrix costs about one pass).
///
/// @param[in]  spaces   M views, each n × d_m (any strides)
/// @param[in]  fn       pairwise function, the same for every space
/// @param[in]  gamma    M values (rbf only; ignored for distance)
/// @param[out] rowsums  M × n, rowsums[m*n + i] = Σ_{j≠i} f_m(i, j)
/// @param[out] cross    M × M, cross[a*M + b] = Σ_{i≠j} f_a(i, j)·f_b(i, j)
/// Diagonal terms (i = j) are excluded: distance gives 0 there, rbf gives 1 (callers add them).
template <class T>
void pair_sums(const std::vector<MatrixView<T>>& spaces, PairFn fn, const std::vector<double>& gamma,
               double* rowsums, double* cross, const PairwiseOptions& options);

/// RankCount for exact information imbalance: for each row i and each of its k targets j_t,
///   counts[i*k + t] = #{l ≠ i : d(i,l) < d(i,j_t)} + #{l ≠ i : d(i,l) = d(i,j_t), l < j_t}
/// with d the squared Euclidean distance in y computed exactly as the kNN engine computes it
/// (so rank_y(i, j_t) = 1 + counts[i*k + t] matches the kNN tie rule).
/// @param[in]  y        n × d (any strides)
/// @param[in]  targets  n × k indices in [0, n), != i
/// @param[out] counts   n × k
template <class T>
void rank_count(const MatrixView<T>& y, const int64_t* targets, int64_t k, int64_t* counts,
                const PairwiseOptions& options);

/// Rows [r0, r1) of pair_sums, for a distributed executor (one row block × all columns per
/// worker): rowsums[m*(r1-r0) + (i-r0)] = Σ_{j≠i} f_m(i, j) for i in [r0, r1) and
/// cross[a*M + b] = Σ_{i∈[r0,r1)} Σ_{j≠i} f_a(i, j)·f_b(i, j). Every pair (i, j) with i in the
/// range is visited (no symmetric half), with the column centre, norms and tile arithmetic of
/// pair_sums, so f_m(i, j) is the value pair_sums computes for that pair; the sums are added in
/// a fixed order (per row in column-tile order, the cross sums per row block in order), so the
/// result does not depend on the thread count. Summing the outputs of consecutive ranges in
/// ascending order gives the full sums up to the order of the additions.
template <class T>
void pair_sums_rows(const std::vector<MatrixView<T>>& spaces, PairFn fn,
                    const std::vector<double>& gamma, int64_t r0, int64_t r1, double* rowsums,
                    double* cross, const PairwiseOptions& options);

/// Rows [r0, r1) × columns [c0, c1) of pair_sums, the unit of a block-pair distributed executor
/// (each pair of a block pair (I, J > I) computed once): rowsums[m*(r1-r0) + (i-r0)] =
/// Σ_{j∈[c0,c1), j≠i} f_m(i, j), colsums[m*(c1-c0) + (j-c0)] = Σ_{i∈[r0,r1), i≠j} f_m(i, j) and
/// cross[a*M + b] = Σ_{i∈[r0,r1)} Σ_{j∈[c0,c1), j≠i} f_a(i, j)·f_b(i, j), with the centre, norms
/// and per-pair values of pair_sums_rows (f_m(i, j) is bitwise the value it computes). Fixed
/// order (rows in column-tile order; cross and column sums per row tile block, combined in
/// block order): the result does not depend on the thread count.
template <class T>
void pair_sums_block(const std::vector<MatrixView<T>>& spaces, PairFn fn,
                     const std::vector<double>& gamma, int64_t r0, int64_t r1, int64_t c0,
                     int64_t c1, double* rowsums, double* colsums, double* cross,
                     const PairwiseOptions& options);

/// Rows [r0, r1) of rank_count: targets and counts are (r1-r0) × k (row i - r0). Counts are
/// integers decided by the same scores and thresholds as rank_count, so they equal rows
/// [r0, r1) of rank_count's output exactly (no float32 prefilter: it decides the same counts).
template <class T>
void rank_count_rows(const MatrixView<T>& y, const int64_t* targets, int64_t k, int64_t r0,
                     int64_t r1, int64_t* counts, const PairwiseOptions& options);

/// Peak bytes of pair_sums over spaces of these dimensions (outputs, norms, per-thread tiles,
/// per-row-block sums), from the same tile rule as the call (simd="auto").
int64_t pair_sums_workspace_bytes(int64_t n, const std::vector<int64_t>& dims, int64_t itemsize,
                                  int n_threads, int64_t tile_rows = 0);

/// Peak bytes of rank_count (the (n, k) counts and targets, thresholds, per-thread tiles; for
/// float64 rows the larger of the float32 prefilter's and the float64 path's).
int64_t rank_count_workspace_bytes(int64_t n, int64_t d, int64_t k, int64_t itemsize,
                                   int n_threads);

}  // namespace matalign
