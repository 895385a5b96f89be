// PairSums and RankCount reducers on the one tile loop (tiling.cpp) with the per-ISA GEMM
// tile producer (kernels.inc). See pairwise.h.
#include "matalign/pairwise.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>
#include <vector>

#include "kernels.h"
#include "matalign/tiling.h"

namespace matalign {

namespace {

using detail::kernels_for;
using detail::round_up;


// Tiles here are reduced whole (not fused into the micro-kernel), so the M ip tiles of a tile
// (M·P²·sizeof(T)) should stay near L2: P shrinks with the number of spaces.
int64_t auto_pair_tile(int64_t m_spaces, int64_t max_d, int64_t elem) {
  const double budget = 2.0 * 1024 * 1024;
  int64_t p = static_cast<int64_t>(std::sqrt(budget / (static_cast<double>(m_spaces) * elem)));
  const int64_t by_d = (1024 * 1024) / std::max<int64_t>(1, max_d * elem);
  p = std::min(p, std::max<int64_t>(96, by_d));
  p = std::max<int64_t>(96, std::min<int64_t>(768, p));
  return p / 48 * 48;
}

// Squared norms with the GEMM's FMA order (kNN-identical squared distances; exact 0 for twins).
template <class T>
void norms_all(const detail::Kernels<T>& K, const MatrixView<T>& x, T* out, int nt) {
  const int64_t n = x.rows, chunk = 1024;
  const int64_t nchunks = (n + chunk - 1) / chunk;
#pragma omp parallel for num_threads(nt) schedule(static)
  for (int64_t c = 0; c < nchunks; ++c) {
    const int64_t r0 = c * chunk, r1 = std::min(n, r0 + chunk);
    K.norms(x.data, x.row_stride, x.col_stride, x.cols, r0, r1, out + r0);
  }
}

}  // namespace

template <class T>
void pair_sums(const std::vector<MatrixView<T>>& spaces, PairFn fn, const std::vector<double>& gamma,
               double* rowsums, double* cross, const PairwiseOptions& opt) {
  const int64_t M = static_cast<int64_t>(spaces.size());
  MATALIGN_CHECK(M >= 1, "pair_sums: need at least one space");
  const int64_t n = spaces[0].rows;
  int64_t max_d = 0;
  for (int64_t m = 0; m < M; ++m) {
    MATALIGN_CHECK(spaces[m].rows == n, "pair_sums: space ", m, " has ", spaces[m].rows,
                   " rows, space 0 has ", n);
    MATALIGN_CHECK(spaces[m].cols > 0, "pair_sums: space ", m, " has no columns");
    max_d = std::max(max_d, spaces[m].cols);
  }
  MATALIGN_CHECK(n >= 2, "pair_sums: need at least 2 rows, got ", n);
  if (fn == PairFn::rbf)
    MATALIGN_CHECK(static_cast<int64_t>(gamma.size()) == M, "pair_sums: need one gamma per space");
  const Simd simd = opt.simd_auto ? simd_best() : opt.simd;
  MATALIGN_CHECK(simd_supported(simd), "pair_sums: SIMD level ", simd_name(simd), " unavailable");
  const detail::Kernels<T> K = kernels_for<T>(simd);
  const int nt = resolve_threads(opt.n_threads);
  MATALIGN_CHECK(opt.tile_rows <= (int64_t(1) << 20), "pair_sums: tile_rows too large");
  const int64_t P = std::min(opt.tile_rows > 0 ? opt.tile_rows : auto_pair_tile(M, max_d, sizeof(T)),
                             round_up(n, 48));

  std::vector<std::vector<T>> norms(static_cast<size_t>(M));
  for (int64_t m = 0; m < M; ++m) {
    norms[m].resize(static_cast<size_t>(n));
    norms_all(K, spaces[m], norms[m].data(), nt);
  }

  // Per-thread scratch: for each space, packed row and column tiles and the ip tile; plus the
  // f values of one tile row for every space, and column partial sums.
  const int64_t nb = (n + P - 1) / P;
  std::vector<int64_t> pack_off(static_cast<size_t>(M + 1), 0);
  for (int64_t m = 0; m < M; ++m)
    pack_off[m + 1] = pack_off[m] + mul_checked(round_up(P, K.mr) + round_up(P, K.nr), spaces[m].cols, "pack");
  const int64_t tile_elems = mul_checked(M, mul_checked(P, P, "tile"), "tile buffer");
  const int64_t per_thread_T = pack_off[M] + tile_elems;
  const int64_t per_thread_D = M * P /*f row*/ + M * P /*col sums*/ + M * M /*tile cross*/;
  std::vector<T> scratch_T(static_cast<size_t>(mul_checked(nt, per_thread_T, "scratch")));
  std::vector<double> scratch_D(static_cast<size_t>(mul_checked(nt, per_thread_D, "scratch")));
  // Per-row-block partial sums of cross: a tile (I, J ≥ I) adds to block I's slot; a block's
  // slot is touched by at most one tile per round, so the combination order is fixed.
  std::vector<double> block_cross(static_cast<size_t>(mul_checked(nb, M * M, "block sums")), 0.0);
  std::fill(rowsums, rowsums + M * n, 0.0);

  TileLoopOptions lo;
  lo.n_threads = nt;
  lo.progress = opt.progress;
  for_each_tile(
      n, n, P, P, true,
      [&](const Tile& t, int tid) {
        T* base = scratch_T.data() + static_cast<size_t>(tid) * per_thread_T;
        double* dbase = scratch_D.data() + static_cast<size_t>(tid) * per_thread_D;
        const int64_t R = t.r1 - t.r0, C = t.c1 - t.c0;
        T* tiles = base + pack_off[M];
        for (int64_t m = 0; m < M; ++m) {
          const MatrixView<T>& x = spaces[m];
          const int64_t d = x.cols;
          T* pa = base + pack_off[m];
          T* pb = pa + round_up(P, K.mr) * d;
          K.pack(x.data, x.row_stride, x.col_stride, d, t.r0, t.r1, K.mr, pa);
          K.pack(x.data, x.row_stride, x.col_stride, d, t.c0, t.c1, K.nr, pb);
          K.gemm_tile(pa, pb, d, R, C, tiles + m * P * P, P);
        }
        double* frow = dbase;             // M × P
        double* colsum = dbase + M * P;   // M × P
        double* tcross = colsum + M * P;  // M × M
        std::fill(colsum, colsum + M * P, 0.0);
        std::fill(tcross, tcross + M * M, 0.0);
        for (int64_t ii = 0; ii < R; ++ii) {
          const int64_t i = t.r0 + ii;
          const int64_t jj0 = t.diagonal ? ii + 1 : 0;
          if (jj0 >= C) continue;
          for (int64_t m = 0; m < M; ++m) {
            const T* g = tiles + m * P * P + ii * P;
            const T* nm = norms[m].data();
            const T ni = nm[i];
            double* f = frow + m * P;
            double rs = 0.0;
            if (fn == PairFn::distance) {
              for (int64_t jj = jj0; jj < C; ++jj) {
                const T s = g[jj] * T(2) - (ni + nm[t.c0 + jj]);  // −d², as the kNN engine
                const double d2 = -static_cast<double>(s);
                const double v = d2 > 0.0 ? std::sqrt(d2) : 0.0;
                f[jj] = v;
                rs += v;
              }
            } else {
              const double gm = gamma[m];
              for (int64_t jj = jj0; jj < C; ++jj) {
                const T s = g[jj] * T(2) - (ni + nm[t.c0 + jj]);
                const double d2 = -static_cast<double>(s);
                const double v = std::exp(-gm * (d2 > 0.0 ? d2 : 0.0));
                f[jj] = v;
                rs += v;
              }
            }
            rowsums[m * n + i] += rs;
            double* cs = colsum + m * P;
            for (int64_t jj = jj0; jj < C; ++jj) cs[jj] += f[jj];
          }
          for (int64_t a = 0; a < M; ++a) {
            const double* fa = frow + a * P;
            for (int64_t b = a; b < M; ++b) {
              const double* fb = frow + b * P;
              double acc = 0.0;
              for (int64_t jj = jj0; jj < C; ++jj) acc += fa[jj] * fb[jj];
              tcross[a * M + b] += acc;
            }
          }
        }
        for (int64_t m = 0; m < M; ++m)
          for (int64_t jj = 0; jj < C; ++jj) rowsums[m * n + t.c0 + jj] += colsum[m * P + jj];
        double* slot = block_cross.data() + t.row_block * M * M;
        for (int64_t a = 0; a < M; ++a)
          for (int64_t b = a; b < M; ++b) slot[a * M + b] += 2.0 * tcross[a * M + b];
      },
      lo);

  std::fill(cross, cross + M * M, 0.0);
  for (int64_t blk = 0; blk < nb; ++blk)
    for (int64_t a = 0; a < M; ++a)
      for (int64_t b = a; b < M; ++b) cross[a * M + b] += block_cross[blk * M * M + a * M + b];
  for (int64_t a = 0; a < M; ++a)
    for (int64_t b = 0; b < a; ++b) cross[a * M + b] = cross[b * M + a];
}

template <class T>
void rank_count(const MatrixView<T>& y, const int64_t* targets, int64_t k, int64_t* counts,
                const PairwiseOptions& opt) {
  const int64_t n = y.rows, d = y.cols;
  MATALIGN_CHECK(n >= 2 && d > 0, "rank_count: need n >= 2 rows and d > 0, got (", n, ", ", d, ")");
  MATALIGN_CHECK(k >= 1 && k <= n - 1, "rank_count: k must be in 1..", n - 1, ", got ", k);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t t = 0; t < k; ++t) {
      const int64_t j = targets[i * k + t];
      MATALIGN_CHECK(j >= 0 && j < n && j != i, "rank_count: target ", t, " of row ", i, " is ", j,
                     " (must be in [0, ", n, ") and != ", i, ")");
    }
  const Simd simd = opt.simd_auto ? simd_best() : opt.simd;
  MATALIGN_CHECK(simd_supported(simd), "rank_count: SIMD level ", simd_name(simd), " unavailable");
  const detail::Kernels<T> K = kernels_for<T>(simd);
  const int nt = resolve_threads(opt.n_threads);
  MATALIGN_CHECK(opt.tile_rows <= (int64_t(1) << 20), "rank_count: tile_rows too large");
  const int64_t P = std::min(opt.tile_rows > 0 ? opt.tile_rows : auto_pair_tile(1, d, sizeof(T)),
                             round_up(n, 48));

  std::vector<T> nrm(static_cast<size_t>(n));
  norms_all(K, y, nrm.data(), nt);
  // Threshold scores s(i, j_t) = 2·ip − (n_i + n_j), ip by one FMA per element in element order:
  // bit-identical to the tile's value for the same pair.
  std::vector<T> thr(static_cast<size_t>(mul_checked(n, k, "thresholds")));
#pragma omp parallel for num_threads(nt) schedule(static)
  for (int64_t i = 0; i < n; ++i)
    for (int64_t t = 0; t < k; ++t) {
      const int64_t j = targets[i * k + t];
      T ip = T(0);
      for (int64_t c = 0; c < d; ++c) {
        const T a = y(i, c), b = y(j, c);
        if constexpr (std::is_same<T, float>::value) ip = __builtin_fmaf(a, b, ip);
        else ip = __builtin_fma(a, b, ip);
      }
      thr[i * k + t] = ip * T(2) - (nrm[i] + nrm[j]);
    }
  std::fill(counts, counts + n * k, int64_t(0));

  const int64_t pack = mul_checked(round_up(P, K.mr) + round_up(P, K.nr), d, "pack");
  const int64_t per_thread = pack + P * P;
  std::vector<T> scratch(static_cast<size_t>(mul_checked(nt, per_thread, "scratch")));
  TileLoopOptions lo;
  lo.n_threads = nt;
  lo.progress = opt.progress;
  for_each_tile(
      n, n, P, P, true,
      [&](const Tile& t, int tid) {
        T* pa = scratch.data() + static_cast<size_t>(tid) * per_thread;
        T* pb = pa + round_up(P, K.mr) * d;
        T* g = pa + pack;
        const int64_t R = t.r1 - t.r0, C = t.c1 - t.c0;
        K.pack(y.data, y.row_stride, y.col_stride, d, t.r0, t.r1, K.mr, pa);
        K.pack(y.data, y.row_stride, y.col_stride, d, t.c0, t.c1, K.nr, pb);
        K.gemm_tile(pa, pb, d, R, C, g, P);
        for (int64_t ii = 0; ii < R; ++ii) {
          const int64_t i = t.r0 + ii;
          const int64_t jj0 = t.diagonal ? ii + 1 : 0;
          const T ni = nrm[i];
          const T* thr_i = thr.data() + i * k;
          const int64_t* tg_i = targets + i * k;
          int64_t* cnt_i = counts + i * k;
          for (int64_t jj = jj0; jj < C; ++jj) {
            const int64_t l = t.c0 + jj;
            const T s = g[ii * P + jj] * T(2) - (ni + nrm[l]);
            // row i ranks l; row l ranks i (the same s: the score is symmetric bit for bit)
            for (int64_t q = 0; q < k; ++q)
              cnt_i[q] += (s > thr_i[q]) | ((s == thr_i[q]) & (l < tg_i[q]));
            const T* thr_l = thr.data() + l * k;
            const int64_t* tg_l = targets + l * k;
            int64_t* cnt_l = counts + l * k;
            for (int64_t q = 0; q < k; ++q)
              cnt_l[q] += (s > thr_l[q]) | ((s == thr_l[q]) & (i < tg_l[q]));
          }
        }
      },
      lo);
}

template void pair_sums<float>(const std::vector<MatrixView<float>>&, PairFn, const std::vector<double>&,
                               double*, double*, const PairwiseOptions&);
template void pair_sums<double>(const std::vector<MatrixView<double>>&, PairFn,
                                const std::vector<double>&, double*, double*, const PairwiseOptions&);
template void rank_count<float>(const MatrixView<float>&, const int64_t*, int64_t, int64_t*,
                                const PairwiseOptions&);
template void rank_count<double>(const MatrixView<double>&, const int64_t*, int64_t, int64_t*,
                                 const PairwiseOptions&);

}  // namespace matalign
