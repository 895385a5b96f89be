// PairSums and RankCount reducers on the one tile loop (tiling.cpp) with the per-ISA GEMM
// tile producer (kernels.inc). See pairwise.h.
#include "matalign/pairwise.h"

#include <algorithm>
#include <cmath>
#include <cstring>
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

// Tile edge of a call: the user's, else automatic; never past the data.
int64_t pair_tile(int64_t tile_rows, int64_t m_spaces, int64_t max_d, int64_t elem, int64_t n) {
  return std::min(tile_rows > 0 ? tile_rows : auto_pair_tile(m_spaces, max_d, elem), round_up(n, 48));
}

// Elements of a packed row tile plus a packed column tile of edge P and depth d.
int64_t pair_pack(int64_t P, int64_t d, int mr, int nr) {
  return mul_checked(round_up(P, mr) + round_up(P, nr), d, "pack");
}

// Per-thread scratch of rank_count's float32 prefilter (floats): packed tiles, the tile, the
// k = 1 byte map and row counts.
int64_t prefilter_per_thread(int64_t P, int64_t d, int mr, int nr) {
  return pair_pack(P, d, mr, nr) + P * P + (P * P + 3) / 4 + P;
}

// The column centre of x (detail::column_centre, near the mean): every quantity here (distances, RBF values, distance ranks) is
// translation invariant, so the GEMM runs on centred rows and its rounding scales with the
// spread of the rows, not with their distance from the origin.
template <class T>
std::vector<double> centre_of(const MatrixView<T>& x, int nt) {
  std::vector<double> mu(static_cast<size_t>(x.cols));
  detail::column_centre(x, nt, mu.data());
  return mu;
}

// What both PairSums drivers (all rows, a row range) need per space before the tile loop: the
// centre and centred norms of all n rows, and each space's offset in a thread's packed panels.
template <class T>
struct PairSpaces {
  std::vector<std::vector<T>> norms;
  std::vector<std::vector<double>> mus;
  std::vector<int64_t> pack_off;
};

template <class T>
PairSpaces<T> pair_spaces(const std::vector<MatrixView<T>>& spaces, const detail::Kernels<T>& K,
                          int64_t P, int nt) {
  const size_t M = spaces.size();
  PairSpaces<T> ps{std::vector<std::vector<T>>(M), std::vector<std::vector<double>>(M),
                   std::vector<int64_t>(M + 1, 0)};
  for (size_t m = 0; m < M; ++m) {
    ps.mus[m] = centre_of(spaces[m], nt);
    ps.norms[m].resize(static_cast<size_t>(spaces[m].rows));
    detail::parallel_norms(K, spaces[m], ps.norms[m].data(), nt, ps.mus[m].data());
    ps.pack_off[m + 1] = ps.pack_off[m] + pair_pack(P, spaces[m].cols, K.mr, K.nr);
  }
  return ps;
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
  const Simd simd = simd_resolve(opt.simd);
  MATALIGN_CHECK(simd_supported(simd), "pair_sums: SIMD level ", simd_name(simd), " unavailable");
  const detail::Kernels<T> K = kernels_for<T>(simd);
  const int nt = resolve_threads(opt.n_threads, double(n) * double(n) * double(max_d * M));
  MATALIGN_CHECK(opt.tile_rows <= (int64_t(1) << 20), "pair_sums: tile_rows too large");
  const int64_t P = pair_tile(opt.tile_rows, M, max_d, sizeof(T), n);

  PairSpaces<T> ps = pair_spaces(spaces, K, P, nt);
  const auto& norms = ps.norms;
  const auto& mus = ps.mus;
  const auto& pack_off = ps.pack_off;

  // Per-thread scratch: for each space, packed row and column tiles and the ip tile; plus the
  // f values of one tile row for every space, and column partial sums.
  const int64_t nb = (n + P - 1) / P;
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
          K.pack(x.data, x.row_stride, x.col_stride, d, t.r0, t.r1, K.mr, pa, mus[m].data());
          K.pack(x.data, x.row_stride, x.col_stride, d, t.c0, t.c1, K.nr, pb, mus[m].data());
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

namespace {

// RankCount of float64 rows through a float32 prefilter: the tile GEMM runs in float32 on a
// float32 copy (twice the float64 FMA rate), and each comparison "s(i,l) vs threshold" is
// decided from the float32 score when a rigorous bound on its error settles it; only the
// pairs within the bound of a threshold are recomputed with the float64 GEMM's FMA chain and
// decided exactly. The counts are therefore those of the float64 computation, bit for bit.
//
// Bound. With u = 2^-24, converting both rows to float32 moves <y_i, y_l> by <= 2.01u·Σ|y y|,
// the float32 dot adds <= (d+2)u·Σ|y y| (any summation order), and Σ|y y| <= |y_i||y_l|; the
// score 2·ip − (N_i + N_l) and its comparison with a float32 copy of the float64 threshold add
// a few u·(N_i + N_l + 2|y_i||y_l|). All of it is below w_il = (2d + 40)·u·(|y_i| + |y_l|)² +
// (tiny absolute), which is used on both sides of every comparison.
// Returns false (nothing written) where float32 cannot hold the rows safely (an entry outside
// [1e-15, 1e15] in magnitude, other than 0).
bool rank_count_prefiltered(const MatrixView<double>& y, const int64_t* targets, int64_t k,
                         int64_t* counts, const PairwiseOptions& opt) {
  const int64_t n = y.rows, d = y.cols;
  const Simd simd = simd_resolve(opt.simd);
  const detail::Kernels<float> K = kernels_for<float>(simd);
  const detail::Kernels<double> K64 = kernels_for<double>(simd);
  const int nt = resolve_threads(opt.n_threads, double(n) * double(n) * double(d));
  // Centred rows throughout (y' = y − μ, as rank_count's float64 kernel packs them): the
  // float32 copy, the norms and the exact scores; the bound below is in terms of y'.
  const std::vector<double> mu = centre_of(y, nt);
  std::vector<float> yf(static_cast<size_t>(mul_checked(n, d, "float32 copy")));
  int bad = 0;
#pragma omp parallel for num_threads(nt) schedule(static) reduction(| : bad)
  for (int64_t r = 0; r < n; ++r)
    for (int64_t c = 0; c < d; ++c) {
      const double v = y(r, c) - mu[c];
      const double a = std::fabs(v);
      if (v != 0.0 && !(a >= 1e-15 && a <= 1e15)) bad = 1;
      yf[r * d + c] = static_cast<float>(v);
    }
  if (bad) return false;
  // float64 norms with the GEMM's chain (exact scores), float32 copies for the prefilter
  std::vector<double> nrm(static_cast<size_t>(n));
  detail::parallel_norms(K64, y, nrm.data(), nt, mu.data());
  const double u = std::ldexp(1.0, -24);
  const float c_w = static_cast<float>((2.0 * d + 40.0) * u * 1.001);
  std::vector<float> nf(static_cast<size_t>(n)), rootf(static_cast<size_t>(n));
  for (int64_t r = 0; r < n; ++r) {
    nf[r] = static_cast<float>(nrm[r]);
    rootf[r] = static_cast<float>(std::sqrt(nrm[r]) * (1.0 + 1e-6));
  }
  // Exact float64 thresholds (the same chain), with float32 outer copies for the prefilter.
  std::vector<double> thr(static_cast<size_t>(mul_checked(n, k, "thresholds")));
  std::vector<float> thr_hi(thr.size()), thr_lo(thr.size());
  auto exact_score = [&](int64_t i, int64_t l) {
    const double* yl = &y(l, 0);
    double ip;
    thread_local std::vector<double> row;  // row i centred (one buffer per thread)
    row.resize(static_cast<size_t>(d));
    double* ri = row.data();
    for (int64_t c = 0; c < d; ++c) ri[c] = y(i, c) - mu[c];
    K64.dots_f64(ri, &yl, y.col_stride, d, 1, &ip, mu.data());
    return ip * 2.0 - (nrm[i] + nrm[l]);
  };
#pragma omp parallel for num_threads(nt) schedule(static)
  for (int64_t i = 0; i < n; ++i)
    for (int64_t t = 0; t < k; ++t) {
      const double th = exact_score(i, targets[i * k + t]);
      thr[i * k + t] = th;
      const double wt = 4.0 * u * std::fabs(th) + 1e-30;
      thr_hi[i * k + t] = static_cast<float>(th + wt);
      thr_lo[i * k + t] = static_cast<float>(th - wt);
    }
  std::fill(counts, counts + n * k, int64_t(0));
  // exact decision of one ambiguous comparison: row a ranks b against its target t
  auto exact_counts = [&](int64_t a, int64_t b, int64_t t, double s) {
    const double th = thr[a * k + t];
    return s > th || (s == th && b < targets[a * k + t]);
  };

  const int64_t P = pair_tile(opt.tile_rows, 1, d, sizeof(float), n);
  const int64_t pack = pair_pack(P, d, K.mr, K.nr);
  const int64_t per_thread = prefilter_per_thread(P, d, K.mr, K.nr);
  std::vector<float> scratch(static_cast<size_t>(mul_checked(nt, per_thread, "scratch")));
  std::vector<int32_t> colcnt_all(static_cast<size_t>(nt * P * (k + 1)));
  std::vector<uint8_t> colamb_all(static_cast<size_t>(nt * 2 * P));
  TileLoopOptions lo;
  lo.n_threads = nt;
  lo.progress = opt.progress;
  const float* yfd = yf.data();
  for_each_tile(
      n, n, P, P, true,
      [&](const Tile& t, int tid) {
        float* pa = scratch.data() + static_cast<size_t>(tid) * per_thread;
        float* pb = pa + round_up(P, K.mr) * d;
        float* g = pa + pack;
        int32_t* colcnt = colcnt_all.data() + static_cast<size_t>(tid) * P * (k + 1);
        uint8_t* colamb = colamb_all.data() + static_cast<size_t>(tid) * 2 * P;
        const int64_t R = t.r1 - t.r0, C = t.c1 - t.c0;
        K.pack(yfd, d, 1, d, t.r0, t.r1, K.mr, pa, nullptr);  // (yf is centred already)
        K.pack(yfd, d, 1, d, t.c0, t.c1, K.nr, pb, nullptr);
        K.gemm_tile(pa, pb, d, R, C, g, P);
        std::fill(colcnt, colcnt + C * k, 0);
        std::fill(colamb, colamb + C, uint8_t(0));
        const float* nfc = nf.data() + t.c0;
        const float* rtc = rootf.data() + t.c0;
        if (k == 1) {
          int32_t* rowcnt = colcnt + P;  // scratch after the column counts
          uint8_t* rowamb = colamb + P;
          uint8_t* ambm = reinterpret_cast<uint8_t*>(g + P * P);
          // the k = 1 counting of the tile, both sides in one pass: definite counts and
          // "ambiguous" flags per row and per column (a per-ISA kernel, kernels.inc)
          detail::PrefilterK1Args pa1{g, P, R, C, t.diagonal,
                                      nf.data() + t.r0, rootf.data() + t.r0, thr_hi.data() + t.r0,
                                      thr_lo.data() + t.r0, nfc, rtc, thr_hi.data() + t.c0,
                                      thr_lo.data() + t.c0, c_w, rowcnt, rowamb, colcnt, colamb,
                                      ambm};
          K.prefilter_k1(pa1);
          bool any_col = false;
          for (int64_t jj = 0; jj < C; ++jj) any_col |= colamb[jj] != 0;
          for (int64_t ii = 0; ii < R; ++ii) {
            const int64_t i = t.r0 + ii;
            if (rowamb[ii] || any_col) {
              // exact decisions for the ambiguous pairs only (a byte map: bit 0 row side,
              // bit 1 column side), scanned 8 bytes at a time
              const uint8_t* am = ambm + ii * P;
              for (int64_t w0 = 0; w0 < C; w0 += 8) {
                uint64_t word = 0;
                std::memcpy(&word, am + w0, static_cast<size_t>(std::min<int64_t>(8, C - w0)));
                if (C - w0 < 8) word &= (uint64_t(1) << (8 * (C - w0))) - 1;
                while (word) {
                  const int bit = __builtin_ctzll(word);
                  const int64_t jj = w0 + bit / 8;
                  const uint8_t flags = am[jj];
                  word &= ~(uint64_t(0xFF) << (8 * (bit / 8)));
                  const int64_t l = t.c0 + jj;
                  const double se = exact_score(i, l);
                  if (flags & 1) rowcnt[ii] += exact_counts(i, l, 0, se);
                  if (flags & 2) colcnt[jj] += exact_counts(l, i, 0, se);
                }
              }
            }
            counts[i] += rowcnt[ii];
          }
          for (int64_t jj = 0; jj < C; ++jj) counts[t.c0 + jj] += colcnt[jj];
          return;
        }
        // k > 1: the same decisions, one target at a time. The float32 score of tile entry
        // (ii, jj) and its error bound w (see the function comment):
        auto approx = [&](int64_t ii, int64_t jj, float& sc, float& w) {
          const int64_t i = t.r0 + ii;
          sc = g[ii * P + jj] * 2.0f - (nf[i] + nfc[jj]);
          const float r = rootf[i] + rtc[jj];
          w = c_w * (r * r) + 1e-30f;
        };
        for (int64_t ii = 0; ii < R; ++ii) {
          const int64_t i = t.r0 + ii;
          const int64_t jj0 = t.diagonal ? ii + 1 : 0;
          for (int64_t q = 0; q < k; ++q) {
            const float hi = thr_hi[i * k + q], lo_ = thr_lo[i * k + q];
            int32_t cnt = 0, amb = 0;
            for (int64_t jj = jj0; jj < C; ++jj) {
              float s, w;
              approx(ii, jj, s, w);
              const int yes = (s - w) > hi;
              cnt += yes;
              amb |= (s + w >= lo_) & !yes;
            }
            if (amb) {  // recount this row segment with exact decisions where needed
              cnt = 0;
              for (int64_t jj = jj0; jj < C; ++jj) {
                float s, w;
                approx(ii, jj, s, w);
                if ((s - w) > hi) ++cnt;
                else if (s + w >= lo_) cnt += exact_counts(i, t.c0 + jj, q, exact_score(i, t.c0 + jj));
              }
            }
            counts[i * k + q] += cnt;
          }
          // column side: row l ranks i
          for (int64_t q = 0; q < k; ++q) {
            int32_t* cc = colcnt + q;
            for (int64_t jj = jj0; jj < C; ++jj) {
              const int64_t l = t.c0 + jj;
              float s, w;
              approx(ii, jj, s, w);
              const int yes = (s - w) > thr_hi[l * k + q];
              cc[jj * k] += yes;
              colamb[jj] |= static_cast<uint8_t>((s + w >= thr_lo[l * k + q]) & !yes);
            }
          }
        }
        for (int64_t jj = 0; jj < C; ++jj) {
          const int64_t l = t.c0 + jj;
          if (!colamb[jj]) {
            for (int64_t q = 0; q < k; ++q) counts[l * k + q] += colcnt[jj * k + q];
            continue;
          }
          // recount column l over this tile's rows with exact decisions where needed
          const int64_t ii1 = t.diagonal ? std::min(R, jj) : R;
          for (int64_t q = 0; q < k; ++q) {
            const float hi = thr_hi[l * k + q], lo_ = thr_lo[l * k + q];
            int64_t cnt = 0;
            for (int64_t ii = 0; ii < ii1; ++ii) {
              const int64_t i = t.r0 + ii;
              float s, w;
              approx(ii, jj, s, w);
              if ((s - w) > hi) ++cnt;
              else if (s + w >= lo_) cnt += exact_counts(l, i, q, exact_score(i, l));
            }
            counts[l * k + q] += cnt;
          }
        }
      },
      lo);
  return true;
}

}  // namespace

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
  const Simd simd = simd_resolve(opt.simd);
  MATALIGN_CHECK(simd_supported(simd), "rank_count: SIMD level ", simd_name(simd), " unavailable");
  const detail::Kernels<T> K = kernels_for<T>(simd);
  const int nt = resolve_threads(opt.n_threads, double(n) * double(n) * double(d));
  MATALIGN_CHECK(opt.tile_rows <= (int64_t(1) << 20), "rank_count: tile_rows too large");
  if constexpr (std::is_same<T, double>::value) {
    if (opt.prefilter && rank_count_prefiltered(y, targets, k, counts, opt)) return;
  }
  const int64_t P = pair_tile(opt.tile_rows, 1, d, sizeof(T), n);

  // Centred rows (distance ranks are translation invariant): packed, normed and thresholded
  // alike, T(double(y) − μ).
  const std::vector<double> mu = centre_of(y, nt);
  std::vector<T> nrm(static_cast<size_t>(n));
  detail::parallel_norms(K, y, nrm.data(), nt, mu.data());
  // Threshold scores s(i, j_t) = 2·ip − (n_i + n_j), ip by one FMA per element in element order:
  // bit-identical to the tile's value for the same pair.
  std::vector<T> thr(static_cast<size_t>(mul_checked(n, k, "thresholds")));
#pragma omp parallel for num_threads(nt) schedule(static)
  for (int64_t i = 0; i < n; ++i)
    for (int64_t t = 0; t < k; ++t) {
      const int64_t j = targets[i * k + t];
      T ip = T(0);
      for (int64_t c = 0; c < d; ++c) {
        const T a = static_cast<T>(static_cast<double>(y(i, c)) - mu[c]);
        const T b = static_cast<T>(static_cast<double>(y(j, c)) - mu[c]);
        if constexpr (std::is_same<T, float>::value) ip = __builtin_fmaf(a, b, ip);
        else ip = __builtin_fma(a, b, ip);
      }
      thr[i * k + t] = ip * T(2) - (nrm[i] + nrm[j]);
    }
  std::fill(counts, counts + n * k, int64_t(0));

  const int64_t pack = pair_pack(P, d, K.mr, K.nr);
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
        K.pack(y.data, y.row_stride, y.col_stride, d, t.r0, t.r1, K.mr, pa, mu.data());
        K.pack(y.data, y.row_stride, y.col_stride, d, t.c0, t.c1, K.nr, pb, mu.data());
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

namespace {

// Rows [r0, r1) × columns [c0, c1) of the PairSums (pair_sums_rows: all columns; pair_sums_block:
// a column block too, with column sums). `name` prefixes the error messages.
template <class T>
void pair_sums_range(const char* name, const std::vector<MatrixView<T>>& spaces, PairFn fn,
                     const std::vector<double>& gamma, int64_t r0, int64_t r1, int64_t c0,
                     int64_t c1, double* rowsums, double* colsums, double* cross,
                     const PairwiseOptions& opt) {
  const int64_t M = static_cast<int64_t>(spaces.size());
  MATALIGN_CHECK(M >= 1, name, ": need at least one space");
  const int64_t n = spaces[0].rows;
  int64_t max_d = 0;
  for (int64_t m = 0; m < M; ++m) {
    MATALIGN_CHECK(spaces[m].rows == n, name, ": space ", m, " has ", spaces[m].rows,
                   " rows, space 0 has ", n);
    MATALIGN_CHECK(spaces[m].cols > 0, name, ": space ", m, " has no columns");
    max_d = std::max(max_d, spaces[m].cols);
  }
  MATALIGN_CHECK(n >= 2, name, ": need at least 2 rows, got ", n);
  MATALIGN_CHECK(0 <= r0 && r0 < r1 && r1 <= n, name, ": rows (", r0, ", ", r1,
                 ") must satisfy 0 <= r0 < r1 <= n = ", n);
  if (fn == PairFn::rbf)
    MATALIGN_CHECK(static_cast<int64_t>(gamma.size()) == M,
                   name, ": need one gamma per space");
  const Simd simd = simd_resolve(opt.simd);
  MATALIGN_CHECK(simd_supported(simd), name, ": SIMD level ", simd_name(simd),
                 " unavailable");
  const detail::Kernels<T> K = kernels_for<T>(simd);
  MATALIGN_CHECK(opt.tile_rows <= (int64_t(1) << 20), name, ": tile_rows too large");
  MATALIGN_CHECK(0 <= c0 && c0 < c1 && c1 <= n, name, ": columns (", c0, ", ", c1,
                 ") must satisfy 0 <= c0 < c1 <= n = ", n);
  const int nt = resolve_threads(opt.n_threads,
                                 double(r1 - r0) * double(c1 - c0) * double(max_d * M));
  const int64_t P = pair_tile(opt.tile_rows, M, max_d, sizeof(T), n);
  const int64_t R = r1 - r0;
  const int64_t CN = c1 - c0;

  // the centre and norms of all n rows, as pair_sums computes them
  PairSpaces<T> ps = pair_spaces(spaces, K, P, nt);
  const auto& norms = ps.norms;
  const auto& mus = ps.mus;
  const auto& pack_off = ps.pack_off;
  const int64_t nb = (R + P - 1) / P;
  const int64_t tile_elems = mul_checked(M, mul_checked(P, P, "tile"), "tile buffer");
  const int64_t per_thread_T = pack_off[M] + tile_elems;
  const int64_t per_thread_D = M * P /*f row*/;
  std::vector<T> scratch_T(static_cast<size_t>(mul_checked(nt, per_thread_T, "scratch")));
  std::vector<double> scratch_D(static_cast<size_t>(mul_checked(nt, per_thread_D, "scratch")));
  // Per-row-block cross sums: a row block's tiles run on one thread in column order.
  std::vector<double> block_cross(static_cast<size_t>(mul_checked(nb, M * M, "block sums")), 0.0);
  std::fill(rowsums, rowsums + M * R, 0.0);
  // Column sums: per row block (its rows in order, on one thread), combined in block order.
  std::vector<double> block_cols;
  if (colsums != nullptr)
    block_cols.assign(static_cast<size_t>(mul_checked(nb, mul_checked(M, CN, "columns"),
                                                      "column sums")), 0.0);

  TileLoopOptions lo;
  lo.n_threads = nt;
  lo.progress = opt.progress;
  for_each_tile(
      R, CN, P, P, false,
      [&](const Tile& t, int tid) {
        T* base = scratch_T.data() + static_cast<size_t>(tid) * per_thread_T;
        double* frow = scratch_D.data() + static_cast<size_t>(tid) * per_thread_D;  // M × P
        const int64_t a0 = r0 + t.r0, a1 = r0 + t.r1;  // absolute rows of the tile
        const int64_t TR = a1 - a0, C = t.c1 - t.c0;
        T* tiles = base + pack_off[M];
        for (int64_t m = 0; m < M; ++m) {
          const MatrixView<T>& x = spaces[m];
          const int64_t d = x.cols;
          T* pa = base + pack_off[m];
          T* pb = pa + round_up(P, K.mr) * d;
          K.pack(x.data, x.row_stride, x.col_stride, d, a0, a1, K.mr, pa, mus[m].data());
          K.pack(x.data, x.row_stride, x.col_stride, d, c0 + t.c0, c0 + t.c1, K.nr, pb,
                 mus[m].data());
          K.gemm_tile(pa, pb, d, TR, C, tiles + m * P * P, P);
        }
        double* slot = block_cross.data() + t.row_block * M * M;
        double* cols = colsums == nullptr ? nullptr
                                          : block_cols.data() + t.row_block * M * CN + t.c0;
        for (int64_t ii = 0; ii < TR; ++ii) {
          const int64_t i = a0 + ii;
          for (int64_t m = 0; m < M; ++m) {
            const T* g = tiles + m * P * P + ii * P;
            const T* nm = norms[m].data();
            const T ni = nm[i];
            double* f = frow + m * P;
            double rs = 0.0;
            const double gm = fn == PairFn::rbf ? gamma[m] : 0.0;
            for (int64_t jj = 0; jj < C; ++jj) {
              const int64_t j = c0 + t.c0 + jj;
              const T s = g[jj] * T(2) - (ni + nm[j]);  // −d², as pair_sums
              const double d2 = -static_cast<double>(s);
              double v;
              if (j == i) v = 0.0;
              else if (fn == PairFn::distance) v = d2 > 0.0 ? std::sqrt(d2) : 0.0;
              else v = std::exp(-gm * (d2 > 0.0 ? d2 : 0.0));
              f[jj] = v;
              rs += v;
            }
            rowsums[m * R + (i - r0)] += rs;
            if (cols != nullptr) {
              double* cm = cols + m * CN;
              for (int64_t jj = 0; jj < C; ++jj) cm[jj] += f[jj];
            }
          }
          for (int64_t a = 0; a < M; ++a) {
            const double* fa = frow + a * P;
            for (int64_t b = a; b < M; ++b) {
              const double* fb = frow + b * P;
              double acc = 0.0;
              for (int64_t jj = 0; jj < C; ++jj) acc += fa[jj] * fb[jj];
              slot[a * M + b] += acc;
            }
          }
        }
      },
      lo);

  std::fill(cross, cross + M * M, 0.0);
  for (int64_t blk = 0; blk < nb; ++blk)
    for (int64_t a = 0; a < M; ++a)
      for (int64_t b = a; b < M; ++b) cross[a * M + b] += block_cross[blk * M * M + a * M + b];
  for (int64_t a = 0; a < M; ++a)
    for (int64_t b = 0; b < a; ++b) cross[a * M + b] = cross[b * M + a];
  if (colsums != nullptr) {
    std::fill(colsums, colsums + M * CN, 0.0);
    for (int64_t blk = 0; blk < nb; ++blk) {
      const double* src = block_cols.data() + blk * M * CN;
      for (int64_t e = 0; e < M * CN; ++e) colsums[e] += src[e];
    }
  }
}

}  // namespace

template <class T>
void pair_sums_rows(const std::vector<MatrixView<T>>& spaces, PairFn fn,
                    const std::vector<double>& gamma, int64_t r0, int64_t r1, double* rowsums,
                    double* cross, const PairwiseOptions& opt) {
  const int64_t n = spaces.empty() ? 0 : spaces[0].rows;
  pair_sums_range("pair_sums_rows", spaces, fn, gamma, r0, r1, 0, std::max<int64_t>(n, 1),
                  rowsums, nullptr, cross, opt);
}

template <class T>
void pair_sums_block(const std::vector<MatrixView<T>>& spaces, PairFn fn,
                     const std::vector<double>& gamma, int64_t r0, int64_t r1, int64_t c0,
                     int64_t c1, double* rowsums, double* colsums, double* cross,
                     const PairwiseOptions& opt) {
  pair_sums_range("pair_sums_block", spaces, fn, gamma, r0, r1, c0, c1, rowsums, colsums, cross,
                  opt);
}

template <class T>
void rank_count_rows(const MatrixView<T>& y, const int64_t* targets, int64_t k, int64_t r0,
                     int64_t r1, int64_t* counts, const PairwiseOptions& opt) {
  const int64_t n = y.rows, d = y.cols;
  MATALIGN_CHECK(n >= 2 && d > 0, "rank_count_rows: need n >= 2 rows and d > 0, got (", n, ", ",
                 d, ")");
  MATALIGN_CHECK(0 <= r0 && r0 < r1 && r1 <= n, "rank_count_rows: rows (", r0, ", ", r1,
                 ") must satisfy 0 <= r0 < r1 <= n = ", n);
  MATALIGN_CHECK(k >= 1 && k <= n - 1, "rank_count_rows: k must be in 1..", n - 1, ", got ", k);
  const int64_t R = r1 - r0;
  for (int64_t i = 0; i < R; ++i)
    for (int64_t t = 0; t < k; ++t) {
      const int64_t j = targets[i * k + t];
      MATALIGN_CHECK(j >= 0 && j < n && j != r0 + i, "rank_count_rows: target ", t, " of row ",
                     r0 + i, " is ", j, " (must be in [0, ", n, ") and != ", r0 + i, ")");
    }
  const Simd simd = simd_resolve(opt.simd);
  MATALIGN_CHECK(simd_supported(simd), "rank_count_rows: SIMD level ", simd_name(simd),
                 " unavailable");
  const detail::Kernels<T> K = kernels_for<T>(simd);
  const int nt = resolve_threads(opt.n_threads, double(R) * double(n) * double(d));
  MATALIGN_CHECK(opt.tile_rows <= (int64_t(1) << 20), "rank_count_rows: tile_rows too large");
  const int64_t P = pair_tile(opt.tile_rows, 1, d, sizeof(T), n);
  // rank_count's centre, norms and thresholds (one FMA chain per pair, in element order)
  const std::vector<double> mu = centre_of(y, nt);
  std::vector<T> nrm(static_cast<size_t>(n));
  detail::parallel_norms(K, y, nrm.data(), nt, mu.data());
  std::vector<T> thr(static_cast<size_t>(mul_checked(R, k, "thresholds")));
#pragma omp parallel for num_threads(nt) schedule(static)
  for (int64_t i = 0; i < R; ++i)
    for (int64_t t = 0; t < k; ++t) {
      const int64_t j = targets[i * k + t];
      T ip = T(0);
      for (int64_t c = 0; c < d; ++c) {
        const T a = static_cast<T>(static_cast<double>(y(r0 + i, c)) - mu[c]);
        const T b = static_cast<T>(static_cast<double>(y(j, c)) - mu[c]);
        if constexpr (std::is_same<T, float>::value) ip = __builtin_fmaf(a, b, ip);
        else ip = __builtin_fma(a, b, ip);
      }
      thr[i * k + t] = ip * T(2) - (nrm[r0 + i] + nrm[j]);
    }
  std::fill(counts, counts + R * k, int64_t(0));
  const int64_t pack = pair_pack(P, d, K.mr, K.nr);
  const int64_t per_thread = pack + P * P;
  std::vector<T> scratch(static_cast<size_t>(mul_checked(nt, per_thread, "scratch")));
  TileLoopOptions lo;
  lo.n_threads = nt;
  lo.progress = opt.progress;
  for_each_tile(
      R, n, P, P, false,
      [&](const Tile& t, int tid) {
        T* pa = scratch.data() + static_cast<size_t>(tid) * per_thread;
        T* pb = pa + round_up(P, K.mr) * d;
        T* g = pa + pack;
        const int64_t a0 = r0 + t.r0, a1 = r0 + t.r1;
        const int64_t TR = a1 - a0, C = t.c1 - t.c0;
        K.pack(y.data, y.row_stride, y.col_stride, d, a0, a1, K.mr, pa, mu.data());
        K.pack(y.data, y.row_stride, y.col_stride, d, t.c0, t.c1, K.nr, pb, mu.data());
        K.gemm_tile(pa, pb, d, TR, C, g, P);
        for (int64_t ii = 0; ii < TR; ++ii) {
          const int64_t i = a0 + ii;
          const T ni = nrm[i];
          const T* thr_i = thr.data() + (i - r0) * k;
          const int64_t* tg_i = targets + (i - r0) * k;
          int64_t* cnt_i = counts + (i - r0) * k;
          for (int64_t jj = 0; jj < C; ++jj) {
            const int64_t l = t.c0 + jj;
            if (l == i) continue;
            const T s = g[ii * P + jj] * T(2) - (ni + nrm[l]);
            for (int64_t q = 0; q < k; ++q)
              cnt_i[q] += (s > thr_i[q]) | ((s == thr_i[q]) & (l < tg_i[q]));
          }
        }
      },
      lo);
}

namespace {
// Micro-panel shape of the level a call with simd="auto" runs, for element size `itemsize`.
void panel_shape(int64_t itemsize, int& mr, int& nr) {
  const Simd simd = simd_best();
  if (itemsize == 4) {
    const detail::Kernels<float> K = detail::kernels_f32(simd);
    mr = K.mr, nr = K.nr;
  } else {
    const detail::Kernels<double> K = detail::kernels_f64(simd);
    mr = K.mr, nr = K.nr;
  }
}

void check_plan_args(const char* fn, int64_t n, int64_t itemsize, int n_threads) {
  MATALIGN_CHECK(n >= 1, fn, ": n must be >= 1, got ", n);
  MATALIGN_CHECK(itemsize == 4 || itemsize == 8, fn, ": itemsize must be 4 or 8, got ", itemsize);
  MATALIGN_CHECK(n_threads >= 0 && n_threads <= kMaxThreads, fn, ": n_threads must be in 0..",
                 kMaxThreads, ", got ", n_threads);
}
}  // namespace

int64_t pair_sums_workspace_bytes(int64_t n, const std::vector<int64_t>& dims, int64_t itemsize,
                                  int n_threads, int64_t tile_rows) {
  check_plan_args("pair_sums_workspace_bytes", n, itemsize, n_threads);
  const int64_t M = static_cast<int64_t>(dims.size());
  MATALIGN_CHECK(M >= 1, "pair_sums_workspace_bytes: need at least one space");
  int64_t max_d = 0;
  for (int64_t d : dims) {
    MATALIGN_CHECK(d >= 1, "pair_sums_workspace_bytes: every dimension must be >= 1");
    max_d = std::max(max_d, d);
  }
  int mr, nr;
  panel_shape(itemsize, mr, nr);
  const int nt = std::max(1, n_threads);
  const int64_t P = pair_tile(tile_rows, M, max_d, itemsize, n);
  const int64_t nb = (n + P - 1) / P;
  int64_t pack = 0;
  for (int64_t d : dims) pack += pair_pack(P, d, mr, nr);
  const int64_t per_thread = (pack + M * P * P) * itemsize + (2 * M * P + M * M) * 8;
  const int64_t outputs = M * n * 8 + M * M * 8;
  // (+ the norm and pack-offset vectors' headers and the tile loop)
  return outputs + M * n * itemsize + nt * per_thread + nb * M * M * 8 + M * 24 + (M + 1) * 8 +
         tile_loop_workspace_bytes(n, P, true);
}

int64_t rank_count_workspace_bytes(int64_t n, int64_t d, int64_t k, int64_t itemsize,
                                   int n_threads) {
  check_plan_args("rank_count_workspace_bytes", n, itemsize, n_threads);
  MATALIGN_CHECK(d >= 1 && k >= 1, "rank_count_workspace_bytes: d and k must be >= 1");
  int mr, nr;
  panel_shape(itemsize, mr, nr);
  const int nt = std::max(1, n_threads);
  // the (n, k) int64 counts and targets, then the float GEMM path's norms, thresholds, tiles
  const int64_t io = 2 * n * k * 8;
  const int64_t P = pair_tile(0, 1, d, itemsize, n);
  const int64_t direct = n * itemsize + n * k * itemsize +
                         nt * (pair_pack(P, d, mr, nr) + P * P) * itemsize +
                         tile_loop_workspace_bytes(n, P, true);
  if (itemsize != 8) return io + direct;
  // float64 rows: the float32 prefilter first (its float32 copy of the rows, norms, exact and
  // float32 thresholds, per-thread float32 tiles and column counts)
  int mr32, nr32;
  panel_shape(4, mr32, nr32);
  const int64_t P32 = pair_tile(0, 1, d, 4, n);
  const int64_t prefilter = n * d * 4 + n * (8 + 4 + 4) + n * k * (8 + 4 + 4) +
                            nt * (prefilter_per_thread(P32, d, mr32, nr32) * 4 +
                                  P32 * (k + 1) * 4 + 2 * P32 + d * 8) +
                            tile_loop_workspace_bytes(n, P32, true);
  return io + std::max(direct, prefilter);
}

template void pair_sums<float>(const std::vector<MatrixView<float>>&, PairFn, const std::vector<double>&,
                               double*, double*, const PairwiseOptions&);
template void pair_sums<double>(const std::vector<MatrixView<double>>&, PairFn,
                                const std::vector<double>&, double*, double*, const PairwiseOptions&);
template void pair_sums_rows<float>(const std::vector<MatrixView<float>>&, PairFn,
                                    const std::vector<double>&, int64_t, int64_t, double*, double*,
                                    const PairwiseOptions&);
template void pair_sums_rows<double>(const std::vector<MatrixView<double>>&, PairFn,
                                     const std::vector<double>&, int64_t, int64_t, double*, double*,
                                     const PairwiseOptions&);
template void pair_sums_block<float>(const std::vector<MatrixView<float>>&, PairFn,
                                     const std::vector<double>&, int64_t, int64_t, int64_t,
                                     int64_t, double*, double*, double*, const PairwiseOptions&);
template void pair_sums_block<double>(const std::vector<MatrixView<double>>&, PairFn,
                                      const std::vector<double>&, int64_t, int64_t, int64_t,
                                      int64_t, double*, double*, double*, const PairwiseOptions&);
template void rank_count_rows<float>(const MatrixView<float>&, const int64_t*, int64_t, int64_t,
                                     int64_t, int64_t*, const PairwiseOptions&);
template void rank_count_rows<double>(const MatrixView<double>&, const int64_t*, int64_t, int64_t,
                                      int64_t, int64_t*, const PairwiseOptions&);
template void rank_count<float>(const MatrixView<float>&, const int64_t*, int64_t, int64_t*,
                                const PairwiseOptions&);
template void rank_count<double>(const MatrixView<double>&, const int64_t*, int64_t, int64_t*,
                                 const PairwiseOptions&);

}  // namespace matalign
