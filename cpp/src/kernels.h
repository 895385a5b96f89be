// Internal interface between the generic engine (knn.cpp, pairwise.cpp, gram.cpp,
// knn_screen.cpp) and the per-ISA kernel files.
//
// SIMD dispatch: the one mechanism of the engine. Code that needs a wider ISA than the x86-64
// baseline lives in its own file, compiled with that ISA's -m flags (cpp/CMakeLists.txt sets
// them per file, explicit ISA baselines only, never tuned to the build machine):
//   kernels_{scalar,avx2,avx512}.cpp  the GEMM/kNN/pack kernels (kernels.inc, included once
//                                     per ISA with that ISA's vector traits) -> Kernels<T>
//   kernels_vnni.cpp                  the kNN screen's AVX-512 VNNI tile kernels (screen.h)
//   screen_sorted_avx512.cpp          the screen's AVX-512 sorted-vector keeper (screen.h)
// Each file exports only getters that return a table of plain function pointers; the generic
// code picks a table at run time from the CPU's features (simd.cpp: simd_supported,
// simd_best; Simd::automatic resolves to the best level) and calls through it. Only plain
// structs and function pointers cross these headers, and everything else in an ISA file has
// internal linkage, so no inline function compiled for a wide ISA can leak into baseline code
// through the linker (which is why there are no target(...) attributes or target_clones in
// the engine). All levels give bitwise-identical results: every file is compiled with
// -ffp-contract=off and the kernels use the same operation order.
#pragma once

#include <cstdint>

#include "matalign/common.h"

namespace matalign {
namespace detail {

/// A kNN candidate: score (larger is better) and database index.
template <class T>
struct Cand {
  T score;
  int64_t index;
};

/// Order of candidates: higher score first; equal scores: lower index first.
template <class T>
inline bool cand_better(const Cand<T>& a, const Cand<T>& b) {
  return a.score > b.score || (a.score == b.score && a.index < b.index);
}

/// Per-row top-k state: an unsorted buffer of `cap` >= k candidates per row. Candidates are
/// appended while they beat the row's current k-th best (thr, thr_index); a full buffer is
/// cut back to its best k with a selection (O(cap)), which is several times cheaper per
/// insert than a binary heap for k ≳ 30 and gives the same set (a total order).
/// thr[r] is -inf until the first cut, so a SIMD `score >= thr` test filters candidates.
template <class T>
struct TopKState {
  Cand<T>* cand;       ///< rows × cap
  int32_t* count;      ///< rows
  T* thr;              ///< rows (+ padding to a multiple of the widest panel)
  int64_t* thr_index;  ///< rows
  int64_t k;
  int64_t cap;
};

/// One tile of the kNN loop. Scores: ip -> <a_i, b_j>; l2 -> -(|a_i|² + |b_j|² - 2<a_i,b_j>),
/// computed as (2·ip) − (n_i + n_j), which is symmetric in i and j bit for bit.
template <class T>
struct KnnTileArgs {
  const T* pa;  ///< packed rows [r0, r1): panels of mr rows, each panel mr*d, k-major
  const T* pb;  ///< packed cols [c0, c1): panels of nr cols, each panel nr*d, k-major
  int64_t d;
  int64_t r0, r1, c0, c1;
  const T* norm_r;  ///< squared norms of rows, indexed globally (l2 only)
  const T* norm_c;  ///< squared norms of cols, indexed globally, padded by >= nr (l2 only)
  bool l2;
  bool feed_cols;     ///< symmetric loop: each pair also feeds column j's heap with row i
  bool diagonal;      ///< diagonal tile of a symmetric loop: only pairs j > i (j >= i if !exclude_self)
  bool exclude_self;
  TopKState<T> rows;  ///< heaps of rows, indexed globally
  TopKState<T> cols;  ///< heaps of cols, indexed globally (same arrays as rows when symmetric)
};

/// One tile of rank_count's float32 prefilter at k = 1 (see pairwise.cpp): for the tile's
/// pairs (i, j) (j > i on a diagonal tile), from the float32 score and its error bound, count
/// the rows' and columns' certain "closer than the target" decisions and flag the ambiguous
/// ones (ambm: bit 0 row side, bit 1 column side).
struct PrefilterK1Args {
  const float* g;  ///< R × C inner products, leading dimension P
  int64_t P, R, C;
  bool diagonal;
  const float *nf_r, *rt_r, *thi_r, *tlo_r;  ///< rows: norms, root bounds, target thresholds
  const float *nf_c, *rt_c, *thi_c, *tlo_c;  ///< the same for columns
  float c_w;          ///< error-bound coefficient
  int32_t* rowcnt;    ///< R
  uint8_t* rowamb;    ///< R
  int32_t* colcnt;    ///< C (added to)
  uint8_t* colamb;    ///< C (or-ed into)
  uint8_t* ambm;      ///< R × P byte map
};

template <class T>
struct Kernels {
  int mr = 0;  ///< rows per micro-panel
  int nr = 0;  ///< columns per micro-panel
  /// Pack rows [r0, r1) of x into panels of `panel` rows, k-major, zero-padded. With a
  /// centre mu (d doubles; nullptr = none) each element is T(double(x_ik) − mu_k): the
  /// translation-invariant metrics compute on centred rows (no ‖x‖² + ‖y‖² − 2⟨x, y⟩
  /// cancellation on data far from the origin).
  void (*pack)(const T* data, int64_t row_stride, int64_t col_stride, int64_t d, int64_t r0,
               int64_t r1, int panel, T* out, const double* mu) = nullptr;
  /// out[i - r0] = Σ_k x_ik² with one FMA per element in k order (the GEMM's order, so a
  /// duplicate row's squared distance is exactly 0); with mu, of the centred elements exactly
  /// as `pack` rounds them.
  void (*norms)(const T* data, int64_t row_stride, int64_t col_stride, int64_t d, int64_t r0,
                int64_t r1, T* out, const double* mu) = nullptr;
  void (*knn_tile)(const KnnTileArgs<T>& args) = nullptr;
  /// out[i*ldo + j] = <packed row i, packed col j> for i < rows, j < cols (tile producer for
  /// the PairSums and RankCount reducers).
  void (*gemm_tile)(const T* pa, const T* pb, int64_t d, int64_t rows, int64_t cols, T* out,
                    int64_t ldo) = nullptr;
  /// rank_count's float32 prefilter of one tile at k = 1 (pairwise.cpp; Kernels<float> only).
  void (*prefilter_k1)(const struct PrefilterK1Args& args) = nullptr;
  /// out[c] = Σ_k x[k]·y_c[k] in double for c < ny (<= 16), one FMA per k in k order: the
  /// chain of the float64 GEMM, so a re-scored pair equals the float64 kernel's bit for bit.
  /// x is a contiguous double row; y_c rows of T with element stride ys. With mu (nullptr =
  /// none) the y elements are centred first, double(y_ck) − mu_k, as `pack` centres them in
  /// the float64 kernel (x is passed centred by the caller).
  void (*dots_f64)(const double* x, const T* const* y, int64_t ys, int64_t d, int ny,
                   double* out, const double* mu) = nullptr;
};

/// mu[c] = the centre the translation-invariant computations subtract from column c of x: its
/// mean rounded to a multiple of g = 2^⌊log2 sd⌋ (sd the column's standard deviation; the mean
/// itself where sd is 0). Within sd/2 of the mean, so the centred rows are as small as the
/// data's spread allows; and data on a coarse grid stays on it (small integers stay exact
/// integers, so exact ties stay exact), while a column whose mean is within g/2 of 0 is not
/// moved at all. Moments in double over blocks of 4096 rows, taken relative to the first row
/// (no cancellation at an offset), one partial per block in parallel, the blocks then added
/// in order: a memory-mapped input is streamed once and the result does not depend on the
/// thread count. Defined in knn.cpp.
template <class T>
void column_centre(const MatrixView<T>& x, int n_threads, double* mu);

/// The centre of one column from its moments relative to ref (s1 = Σ (x − ref),
/// s2 = Σ (x − ref)², n rows): the rule of column_centre.
double centre_from_moments(double ref, double s1, double s2, int64_t n);

Kernels<float> kernels_f32(Simd s);
Kernels<double> kernels_f64(Simd s);

/// kernels_f32 / kernels_f64 by element type (generic code only; not for the ISA files).
template <class T>
Kernels<T> kernels_for(Simd s);
template <>
inline Kernels<float> kernels_for<float>(Simd s) { return kernels_f32(s); }
template <>
inline Kernels<double> kernels_for<double>(Simd s) { return kernels_f64(s); }

/// Smallest multiple of m that is >= a.
inline int64_t round_up(int64_t a, int64_t m) { return (a + m - 1) / m * m; }

/// out[i] = Σ_k x_ik² for every row of x (centred on mu when given), with the kernels' norms
/// (the GEMM's FMA order, so squared distances are kNN-identical and exactly 0 for twins), in
/// chunks of 1024 rows on nt threads. Generic code only (not for the ISA files).
template <class T>
void parallel_norms(const Kernels<T>& K, const MatrixView<T>& x, T* out, int nt,
                    const double* mu = nullptr) {
  const int64_t n = x.rows, chunk = 1024;
  const int64_t nchunks = (n + chunk - 1) / chunk;
#pragma omp parallel for num_threads(nt) schedule(static)
  for (int64_t c = 0; c < nchunks; ++c) {
    const int64_t r0 = c * chunk, r1 = n < r0 + chunk ? n : r0 + chunk;
    K.norms(x.data, x.row_stride, x.col_stride, x.cols, r0, r1, out + r0, mu);
  }
}

// One getter per ISA file.
Kernels<float> kernels_f32_scalar();
Kernels<double> kernels_f64_scalar();
Kernels<float> kernels_f32_avx2();
Kernels<double> kernels_f64_avx2();
Kernels<float> kernels_f32_avx512();
Kernels<double> kernels_f64_avx512();

}  // namespace detail
}  // namespace matalign
