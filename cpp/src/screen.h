// Internal interface of the int8/int16 screens for exact kNN (the driver knn_screen.cpp, the
// quantisation screen_quantise.cpp, the threshold keepers screen_keepers.cpp) and their tile
// kernels (the portable one in knn_screen.cpp, the AVX-512 VNNI ones in kernels_vnni.cpp).
//
// Idea. Each row x (centred: x - μ, μ the database mean, see screen_quantise.h) is quantised
// to int8 with its own scale s (q = round(x / s), |q| <= 127),
// so <q_i, q_j> is an exact int32 and a_ij = s_i s_j <q_i, q_j> approximates <x_i, x_j> with a
// PROVABLE error bound computed from per-row norms:
//     |<x_i, x_j> - a_ij| <= e_i n_j + t_i e_j                (e = |x - s q|, n = |x|, t = |s q|)
// A column j can only be among row i's exact top-k if its upper bound ub_ij = a_ij + m_ij
// reaches the k-th largest lower bound lb = a - m seen so far. The int8 pass keeps exactly
// those candidates (typically k + a few), which are then re-scored exactly (double, the same
// FMA chain as the float64 GEMM) and ranked. The result is the exact graph of the double
// computation, bit for bit, whatever the kernel, tile sizes or thread count; the int8 pass
// only decides which pairs need the exact computation. AVX-512 VNNI does 64 int8 products per
// instruction against 16 float32 FMAs, which is where the speed comes from.
//
// Only plain structs and functions with one definition (compiled for the baseline ISA) cross
// this header, as for kernels.h.
#pragma once

#include <cstdint>

namespace matalign {
namespace detail {

/// One candidate of a row: an upper bound on its exact score (larger is better) and its
/// column (its lower bound went into the row's threshold heap when it was pushed).
struct ScreenCand {
  float ub;
  uint32_t index;
};

struct ScreenSpill;  // screen_keepers.h: growable candidate lists of rows that outgrew `cap`
struct ScreenHist;   // screen_keepers.h: histogram thresholds of rows seeded by a batch

/// The AVX-512 helpers of the sorted-vector keeper and of batch selection
/// (screen_sorted_avx512.cpp, compiled for AVX-512 F/BW/VL like the kernels_<isa>.cpp files).
struct ScreenSortedOps {
  /// Insert v into the first n (< k) ascending entries of h.
  void (*insert)(float* h, int64_t n, float v);
  /// Replace the minimum h[0] of the k ascending entries by v > h[0].
  void (*replace_min)(float* h, int64_t k, float v);
  /// The k-th largest of v[0..n) (1 <= k <= n, no NaN).
  float (*kth_largest)(const float* v, int64_t n, int64_t k);
  /// Whether more than k of v[0..n) are above -inf (kth_largest then applies).
  bool (*kth_largest_applies)(const float* v, int64_t n, int64_t k);
  /// out <- the values of v[0..n) above x, in order (room for n + 16); returns how many.
  int64_t (*collect_above)(const float* v, int64_t n, float x, float* out);
  /// out <- the positions t with v[t] >= x, ascending (room for n + 16); returns how many.
  int64_t (*positions_at_least)(const float* v, int64_t n, float x, uint32_t* out);
};

/// The sorted-vector helpers, or nullptr where they are not compiled (non-x86 builds).
/// Callers take them only where the VNNI kernel runs (which implies AVX-512 F/BW/VL).
const ScreenSortedOps* screen_sorted_ops();

/// Per-row screening state, indexed globally. thr[r] is a lower bound on row r's k-th largest
/// score: there are always k distinct columns whose lower bounds reach it. It is -inf until k
/// pairs were seen and +inf once the row overflowed (it is then searched by the float64
/// kernel). Three ways keep it: a k-entry binary min-heap of the largest lower bounds
/// (portable kernel; thr = the k-th largest lower bound), the same k values sorted in vectors
/// (AVX-512), or, after a batch (k >= 48), a histogram of the lower bounds (heap_n == k + 1;
/// thr = a rounded-down bin edge, up to one bin below the k-th largest lower bound).
/// Candidates whose upper bound reaches thr are appended to the row's list; a full list drops
/// those below thr. Padded by >= 64 entries so SIMD kernels may load whole vectors.
struct ScreenState {
  ScreenCand* cand;  ///< rows × cap
  int32_t* count;    ///< rows
  float* thr;        ///< rows + padding
  uint8_t* overflow; ///< rows: 0 inline list, 2 spilled to a growable list, 1 float64 search
  ScreenSpill* spill;
  float* heap;       ///< rows × hs: the k largest lower bounds seen (thr = their minimum)
  int32_t* heap_n;   ///< rows: entries held (< k until k pairs were seen; k + 1: histogram)
  int64_t k;
  int64_t cap;
  int64_t hs;        ///< stride of `heap`: k (binary min-heap) or round_up(k, 16) + 16 (sorted)
  /// AVX-512 CPUs: `heap` rows sorted ascending, +inf past the entries, kept by these
  /// helpers (screen_sorted_avx512.cpp); null: `heap` rows are binary min-heaps
  const struct ScreenSortedOps* sorted;
  struct ScreenHist* hist;  ///< histogram thresholds (screen_keepers.h), or null
};

/// Per-row quantities of one side (rows or columns), all rounded so the bounds stay valid
/// (see screen_quantise.cpp): scale, |x| and |s q| inflated, the error norm plus the rounding
/// allowance (g = e + c·t), squared norm bounds for l2, and Σ q (VNNI's unsigned-offset fix).
struct ScreenSide {
  const int8_t* q;      ///< rows × dp, row-major, zero-padded (int8 screen)
  const int16_t* q16;   ///< rows × dp (int16 screen; then q is null, and the reverse)
  int64_t dp;           ///< padded depth, a multiple of 4
  const float* s;       ///< scale
  const float* n;       ///< |x| (rounded up)
  const float* t;       ///< |s q| (rounded up)
  const float* e;       ///< |x - s q| (rounded up)
  const float* g;       ///< e + c·t (rounded up)
  const float* nhi;     ///< |x|² rounded down (l2 upper bound)
  const float* nlo;     ///< |x|² rounded up (l2 lower bound)
  const int32_t* qsum;  ///< Σ_k q
  const float* c;       ///< ip only: μ·x + |μ|²/2 (0 for l2), see "Centring" in knn_screen.cpp
  const float* dc;      ///< allowance for c's rounding and its float32 additions
};

struct ScreenTileArgs {
  ScreenSide rows, cols;
  int64_t r0, r1, c0, c1;
  bool l2;
  bool feed_cols;   ///< symmetric loop: each pair also feeds column j's state with row i
  bool diagonal;    ///< diagonal tile of a symmetric loop
  bool exclude_self;
  ScreenState* rs;  ///< state of rows (queries)
  ScreenState* cs;  ///< state of columns (symmetric loop only; same object as rs)
  int8_t* scratch;  ///< per-thread packing scratch (screen_scratch_bytes)
  /// Batch mode (a row's first tile): the kernel writes both bounds of every pair of
  /// screen_batch_rows() rows at a time to `batch` (lower bounds, then upper bounds, rows of
  /// round_up(c1 - c0, 32) floats) and hands them to screen_merge_rows. No column feeding.
  bool batch;
  float* batch_buf;
};

/// Rows per batch of the tile kernels (the VNNI micro-panel height; the portable kernel uses
/// the same), and the batch buffer's floats for tiles of `tile_cols` columns.
constexpr int64_t kScreenBatchRows = 12;
inline int64_t screen_batch_floats(int64_t tile_cols) {
  return 2 * kScreenBatchRows * ((tile_cols + 31) / 32 * 32) + 64;
}

/// Both bounds of pair (i, j) from its approximate product: the portable kernel's scalar
/// evaluation (the VNNI kernels evaluate the same expressions in vectors). Defined once, in
/// screen_keepers.cpp.
void screen_bounds(const ScreenTileArgs& a, int64_t i, int64_t j, float approx, float& lb,
                   float& ub);

/// Merge rows [i0, i0 + nrows) of a batch: each row's heap takes the k largest of its lower
/// bounds and the new ones at once (selection instead of one heap update per column), then
/// the columns whose upper bound reaches the new threshold join the candidate list. The row
/// itself is skipped when a.exclude_self (its entries are overwritten). Defined once, in
/// screen_keepers.cpp.
void screen_merge_rows(const ScreenTileArgs& a, int64_t i0, int64_t nrows, float* lb, float* ub,
                       int64_t ld);

using ScreenTileFn = void (*)(const ScreenTileArgs&);

/// Offer the pair (i, j) with approximate inner product a to row i's state (and, when
/// `to_col`, to column j's state with row i). Computes the margin and both bounds in scalar
/// float and pushes where ub >= the row's threshold. Defined once, in screen_keepers.cpp.
void screen_offer(const ScreenTileArgs& a, int64_t i, int64_t j, float approx, bool to_row,
                  bool to_col);

/// Bytes of packing scratch per thread a VNNI tile kernel needs for tiles of these edges.
int64_t screen_vnni_scratch_bytes(int64_t tile_rows, int64_t tile_cols, int64_t dp);
/// The AVX-512 VNNI tile kernel, or nullptr where it is not compiled.
ScreenTileFn screen_vnni_kernel();
/// The int16 variant (vpdpwssd, 32 products per instruction: twice the float32 FMA rate with
/// ~2^-11 quantisation steps, for large k where the int8 bound leaves too many candidates).
ScreenTileFn screen_vnni16_kernel();
/// Whether this CPU runs the VNNI kernel (AVX-512 F/BW/VL + VNNI, OS-enabled).
bool screen_vnni_supported();

}  // namespace detail
}  // namespace matalign
