// Exact kNN: the tile loop (tiling.cpp) + packed GEMM micro-kernels fused with the TopK
// reducer (kernels.inc). See knn.h for the contract.
#include "matalign/knn.h"

#include <algorithm>
#include <cmath>
#include <exception>
#include <limits>
#include <mutex>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "kernels.h"
#include "screen.h"
#include "matalign/tiling.h"

namespace matalign {

namespace {

using detail::kernels_for;
using detail::round_up;


// Automatic tile edge: the packed row tile (P × d) should sit in about half of a 1 MB L2,
// while the column micro-panel (nr × d) is streamed through L1 against it. Bounded so that
// the per-tile packing (O(P·d)) stays negligible next to the tile's O(P²·d) FMAs.
int64_t auto_tile(int64_t d, int64_t elem, int64_t unit) {
  int64_t p = (1024 * 1024) / std::max<int64_t>(1, d * elem);
  p = std::max<int64_t>(96, std::min<int64_t>(2048, p));
  return std::max(unit, p / unit * unit);
}

/// Sizes of the float GEMM path, shared by knn_exact and knn_workspace_bytes.
struct DirectPlan {
  int64_t kc;       ///< candidates kept per row (k, or more when re-scoring)
  int64_t cap;      ///< candidate buffer per row
  int64_t tr, tc;   ///< tile edges
  int64_t pa_size;  ///< packed row tile (elements)
  int64_t pb_size;  ///< packed column tile (elements)
};

DirectPlan direct_plan(int64_t n, int64_t m, int64_t d, int64_t k, int64_t elem, int mr, int nr,
                       bool self, bool rescore, int64_t max_k, int nt, int64_t tile_rows,
                       int64_t tile_cols) {
  DirectPlan p;
  // Rescoring keeps a few more float candidates than asked, then re-ranks them in double.
  p.kc = rescore ? std::min(max_k, k + std::max<int64_t>(8, k / 2)) : k;
  p.cap = p.kc + std::max<int64_t>(16, p.kc / 2);
  int64_t tr = tile_rows > 0 ? tile_rows : auto_tile(d, elem, 96);
  int64_t tc = tile_cols > 0 ? tile_cols : auto_tile(d, elem, 96);
  if (!self && tile_rows <= 0) {
    // Few queries: shrink row tiles so every thread has a row block.
    const int64_t per_thread = (m + nt - 1) / nt;
    tr = std::max<int64_t>(mr, std::min(tr, round_up(per_thread, mr)));
  }
  // Never larger than the data: huge user tiles, or the 96-row floor at tiny N and huge D,
  // must not allocate scratch for rows that do not exist.
  tr = std::min(tr, round_up(self ? n : m, mr));
  tc = std::min(tc, round_up(n, nr));
  p.tr = tr;
  p.tc = tc;
  const int64_t col_edge = self ? tr : tc;
  p.pa_size = mul_checked(round_up(tr, mr), d, "row tile");
  p.pb_size = mul_checked(round_up(col_edge, nr), d, "column tile");
  return p;
}

}  // namespace

namespace detail {

double centre_from_moments(double ref, double s1, double s2, int64_t n) {
  const double dn = static_cast<double>(n);
  const double m1 = s1 / dn;
  const double mean = ref + m1;
  const double var = s2 / dn - m1 * m1;
  const double sd = var > 0.0 ? std::sqrt(var) : 0.0;
  if (!std::isfinite(mean)) return 0.0;
  if (!(sd > 0.0) || !std::isfinite(sd)) return mean;
  int e = 0;
  std::frexp(sd, &e);  // sd = f·2^e, f in [0.5, 1): 2^(e−1) <= sd
  const double g = std::ldexp(1.0, e - 1);
  const double q = mean / g;
  return std::isfinite(q) ? g * std::nearbyint(q) : mean;
}

template <class T>
void column_centre(const MatrixView<T>& x, int nt, double* mu) {
  const int64_t n = x.rows, d = x.cols;
  const int64_t chunk = 4096, nchunks = (n + chunk - 1) / chunk;
  // per block: Σ (x − x_0) and Σ (x − x_0)², x_0 the first row (no cancellation at an offset)
  std::vector<double> part(static_cast<size_t>(mul_checked(mul_checked(nchunks, d, "column centre"), 2, "column centre")), 0.0);
#pragma omp parallel for num_threads(nt) schedule(static)
  for (int64_t cidx = 0; cidx < nchunks; ++cidx) {
    double* p1 = part.data() + 2 * cidx * d;
    double* p2 = p1 + d;
    for (int64_t r = cidx * chunk; r < std::min(n, (cidx + 1) * chunk); ++r)
      for (int64_t col = 0; col < d; ++col) {
        const double v = static_cast<double>(x(r, col)) - static_cast<double>(x(0, col));
        p1[col] += v;
        p2[col] += v * v;
      }
  }
  for (int64_t col = 0; col < d; ++col) {
    double s1 = 0.0, s2 = 0.0;
    for (int64_t cidx = 0; cidx < nchunks; ++cidx) {
      s1 += part[2 * cidx * d + col];
      s2 += part[2 * cidx * d + d + col];
    }
    mu[col] = centre_from_moments(static_cast<double>(x(0, col)), s1, s2, n);
  }
}

template void column_centre<float>(const MatrixView<float>&, int, double*);
template void column_centre<double>(const MatrixView<double>&, int, double*);

}  // namespace detail

const char* screen_name(Screen s) {
  switch (s) {
    case Screen::off: return "off";
    case Screen::int8: return "int8";
    case Screen::int16: return "int16";
    default: return "auto";
  }
}

Screen screen_parse(const std::string& name) {
  if (name == "auto") return Screen::automatic;
  if (name == "off") return Screen::off;
  if (name == "int8") return Screen::int8;
  if (name == "int16") return Screen::int16;
  throw std::invalid_argument("screen must be 'auto', 'int8', 'int16' or 'off'; got '" + name + "'");
}

Screen screen_auto(int64_t k, bool self, int64_t n, int64_t d) {
  // Measured crossovers (bench/bench_screen.py at N = 1k, 2k, 5k and 20k, D = 256): the
  // screens save GEMM work (∝ n·d per query row) and pay per-row top-k bookkeeping and the
  // re-scoring of ~k candidates, so their range of k grows with n·d. int8's looser bound
  // leaves more undecided candidates, int16's GEMM is only 2x the float rate. Since the
  // batched first tiles and histogram thresholds, int16 beats the float GEMM for self graphs
  // up to k ~ N·D/1536 (k = 128 but not 256 at N = 1k, 256 at 2k, ~512 at 5k) and for
  // queries, which pay the quantisation of X per call, up to k ~ N·D/2048; both capped at the
  // largest k measured and at N/6 (measured at D = 256 only: at high D and small N, N·D alone
  // would allow k ~ N).
  const double w = static_cast<double>(n) * static_cast<double>(d) / 256.0;
  const double kk = static_cast<double>(k);
  if (self) {
    if (kk <= 24 && kk <= w / 800) return Screen::int8;
    if (kk <= 512 && kk <= w / 6 && 6 * k <= n) return Screen::int16;
  } else {
    if (kk <= 48 && kk <= w / 400) return Screen::int8;
    if (kk <= 512 && kk <= w / 8 && 6 * k <= n) return Screen::int16;
  }
  return Screen::off;
}

// knn_screen.cpp
template <class T>
bool knn_screened(const MatrixView<T>& x, const MatrixView<T>* queries, int64_t k, Metric metric,
                  bool exclude_self, T* values, int64_t* indices, const KnnOptions& opt,
                  bool use_vnni, Screen screen);
int64_t knn_screen_workspace_bytes(int64_t n, int64_t m, int64_t d, int64_t k, int64_t itemsize,
                                   bool l2, int n_threads, int64_t tile_rows, int64_t tile_cols,
                                   Screen screen, bool self);

template <class T>
void knn_exact(const MatrixView<T>& x, const MatrixView<T>* queries, int64_t k, Metric metric,
               bool exclude_self, T* values, int64_t* indices, const KnnOptions& opt) {
  const bool self = queries == nullptr;
  const MatrixView<T>& q = self ? x : *queries;
  const int64_t n = x.rows, m = q.rows, d = x.cols;
  MATALIGN_CHECK(n > 0 && d > 0, "knn: the database must be non-empty, got shape (", n, ", ", d, ")");
  MATALIGN_CHECK(m > 0, "knn: queries must be non-empty");
  MATALIGN_CHECK(q.cols == d, "knn: queries have ", q.cols, " columns but the database has ", d);
  MATALIGN_CHECK(x.row_stride >= 0 && x.col_stride >= 0 && q.row_stride >= 0 && q.col_stride >= 0,
                 "knn: negative strides are not supported");
  const bool excl = self && exclude_self;
  const int64_t max_k = excl ? n - 1 : n;
  MATALIGN_CHECK(k >= 1 && k <= max_k, "knn: k must be in 1..", max_k, " (N", excl ? " - 1" : "",
                 "), got ", k);
  MATALIGN_CHECK(k < std::numeric_limits<int32_t>::max(), "knn: k too large");
  MATALIGN_CHECK(values != nullptr && indices != nullptr, "knn: null output buffer");
  mul_checked(m, k, "knn output size");
  mul_checked(n, d, "database size");

  const Simd simd = simd_resolve(opt.simd);
  MATALIGN_CHECK(simd_supported(simd), "knn: SIMD level ", simd_name(simd), " is not available");
  const detail::Kernels<T> K = kernels_for<T>(simd);
  const int nt = resolve_threads(opt.n_threads, double(m) * double(n) * double(d));
  const bool l2 = metric == Metric::l2;

  // The int8/int16 screens: exact (the float64 graph), and faster wherever VNNI runs them.
  if (opt.screen != Screen::off) {
    const bool vnni = simd == Simd::avx512 && detail::screen_vnni_supported() &&
                      detail::screen_vnni_kernel() != nullptr;
    Screen run = opt.screen;
    if (run == Screen::automatic) run = vnni ? screen_auto(k, queries == nullptr, n, d) : Screen::off;
    if (run != Screen::off) {
      if (knn_screened<T>(x, queries, k, metric, exclude_self, values, indices, opt, vnni, run))
        return;
      MATALIGN_CHECK(opt.screen == Screen::automatic,
                     "knn: screen='", screen_name(run), "' does not apply to these rows (it needs "
                     "every nonzero row norm within [1e-12, 1e12], D <= 60000 and N < 2^32); use "
                     "screen='auto' or 'off'");
    }
  }

  MATALIGN_CHECK(opt.tile_rows <= (int64_t(1) << 40) && opt.tile_cols <= (int64_t(1) << 40),
                 "knn: tile_rows/tile_cols too large");
  const DirectPlan plan = direct_plan(n, m, d, k, sizeof(T), K.mr, K.nr, self, opt.rescore, max_k,
                                      nt, opt.tile_rows, opt.tile_cols);
  const int64_t kc = plan.kc, cap = plan.cap;
  MATALIGN_CHECK(cap < std::numeric_limits<int32_t>::max(), "knn: k too large");
  const int64_t pad = 64;
  std::vector<detail::Cand<T>> cand(static_cast<size_t>(mul_checked(m, cap, "candidate buffer")));
  std::vector<int32_t> count(static_cast<size_t>(m), 0);
  std::vector<T> thr(static_cast<size_t>(m + pad), -std::numeric_limits<T>::infinity());
  std::vector<int64_t> thr_index(static_cast<size_t>(m + pad), std::numeric_limits<int64_t>::max());

  // l2 is translation invariant: both sides are centred on the database's column centre (or
  // the caller's; see detail::column_centre) while packed, and their norms taken from the centred rows, so the
  // ‖x‖² + ‖y‖² − 2⟨x, y⟩ cancellation scales with the spread of the rows, not their offset.
  std::vector<double> centre;
  const double* mu = nullptr;
  if (l2) {
    if (opt.centre != nullptr) {
      mu = opt.centre;
    } else {
      centre.resize(static_cast<size_t>(d));
      detail::column_centre(x, nt, centre.data());
      mu = centre.data();
    }
  }
  std::vector<T> norm_x, norm_q;
  if (l2) {
    norm_x.assign(static_cast<size_t>(n + pad), T(0));
    detail::parallel_norms(K, x, norm_x.data(), nt, mu);
    if (!self) {
      norm_q.assign(static_cast<size_t>(m + pad), T(0));
      detail::parallel_norms(K, q, norm_q.data(), nt, mu);
    }
  }

  const int64_t tr = plan.tr, tc = plan.tc;
  const int64_t pa_size = plan.pa_size, pb_size = plan.pb_size;
  std::vector<T> scratch(static_cast<size_t>(mul_checked(nt, pa_size + pb_size, "scratch")));

  detail::TopKState<T> st{cand.data(), count.data(), thr.data(), thr_index.data(), kc, cap};
  TileLoopOptions lo;
  lo.n_threads = nt;
  lo.progress = opt.progress;
  const T* norm_rows = l2 ? (self ? norm_x.data() : norm_q.data()) : nullptr;
  const T* norm_cols = l2 ? norm_x.data() : nullptr;

  for_each_tile(
      m, n, tr, tc, self,
      [&](const Tile& t, int tid) {
        T* pa = scratch.data() + static_cast<size_t>(tid) * (pa_size + pb_size);
        T* pb = pa + pa_size;
        K.pack(q.data, q.row_stride, q.col_stride, d, t.r0, t.r1, K.mr, pa, mu);
        K.pack(x.data, x.row_stride, x.col_stride, d, t.c0, t.c1, K.nr, pb, mu);
        detail::KnnTileArgs<T> a;
        a.pa = pa;
        a.pb = pb;
        a.d = d;
        a.r0 = t.r0;
        a.r1 = t.r1;
        a.c0 = t.c0;
        a.c1 = t.c1;
        a.norm_r = norm_rows;
        a.norm_c = norm_cols;
        a.l2 = l2;
        a.feed_cols = self;
        a.diagonal = t.diagonal;
        a.exclude_self = excl;
        a.rows = st;
        a.cols = st;
        K.knn_tile(a);
      },
      lo);

  // Finalise: best first (score desc, index asc); optional exact re-ranking in double.
  std::exception_ptr error;
  std::mutex error_mutex;
#pragma omp parallel num_threads(nt)
  {
    std::vector<std::pair<double, int64_t>> exact;
#pragma omp for schedule(dynamic, 256)
    for (int64_t i = 0; i < m; ++i) {
      try {
        detail::Cand<T>* c = cand.data() + i * cap;
        const int64_t cnt = count[i];
        MATALIGN_INTERNAL(cnt >= kc);
        auto better = [](const detail::Cand<T>& a, const detail::Cand<T>& b) {
          return detail::cand_better(a, b);
        };
        if (cnt > kc) std::nth_element(c, c + (kc - 1), c + cnt, better);
        std::sort(c, c + kc, better);
        T* vo = values + i * k;
        int64_t* io = indices + i * k;
        if (!opt.rescore) {
          for (int64_t t = 0; t < k; ++t) {
            io[t] = c[t].index;
            vo[t] = l2 ? std::max(T(0), -c[t].score) : c[t].score;
          }
        } else {
          exact.resize(static_cast<size_t>(kc));
          for (int64_t t = 0; t < kc; ++t) {
            const int64_t j = c[t].index;
            double acc = 0.0;
            for (int64_t col = 0; col < d; ++col) {
              const double a = static_cast<double>(q(i, col)), b = static_cast<double>(x(j, col));
              acc += l2 ? (a - b) * (a - b) : a * b;
            }
            exact[t] = {l2 ? -acc : acc, j};
          }
          std::sort(exact.begin(), exact.end(), [](const auto& a, const auto& b) {
            return a.first > b.first || (a.first == b.first && a.second < b.second);
          });
          for (int64_t t = 0; t < k; ++t) {
            io[t] = exact[t].second;
            vo[t] = static_cast<T>(l2 ? -exact[t].first : exact[t].first);
          }
        }
      } catch (...) {
        std::lock_guard<std::mutex> lock(error_mutex);
        if (!error) error = std::current_exception();
      }
    }
  }
  if (error) std::rethrow_exception(error);
}

int64_t knn_workspace_bytes(int64_t n, int64_t m, int64_t d, int64_t k, int64_t itemsize,
                            bool l2, bool rescore, int n_threads, int64_t tile_rows,
                            int64_t tile_cols, Screen screen, bool self) {
  MATALIGN_CHECK(n > 0 && m > 0 && d > 0 && k >= 1, "knn_workspace_bytes: need n, m, d, k >= 1");
  MATALIGN_CHECK(itemsize == 4 || itemsize == 8, "knn_workspace_bytes: itemsize must be 4 or 8");
  MATALIGN_CHECK(n_threads >= 0 && n_threads <= kMaxThreads,
                 "knn_workspace_bytes: n_threads must be in 0..", kMaxThreads);
  if (self) m = n;
  const int nt = std::max(1, n_threads);
  // the micro-panel shape of the level a call with simd="auto" runs
  const Simd simd = simd_best();
  const int mr = itemsize == 4 ? detail::kernels_f32(simd).mr : detail::kernels_f64(simd).mr;
  const int nr = itemsize == 4 ? detail::kernels_f32(simd).nr : detail::kernels_f64(simd).nr;
  // (max_k = n: with the self row kept, the larger re-scoring surplus)
  const DirectPlan p = direct_plan(n, m, d, k, itemsize, mr, nr, self, rescore, n, nt, tile_rows,
                                   tile_cols);
  const int64_t pad = 64;
  const int64_t out = m * k * (8 + itemsize);
  const int64_t state = m * p.cap * int64_t(sizeof(detail::Cand<double>)) + 4 * m +
                        (m + pad) * (itemsize + 8);
  const int64_t norms = l2 ? ((n + pad) + (self ? 0 : m + pad)) * itemsize : 0;
  const int64_t scratch = nt * (p.pa_size + p.pb_size) * itemsize;
  const int64_t finalise = rescore ? nt * p.kc * 16 : 0;  // per-thread (score, index) re-ranking
  const int64_t direct = out + state + norms + scratch + finalise +
                         tile_loop_workspace_bytes(m, p.tr, self);
  if (screen != Screen::int8 && screen != Screen::int16) return direct;
  return std::max(direct, knn_screen_workspace_bytes(n, m, d, k, itemsize, l2, nt, tile_rows,
                                                     tile_cols, screen, self));
}

template <class T>
void knn_centre(const MatrixView<T>& x, int n_threads, double* mu) {
  MATALIGN_CHECK(x.rows > 0 && x.cols > 0, "knn_centre: x must be non-empty");
  detail::column_centre(x, resolve_threads(n_threads, double(x.rows) * double(x.cols)), mu);
}

template <class T>
void knn_block_pair(const MatrixView<T>& x, int64_t i0, int64_t i1, int64_t j0, int64_t j1,
                    int64_t k, Metric metric, const double* centre, T* score_i,
                    int64_t* index_i, T* score_j, int64_t* index_j, const KnnOptions& opt) {
  const int64_t n = x.rows, d = x.cols;
  MATALIGN_CHECK(n > 0 && d > 0, "knn_block_pair: x must be non-empty");
  MATALIGN_CHECK(0 <= i0 && i0 < i1 && i1 <= n && 0 <= j0 && j0 < j1 && j1 <= n,
                 "knn_block_pair: blocks [", i0, ", ", i1, ") and [", j0, ", ", j1,
                 ") must be non-empty row ranges of N=", n);
  const bool same = i0 == j0 && i1 == j1;
  MATALIGN_CHECK(same || j0 >= i1, "knn_block_pair: block J must be block I or lie after it");
  MATALIGN_CHECK(k >= 1, "knn_block_pair: k must be >= 1, got ", k);
  MATALIGN_CHECK(x.row_stride >= 0 && x.col_stride >= 0,
                 "knn_block_pair: negative strides are not supported");
  const bool l2 = metric == Metric::l2;
  MATALIGN_CHECK(!l2 || centre != nullptr, "knn_block_pair: l2 needs the centre");
  const int64_t ni = i1 - i0, nj = same ? 0 : j1 - j0, nl = ni + nj;
  const int64_t ki = same ? std::min(k, ni - 1) : std::min(k, nj);
  const int64_t kj = same ? 0 : std::min(k, ni);
  if (ki < 1) return;  // a one-row self block has no pair
  const Simd simd = simd_resolve(opt.simd);
  MATALIGN_CHECK(simd_supported(simd), "knn_block_pair: SIMD level ", simd_name(simd),
                 " is not available");
  const detail::Kernels<T> K = kernels_for<T>(simd);
  const int nt = resolve_threads(opt.n_threads, double(ni) * double(nl) * double(x.cols));
  const double* mu = l2 ? centre : nullptr;

  // Local coordinates: [0, ni) = block I, [ni, nl) = block J.
  MatrixView<T> vi = x, vj = x;
  vi.data = x.data + i0 * x.row_stride;
  vi.rows = ni;
  vj.data = x.data + j0 * x.row_stride;
  vj.rows = same ? ni : nj;
  const DirectPlan plan = direct_plan(nl, nl, d, std::max(ki, std::max<int64_t>(kj, 1)),
                                      sizeof(T), K.mr, K.nr, true, false, nl, nt, opt.tile_rows,
                                      opt.tile_rows);
  const int64_t pad = 64;
  auto make_state = [&](int64_t kk, std::vector<detail::Cand<T>>& cand,
                        std::vector<int32_t>& count, std::vector<T>& thr,
                        std::vector<int64_t>& thr_index) {
    const int64_t cap = kk + std::max<int64_t>(16, kk / 2);
    cand.resize(static_cast<size_t>(mul_checked(nl, cap, "candidate buffer")));
    count.assign(static_cast<size_t>(nl), 0);
    thr.assign(static_cast<size_t>(nl + pad), -std::numeric_limits<T>::infinity());
    thr_index.assign(static_cast<size_t>(nl + pad), std::numeric_limits<int64_t>::max());
    return detail::TopKState<T>{cand.data(), count.data(), thr.data(), thr_index.data(), kk, cap};
  };
  std::vector<detail::Cand<T>> cand_r, cand_c;
  std::vector<int32_t> count_r, count_c;
  std::vector<T> thr_r, thr_c;
  std::vector<int64_t> thi_r, thi_c;
  const detail::TopKState<T> st_r = make_state(ki, cand_r, count_r, thr_r, thi_r);
  const detail::TopKState<T> st_c =
      same ? st_r : make_state(std::max<int64_t>(kj, 1), cand_c, count_c, thr_c, thi_c);

  std::vector<T> norms;
  if (l2) {
    norms.assign(static_cast<size_t>(nl + pad), T(0));
    detail::parallel_norms(K, vi, norms.data(), nt, mu);
    if (!same) detail::parallel_norms(K, vj, norms.data() + ni, nt, mu);
  }
  const int64_t tr = plan.tr;
  const int64_t pa_size = mul_checked(round_up(tr, K.mr), d, "row tile");
  const int64_t pb_size = mul_checked(round_up(tr, K.nr), d, "column tile");
  std::vector<T> scratch(static_cast<size_t>(mul_checked(nt, pa_size + pb_size, "scratch")));
  TileLoopOptions lo;
  lo.n_threads = nt;
  lo.progress = opt.progress;
  for_each_tile(
      nl, nl, tr, tr, true,
      [&](const Tile& t, int tid) {
        int64_t r0 = t.r0, r1 = t.r1, c0 = t.c0, c1 = t.c1;
        bool diagonal = t.diagonal;
        if (!same) {  // only pairs (I, J): rows in [0, ni), columns in [ni, nl)
          r1 = std::min(r1, ni);
          c0 = std::max(c0, ni);
          if (r0 >= r1 || c0 >= c1) return;
          diagonal = false;
        }
        T* pa = scratch.data() + static_cast<size_t>(tid) * (pa_size + pb_size);
        T* pb = pa + pa_size;
        K.pack(vi.data, vi.row_stride, vi.col_stride, d, r0, r1, K.mr, pa, mu);
        const int64_t off = same ? 0 : ni;
        K.pack(vj.data, vj.row_stride, vj.col_stride, d, c0 - off, c1 - off, K.nr, pb, mu);
        detail::KnnTileArgs<T> a;
        a.pa = pa;
        a.pb = pb;
        a.d = d;
        a.r0 = r0;
        a.r1 = r1;
        a.c0 = c0;
        a.c1 = c1;
        a.norm_r = l2 ? norms.data() : nullptr;
        a.norm_c = l2 ? norms.data() : nullptr;
        a.l2 = l2;
        a.feed_cols = true;
        a.diagonal = diagonal;
        a.exclude_self = true;
        a.rows = st_r;
        a.cols = st_c;
        K.knn_tile(a);
      },
      lo);

  // Finalise each row: best kk, best first; local indices back to rows of x.
  auto finish = [&](const detail::TopKState<T>& st, int64_t lr0, int64_t lr1, int64_t kk,
                    T* so, int64_t* io) {
#pragma omp parallel for num_threads(nt) schedule(dynamic, 256)
    for (int64_t l = lr0; l < lr1; ++l) {
      detail::Cand<T>* c = st.cand + l * st.cap;
      const int64_t cnt = st.count[l];
      auto better = [](const detail::Cand<T>& a, const detail::Cand<T>& b) {
        return detail::cand_better(a, b);
      };
      if (cnt > kk) std::nth_element(c, c + (kk - 1), c + cnt, better);
      std::sort(c, c + std::min(cnt, kk), better);
      for (int64_t t = 0; t < kk; ++t) {
        const int64_t li = c[t].index;
        so[(l - lr0) * kk + t] = c[t].score;
        io[(l - lr0) * kk + t] = li < ni ? i0 + li : j0 + (li - ni);
      }
    }
  };
  for (int64_t l = 0; l < nl; ++l) {
    const detail::TopKState<T>& st = l < ni ? st_r : st_c;
    MATALIGN_INTERNAL(st.count[l] >= (l < ni ? ki : kj));
  }
  finish(st_r, 0, ni, ki, score_i, index_i);
  if (!same) finish(st_c, ni, nl, kj, score_j, index_j);
}

template void knn_centre<float>(const MatrixView<float>&, int, double*);
template void knn_centre<double>(const MatrixView<double>&, int, double*);
template void knn_block_pair<float>(const MatrixView<float>&, int64_t, int64_t, int64_t, int64_t,
                                    int64_t, Metric, const double*, float*, int64_t*, float*,
                                    int64_t*, const KnnOptions&);
template void knn_block_pair<double>(const MatrixView<double>&, int64_t, int64_t, int64_t,
                                     int64_t, int64_t, Metric, const double*, double*, int64_t*,
                                     double*, int64_t*, const KnnOptions&);

template void knn_exact<float>(const MatrixView<float>&, const MatrixView<float>*, int64_t, Metric,
                               bool, float*, int64_t*, const KnnOptions&);
template void knn_exact<double>(const MatrixView<double>&, const MatrixView<double>*, int64_t,
                                Metric, bool, double*, int64_t*, const KnnOptions&);

}  // namespace matalign
