/// @file knn.h
/// Exact k-nearest-neighbour graphs on the tile loop (reducer: TopK).
#pragma once

#include <cstdint>
#include <string>

#include "matalign/common.h"

namespace matalign {

enum class Metric { ip = 0, l2 = 1 };

/// The integer screen of exact kNN (knn_screen.cpp): `automatic` takes it where it is faster
/// (the CPU runs the AVX-512 VNNI kernel and screen_auto(...) picks a precision), `off` never
/// (the float GEMM in the input dtype), `int8` / `int16` always where it applies (portable
/// kernels without VNNI). The screened graph is the exact graph of the float64 computation:
/// indices and values bit for bit those of knn_exact<double> on the same rows converted to
/// double.
enum class Screen { automatic = 0, off = 1, int8 = 2, int16 = 3 };

/// "auto" | "off" | "int8" | "int16"
const char* screen_name(Screen s);
/// Parse "auto" | "off" | "int8" | "int16"; throws std::invalid_argument for other names.
Screen screen_parse(const std::string& name);

struct KnnOptions {
  int64_t tile_rows = 0;  ///< rows (queries) per tile; 0 = automatic
  int64_t tile_cols = 0;  ///< database columns per inner block; 0 = automatic
  int n_threads = 0;      ///< 0 = all cores (OMP_NUM_THREADS respected)
  bool rescore = false;   ///< recompute candidate scores exactly in double, then re-rank
  Simd simd = Simd::automatic;
  Screen screen = Screen::automatic;
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

/// The precision Screen::automatic takes on a CPU that runs the VNNI kernel: Screen::int8,
/// Screen::int16 or Screen::off (the float GEMM), from measured crossovers that grow with the
/// GEMM work n·d per query row (bench/bench_screen.py; the figures are in bench/README.md).
Screen screen_auto(int64_t k, bool self, int64_t n, int64_t d);

/// Peak bytes knn_exact allocates for these sizes and options (outputs, per-row state and
/// per-thread scratch), computed from the same tile and capacity rules as the call itself.
/// `screen` is the precision that will run (automatic counts the float GEMM's path: the
/// caller decides whether the screen fits before it lets it run); `self` = no queries (m = n).
int64_t knn_workspace_bytes(int64_t n, int64_t m, int64_t d, int64_t k, int64_t itemsize,
                            bool l2, bool rescore, int n_threads, int64_t tile_rows,
                            int64_t tile_cols, Screen screen, bool self);

/// One task of the block-pair self graph: rows [i0, i1) (block I) and [j0, j1) (block J,
/// j0 >= i1, or the same block I == J) of x. Every pair (i in I, j in J) is computed once, by
/// the same tile kernel as the float path of knn_exact's symmetric loop (the same FMA chain,
/// the same l2 centre `centre` and row norms), and offered to both rows. Returns the partial
/// top lists, best first (higher score, ties to the lower index), of rows I over columns J
/// (k_i = min(k, |J|), or min(k, |I| - 1) when I == J, self excluded by index) and of rows J
/// over columns I (k_j = min(k, |I|); unused when I == J). Scores are raw: inner products
/// (ip) or negated squared distances (l2, not clipped at 0), so that a merge of the partial
/// lists of a row by (score desc, index asc) is knn_exact's row with Screen::off.
/// @param centre  Metric::l2: the d doubles knn_exact uses (detail::column_centre of all of x)
template <class T>
void knn_block_pair(const MatrixView<T>& x, int64_t i0, int64_t i1, int64_t j0, int64_t j1,
                    int64_t k, Metric metric, const double* centre, T* score_i,
                    int64_t* index_i, T* score_j, int64_t* index_j, const KnnOptions& options);

/// The screened form of knn_block_pair on the pair's local matrix x (rows [0, ni) = block I,
/// [ni, x.rows) = block J, or all of x = the same block), k <= both blocks' sizes (and
/// <= ni - 1 for the same block): float64 scores (the float64 graph's, raw), local indices.
/// Returns false, writing nothing useful, where the screen does not apply or a row overflows
/// its candidate budget (run knn_block_pair<double> on the rows converted to double then: the
/// screened graph is that float64 graph).
template <class T>
bool knn_block_pair_screened(const MatrixView<T>& x, int64_t ni, int64_t k, Metric metric,
                             const double* centre, Screen screen, double* score_i,
                             int64_t* index_i, double* score_j, int64_t* index_j,
                             const KnnOptions& options);

/// The l2 centre knn_exact computes for database x (d doubles).
template <class T>
void knn_centre(const MatrixView<T>& x, int n_threads, double* mu);

/// Index of the first row of x holding a NaN or ±Inf, or -1 (OpenMP, any strides).
template <class T>
int64_t first_nonfinite_row(const MatrixView<T>& x, int n_threads = 0);

}  // namespace matalign
