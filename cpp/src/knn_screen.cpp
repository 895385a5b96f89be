// Exact kNN through an int8 or int16 screen: the driver (see screen.h for the idea and the
// bound). The jobs live in their own files: screen_quantise.cpp (centring and quantisation of
// each side), screen_keepers.cpp (the per-row threshold keepers the tile kernels feed),
// kernels_vnni.cpp (the AVX-512 VNNI tile kernels); the portable tile kernel is here.
//
// Pipeline: centre and quantise both sides once (O(N·D), parallel) -> the tile loop runs an
// integer tile kernel whose reducer keeps, per row, every column whose upper bound reaches the
// row's k-th largest lower bound -> each row's survivors are re-scored in double with the
// float64 GEMM's FMA chain and ranked (score desc, index asc). Rows with many pairs the bound
// cannot separate (duplicates, collapsed embeddings) grow their candidate lists under a byte
// budget; past it they are searched again by the float64 kernel itself, so the answer is
// always that of the float64 computation.
//
// Centring. Both sides are quantised after subtracting the database mean μ (in double):
// squared distances do not change, and <x, y> = <x', y'> + c_x + c_y with c = <μ, x'> +
// |μ|²/2 computed per row. Embeddings with a large common component (all-positive
// activations, a shared offset) would otherwise spend the int8 range on it and widen every
// bound; centred, the bound scales with the spread of the rows, not their offset.
//
// Why the result is exact. lb_ij <= s_ij <= ub_ij for the double score s. The row threshold
// thr (k-th largest lb seen) never exceeds the true k-th score, so every column of the true
// top-k (ties included) has ub >= thr when it is seen and is never evicted (eviction drops
// only ub < thr). The bounds carry an allowance of 4e-6·t_i·t_j (plus 4e-6·|x|² per side for
// l2) over the float32 rounding of their own evaluation (~1e-7 relative) and the double
// re-scoring (~1e-16·D), so "top-k of the re-scored values" and "top-k of the real values"
#include <algorithm>
#include <climits>
#include <cmath>
#include <cstring>
#include <exception>
#include <limits>
#include <memory>
#include <mutex>
#include <type_traits>
#include <vector>

#include "kernels.h"
#include "matalign/knn.h"
#include "matalign/tiling.h"
#include "screen.h"
#include "screen_keepers.h"
#include "screen_quantise.h"

namespace matalign {
namespace detail {

#if !defined(MATALIGN_HAVE_X86_KERNELS)
int64_t screen_vnni_scratch_bytes(int64_t, int64_t, int64_t) { return 0; }
ScreenTileFn screen_vnni_kernel() { return nullptr; }
ScreenTileFn screen_vnni16_kernel() { return nullptr; }
const ScreenSortedOps* screen_sorted_ops() { return nullptr; }
bool screen_vnni_supported() { return false; }
#else
bool screen_vnni_supported() {
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni");
}
#endif

namespace {

// Portable tile kernel (any SIMD level): int32 dot products of the row-major int8 rows (the
// compiler vectorises the integer reduction; integer sums are exact in any order).
template <class Q>
int32_t idot(const Q* x, const Q* y, int64_t dp) {
  int32_t p = 0;
  for (int64_t k = 0; k < dp; ++k) p += static_cast<int32_t>(x[k]) * static_cast<int32_t>(y[k]);
  return p;
}

template <class Q>
void tile_generic_t(const ScreenTileArgs& a, const Q* rq, const Q* cq) {
  const ScreenSide& R = a.rows;
  const ScreenSide& C = a.cols;
  const int64_t dp = R.dp;
  if (a.batch) {  // the bounds of one row at a time, then merged (screen_merge_rows)
    const int64_t nc = a.c1 - a.c0;
    float* lb = a.batch_buf;
    float* ub = lb + nc;
    for (int64_t i = a.r0; i < a.r1; ++i) {
      for (int64_t j = a.c0; j < a.c1; ++j) {
        const float approx = (static_cast<float>(idot(rq + i * dp, cq + j * dp, dp)) * C.s[j]) * R.s[i];
        screen_bounds(a, i, j, approx, lb[j - a.c0], ub[j - a.c0]);
      }
      screen_merge_rows(a, i, 1, lb, ub, nc);
    }
    return;
  }
  for (int64_t i = a.r0; i < a.r1; ++i) {
    const Q* qi = rq + i * dp;
    int64_t j0 = a.c0;
    if (a.diagonal) j0 = std::max(j0, a.exclude_self ? i + 1 : i);
    for (int64_t j = j0; j < a.c1; ++j) {
      const int32_t p = idot(qi, cq + j * dp, dp);
      const float approx = (static_cast<float>(p) * C.s[j]) * R.s[i];
      const bool to_col = a.feed_cols && !(a.diagonal && j == i);
      screen_offer(a, i, j, approx, true, to_col);
    }
  }
}

void tile_generic(const ScreenTileArgs& a) {
  if (a.rows.q16) tile_generic_t<int16_t>(a, a.rows.q16, a.cols.q16);
  else tile_generic_t<int8_t>(a, a.rows.q, a.cols.q);
}

}  // namespace

}  // namespace detail

using detail::round_up;

namespace {

/// Sizes of one screened call, shared by knn_screened and knn_screen_workspace_bytes so that
/// the memory estimate cannot drift from the allocation.
struct ScreenPlan {
  int64_t dp;        ///< padded depth of the quantised rows
  int64_t cap;       ///< inline candidates per row: 4k + 64 (int8) or 2k + 64 (int16)
  bool sorted;       ///< AVX-512 sorted-vector keeper (else a binary heap)
  int64_t hs;        ///< threshold row stride
  bool batches;      ///< each row's first tile merged as a batch (then histograms)
  int64_t tr, tc;    ///< tile edges
  int64_t scratch_per;  ///< VNNI packing scratch per thread (bytes, 64-aligned)
  int64_t batch_per;    ///< batch buffer floats per thread
};

ScreenPlan screen_plan(int64_t n, int64_t m, int64_t d, int64_t k, bool self, Screen screen,
                       bool use_vnni, int nt, int64_t tile_rows, int64_t tile_cols) {
  using namespace detail;
  ScreenPlan p;
  p.dp = round_up(d, 4);
  p.cap = std::min<int64_t>((screen == Screen::int8 ? 4 : 2) * k + 64, int64_t(1) << 30);
  // The VNNI kernel implies AVX-512 F/BW/VL: keep each row's k largest lower bounds sorted
  // in vectors there (screen_sorted_avx512.cpp), a binary heap elsewhere and for very large k.
  p.sorted = use_vnni && k <= 1024;
  p.hs = p.sorted ? round_up(k, 16) + 16 : k;
  // Batches cost a selection over every column of the tile per row; they pay off for large k
  // (bench/README.md, "Engine design measurements").
  p.batches = k >= 48;
  // 1024 rows × D bytes of int8 sit in L2; from N ~ 8k on, each conflict-free round of the
  // symmetric loop holds >= 2 tiles per thread, which keeps two threads evenly loaded.
  int64_t tr = tile_rows > 0 ? tile_rows : 1024;
  int64_t tc = tile_cols > 0 ? tile_cols : 2048;
  if (self && tile_rows <= 0 && nt > 1) {
    // A conflict-free round of the symmetric loop holds B/2 tiles: B a multiple of 2·threads
    // gives every thread as many per round.
    int64_t blocks = (n + tr - 1) / tr;
    blocks = round_up(blocks, 2 * nt);
    tr = std::max<int64_t>(64, (n + blocks - 1) / blocks);
  }
  if (!self && tile_rows <= 0) {
    const int64_t per_thread = (m + nt - 1) / nt;
    tr = std::max<int64_t>(12, std::min(tr, round_up(per_thread, 12)));
  }
  tr = std::min(tr, self ? n : m);
  tc = std::min(tc, n);
  if (self) tc = tr;
  p.tr = tr;
  p.tc = tc;
  p.scratch_per = use_vnni ? round_up(screen_vnni_scratch_bytes(tr, tc, p.dp), 64) : 0;
  p.batch_per = p.batches ? screen_batch_floats(std::max(tc, tr)) : 0;
  return p;
}

}  // namespace

int64_t knn_screen_workspace_bytes(int64_t n, int64_t m, int64_t d, int64_t k, int64_t itemsize,
                                   bool l2, int n_threads, int64_t tile_rows, int64_t tile_cols,
                                   Screen screen, bool self) {
  using namespace detail;
  const int nt = std::max(1, n_threads);
  const bool use_vnni = simd_best() == Simd::avx512 && screen_vnni_supported() &&
                        screen_vnni_kernel() != nullptr;
  const ScreenPlan p = screen_plan(n, m, d, k, self, screen, use_vnni, nt, tile_rows, tile_cols);
  const bool i16 = screen == Screen::int16;
  const int64_t pad = 64;
  const int64_t out = m * k * (8 + itemsize);
  const int64_t mean = d * 8 * (1 + (n + 4095) / 4096) + nt * d * 8;  // + quantise's row copies
  const int64_t sides = side_bytes(n, d, i16, l2) + (self ? 0 : side_bytes(m, d, i16, l2));
  const int64_t rows = m * p.cap * int64_t(sizeof(ScreenCand)) + m * 4 + (m + pad) * 4 + m +
                       m * p.hs * 4 + m * 4 + m * int64_t(sizeof(std::vector<ScreenCand>)) +
                       (p.batches && p.sorted ? screen_hist_bytes(m) : 0);
  // per thread: VNNI panels, batch buffers, screen_merge_rows' selection buffers, and the
  // re-scoring's row copy and (score, index) / key arrays of up to cap candidates
  const int64_t per_thread = p.scratch_per + p.batch_per * 4 +
                             (p.batches ? (2 * p.tc + k + 32) * 4 : 0) + d * 8 + p.cap * 32;
  // float64 blocks of X (<= 64 MB) for rows the bound cannot separate; their spilled
  // candidate lists are not counted (rows of duplicates only)
  const int64_t fallback = int64_t(64) << 20;
  // the tile loops: the seed pass and the main loop
  const int64_t loops = tile_loop_workspace_bytes(n, p.tr, false, true) +
                        tile_loop_workspace_bytes(m, p.tr, self, true);
  return out + mean + sides + rows + nt * per_thread + 64 + fallback + loops;
}

/// Implemented here, declared in knn.cpp: exact kNN through the int8 or int16 screen
/// (screen = Screen::int8 / int16); use_vnni picks the VNNI tile kernel, else the portable one. Returns false
/// (nothing written) where the screen does not apply: norms outside [1e-12, 1e12], depth or
/// row count beyond the int32/uint32 ranges.
template <class T>
bool knn_screened(const MatrixView<T>& x, const MatrixView<T>* queries, int64_t k, Metric metric,
                  bool exclude_self, T* values, int64_t* indices, const KnnOptions& opt,
                  bool use_vnni, Screen screen) {
  using namespace detail;
  const int bits = screen == Screen::int8 ? 8 : 16;
  const bool self = queries == nullptr;
  const MatrixView<T>& q = self ? x : *queries;
  const int64_t n = x.rows, m = q.rows, d = x.cols;
  const bool excl = self && exclude_self;
  const bool l2 = metric == Metric::l2;
  if (n >= int64_t(0xFFFFFFFF) || round_up(d, 4) > 60000) return false;

  const Simd simd = simd_resolve(opt.simd);
  const Kernels<T> K = kernels_for<T>(simd);
  const int nt = resolve_threads(opt.n_threads, double(m) * double(n) * double(d));

  // The database centre (double, within sd/2 of the mean: detail::column_centre; any shift
  // keeps the bounds valid, near the mean makes them tight). For l2 the re-scoring is centred
  // on it too, as the float64 kernel centres (knn.cpp).
  std::vector<double> mu(static_cast<size_t>(d), 0.0);
  column_centre(x, nt, mu.data());
  SideData xs, qs_;
  quantise(x, K, l2, nt, mu, bits, xs);
  if (!xs.in_range) return false;
  if (!self) {
    quantise(q, K, l2, nt, mu, bits, qs_);
    if (!qs_.in_range) return false;
  }
  const SideData& qd = self ? xs : qs_;

  const ScreenPlan plan = screen_plan(n, m, d, k, self, screen, use_vnni, nt, opt.tile_rows,
                                     opt.tile_cols);
  const int64_t cap = plan.cap;
  const int64_t pad = 64;
  // (uninitialised: a row's entries are written before they are read)
  std::unique_ptr<ScreenCand[]> cand(new ScreenCand[static_cast<size_t>(mul_checked(m, cap, "candidate buffer"))]);
  std::vector<int32_t> count(static_cast<size_t>(m), 0);
  std::vector<float> thr(static_cast<size_t>(m + pad), -std::numeric_limits<float>::infinity());
  std::vector<uint8_t> overflow(static_cast<size_t>(m), 0);
  const ScreenSortedOps* sorted = plan.sorted ? screen_sorted_ops() : nullptr;
  MATALIGN_INTERNAL(sorted || !plan.sorted);
  const int64_t hs = plan.hs;
  // Batches (see below) write every row's threshold state before its first push, and most
  // rows then need none of it (histogram thresholds): leave it uninitialised there.
  const bool batches = plan.batches;
  const int64_t heap_size = mul_checked(m, hs, "threshold heaps");
  std::unique_ptr<float[]> heap(new float[static_cast<size_t>(heap_size)]);
  if (!batches) std::fill(heap.get(), heap.get() + heap_size, std::numeric_limits<float>::infinity());
  std::vector<int32_t> heap_n(static_cast<size_t>(m), 0);
  ScreenSpill spill;
  spill.rows.resize(static_cast<size_t>(m));
  spill.row_limit = std::max<int64_t>(64 * cap, 4096);
  // spilled lists may use as much again as the inline ones, and at least 256 MB
  spill.budget = std::max<int64_t>(int64_t(256) << 20, m * cap * int64_t(sizeof(ScreenCand)));
  ScreenState st{cand.get(), count.data(), thr.data(), overflow.data(), &spill, heap.get(),
                 heap_n.data(), k, cap, hs, sorted, nullptr};

  const ScreenTileFn tile_fn = !use_vnni ? nullptr : bits == 8 ? screen_vnni_kernel() : screen_vnni16_kernel();
  const int64_t tr = plan.tr, tc = plan.tc;
  std::vector<int8_t> scratch;
  const int64_t scratch_per = tile_fn ? plan.scratch_per : 0;
  if (tile_fn) scratch.assign(static_cast<size_t>(mul_checked(nt, scratch_per, "scratch")) + 64, 0);
  int8_t* scratch_base = scratch.empty() ? nullptr
      : scratch.data() + ((64 - reinterpret_cast<uintptr_t>(scratch.data()) % 64) % 64);
  // Batch buffers: each row's first tile is merged as a whole (screen_merge_rows): a heap
  // update per column from an empty heap would cost k·(1 + ln(tile/k)) of them per row.
  std::unique_ptr<ScreenHist> hist;  // rows seeded by a batch continue with histogram thresholds
  if (batches && sorted) {
    hist.reset(new ScreenHist(m));
    st.hist = hist.get();
  }
  const int64_t batch_per = plan.batch_per;
  std::vector<float> batch_bufs(static_cast<size_t>(mul_checked(nt, batch_per, "batch buffers")));

  TileLoopOptions lo;
  lo.n_threads = nt;
  lo.progress = opt.progress;
  lo.any_order = true;  // the screened graph is exact whatever order the tiles come in
  auto run = [&](const Tile& t, int tid, bool batch) {
    ScreenTileArgs a;
    a.rows = qd.view();
    a.cols = xs.view();
    a.r0 = t.r0;
    a.r1 = t.r1;
    a.c0 = t.c0;
    a.c1 = t.c1;
    a.l2 = l2;
    a.feed_cols = self;
    a.diagonal = t.diagonal;
    a.exclude_self = excl;
    a.rs = &st;
    a.cs = &st;
    a.scratch = scratch_base ? scratch_base + tid * scratch_per : nullptr;
    a.batch = batch;
    a.batch_buf = batch_bufs.data() + tid * batch_per;
    if (batch) {  // no column feeding: the batch covers every pair of its rows
      a.feed_cols = false;
      a.diagonal = false;
    }
    if (tile_fn) tile_fn(a);
    else tile_generic(a);
  };
  if (self && batches) {
    // Seed pass: each row block against its own columns (the diagonal tile, both halves) in
    // batch mode; the symmetric loop then skips the diagonal tiles. The seed loop reports no
    // progress of its own, but Ctrl-C is polled there too.
    TileLoopOptions seed = lo;
    if (opt.progress) seed.progress = [&](int64_t, int64_t) { return opt.progress(0, 1); };
    for_each_tile(
        n, tr, tr, tr, false,
        [&](const Tile& t, int tid) {
          Tile d = t;
          d.c0 = t.r0;
          d.c1 = t.r1;
          run(d, tid, true);
        },
        seed);
  }
  for_each_tile(
      m, n, tr, tc, self,
      [&](const Tile& t, int tid) {
        if (self && t.diagonal && batches) return;  // done by the seed pass
        run(t, tid, batches && !self && t.c0 == 0);  // queries: each row block's first column tile
      },
      lo);

  // Exact re-scoring of the survivors; overflowed rows are collected for the float64 kernel.
  auto score = [&](int64_t i, double ip, int64_t j) {
    return l2 ? (2.0 * ip) - (qd.norm2[i] + xs.norm2[j]) : ip;
  };
  std::exception_ptr error;
  std::mutex error_mutex;
#pragma omp parallel num_threads(nt)
  {
    std::vector<double> row(static_cast<size_t>(d));
    std::vector<std::pair<double, int64_t>> ex;
#if defined(__SIZEOF_INT128__)
    std::vector<unsigned __int128> keys;
#endif
#pragma omp for schedule(dynamic, 64)
    for (int64_t i = 0; i < m; ++i) {
      if (overflow[i] == 1) continue;
      try {
        ScreenCand* c = cand.get() + i * cap;
        int64_t cnt = count[i];
        if (overflow[i] == 2) {
          c = spill.rows[i].data();
          cnt = static_cast<int64_t>(spill.rows[i].size());
        }
        MATALIGN_INTERNAL(cnt >= k && heap_n[i] >= k);
        const float th = thr[i];  // the k-th largest lower bound of the row
        cnt = std::partition(c, c + cnt, [th](const ScreenCand& z) { return z.ub >= th; }) - c;
        // (A float SIMD dot with its rounding bound as a second screen before the float64
        // re-scoring used to run here; since the re-scoring runs 8 FMA chains per vector it
        // costs as much as the screen it would save, and dropping it measured 2-10 % faster.)
        for (int64_t col = 0; col < d; ++col) row[col] = static_cast<double>(q(i, col)) - (l2 ? mu[col] : 0.0);
        ex.resize(static_cast<size_t>(cnt));
        for (int64_t t0 = 0; t0 < cnt; t0 += 16) {
          const int ny = static_cast<int>(std::min<int64_t>(16, cnt - t0));
          const T* ys[16];
          double out[16];
          for (int u = 0; u < ny; ++u) ys[u] = &x(c[t0 + u].index, 0);
          K.dots_f64(row.data(), ys, x.col_stride, d, ny, out, l2 ? mu.data() : nullptr);
          for (int u = 0; u < ny; ++u) {
            const int64_t j = c[t0 + u].index;
            ex[t0 + u] = {score(i, out[u], j), j};
          }
        }
        MATALIGN_INTERNAL(static_cast<int64_t>(ex.size()) >= k);
#if defined(__SIZEOF_INT128__)
        // Rank by (score desc, index asc) as one unsigned 128-bit key each: the score's
        // order-preserving bits (inverted), then the index (< 2^32) and the position of the
        // entry (to read back the exact double, -0.0 included). Integer compares, no NaN
        // branches: the pair sort was ~5 % of the screen at k = 100.
        keys.resize(ex.size());
        for (size_t t = 0; t < ex.size(); ++t) {
          const double sc = ex[t].first == 0.0 ? 0.0 : ex[t].first;  // -0.0 ties with +0.0
          uint64_t b;
          std::memcpy(&b, &sc, sizeof(b));
          const uint64_t asc = (b >> 63) ? ~b : (b | (uint64_t(1) << 63));
          keys[t] = (static_cast<unsigned __int128>(~asc) << 64) |
                    (static_cast<uint64_t>(ex[t].second) << 32) | static_cast<uint64_t>(t);
        }
        if (static_cast<int64_t>(keys.size()) > k) std::nth_element(keys.begin(), keys.begin() + (k - 1), keys.end());
        std::sort(keys.begin(), keys.begin() + k);
        auto at = [&](int64_t t) -> const std::pair<double, int64_t>& {
          return ex[static_cast<size_t>(static_cast<uint64_t>(keys[t]) & 0xFFFFFFFFu)];
        };
#else
        auto better = [](const std::pair<double, int64_t>& p1, const std::pair<double, int64_t>& p2) {
          return p1.first > p2.first || (p1.first == p2.first && p1.second < p2.second);
        };
        if (static_cast<int64_t>(ex.size()) > k) std::nth_element(ex.begin(), ex.begin() + (k - 1), ex.end(), better);
        std::sort(ex.begin(), ex.begin() + k, better);
        auto at = [&](int64_t t) -> const std::pair<double, int64_t>& { return ex[static_cast<size_t>(t)]; };
#endif
        T* vo = values + i * k;
        int64_t* io = indices + i * k;
        for (int64_t t = 0; t < k; ++t) {
          const auto& e = at(t);
          io[t] = e.second;
          vo[t] = static_cast<T>(l2 ? std::max(0.0, -e.first) : e.first);
        }
      } catch (...) {
        std::lock_guard<std::mutex> lock(error_mutex);
        if (!error) error = std::current_exception();
      }
    }
  }
  if (error) std::rethrow_exception(error);

  // Overflowed rows: the float64 kernel, queries = those rows (k + 1 and drop self by index).
  std::vector<int64_t> hard;
  for (int64_t i = 0; i < m; ++i)
    if (overflow[i] == 1) hard.push_back(i);
  if (!hard.empty()) {
    // The float64 kernel with these rows as queries, over float64 blocks of X of <= 64 MB
    // (a float32 X is converted block by block), merged by (score, index). k + 1 per block
    // in self mode, then the row itself is dropped by index.
    const int64_t h = static_cast<int64_t>(hard.size());
    const int64_t kk = excl ? k + 1 : k;
    std::vector<double> qcopy(static_cast<size_t>(mul_checked(h, d, "overflow rows")));
    for (int64_t r = 0; r < h; ++r)
      for (int64_t col = 0; col < d; ++col) qcopy[r * d + col] = static_cast<double>(q(hard[r], col));
    const MatrixView<double> qv{qcopy.data(), h, d, d, 1};
    // (tile_cols, when given, also sets the block: tests force several blocks that way)
    const int64_t block = std::max<int64_t>(
        kk, opt.tile_cols > 0 ? opt.tile_cols : std::min<int64_t>(n, (int64_t(64) << 20) / (8 * d)));
    std::vector<std::vector<std::pair<double, int64_t>>> best(static_cast<size_t>(h));
    std::vector<double> xcopy;
    KnnOptions o2;
    o2.n_threads = opt.n_threads;
    o2.simd = simd;
    o2.screen = Screen::off;
    o2.centre = mu.data();  // the whole database's centre, not each block's
    o2.progress = opt.progress;
    for (int64_t b0 = 0; b0 < n; b0 += block) {
      const int64_t b1 = std::min(n, b0 + block), nb = b1 - b0;
      const int64_t kb = std::min(kk, nb);
      MatrixView<double> xv;
      if constexpr (std::is_same<T, double>::value) {
        xv = MatrixView<double>{&x(b0, 0), nb, d, x.row_stride, x.col_stride};
      } else {
        xcopy.resize(static_cast<size_t>(nb * d));
        for (int64_t r = 0; r < nb; ++r)
          for (int64_t col = 0; col < d; ++col) xcopy[r * d + col] = static_cast<double>(x(b0 + r, col));
        xv = MatrixView<double>{xcopy.data(), nb, d, d, 1};
      }
      std::vector<double> hv(static_cast<size_t>(h * kb));
      std::vector<int64_t> hi(static_cast<size_t>(h * kb));
      knn_exact<double>(xv, &qv, kb, metric, false, hv.data(), hi.data(), o2);
      for (int64_t r = 0; r < h; ++r)
        for (int64_t t = 0; t < kb; ++t) {
          const int64_t j = b0 + hi[r * kb + t];
          if (excl && j == hard[r]) continue;
          // larger is better in both metrics: l2 values are distances
          best[r].push_back({l2 ? -hv[r * kb + t] : hv[r * kb + t], j});
        }
    }
    for (int64_t r = 0; r < h; ++r) {
      auto& v = best[r];
      std::sort(v.begin(), v.end(), [](const auto& p1, const auto& p2) {
        return p1.first > p2.first || (p1.first == p2.first && p1.second < p2.second);
      });
      MATALIGN_INTERNAL(static_cast<int64_t>(v.size()) >= k);
      const int64_t i = hard[r];
      for (int64_t t = 0; t < k; ++t) {
        indices[i * k + t] = v[t].second;
        values[i * k + t] = static_cast<T>(l2 ? -v[t].first : v[t].first);
      }
    }
  }
  return true;
}

/// Declared in knn.h: one block pair of the screened self graph (see knn_block_pair). x is
/// the pair's local matrix: rows [0, ni) = block I, [ni, x.rows) = block J (none when same).
/// Returns false (nothing written) where the screen does not apply or a row overflowed its
/// candidate budget: the caller then runs the float64 GEMM pair, which gives the same scores.
template <class T>
bool knn_block_pair_screened(const MatrixView<T>& x, int64_t ni, int64_t k, Metric metric,
                             const double* centre, Screen screen, double* score_i,
                             int64_t* index_i, double* score_j, int64_t* index_j,
                             const KnnOptions& opt) {
  using namespace detail;
  MATALIGN_CHECK(screen == Screen::int8 || screen == Screen::int16,
                 "knn_block_pair_screened: screen must be int8 or int16");
  const int bits = screen == Screen::int8 ? 8 : 16;
  const int64_t nl = x.rows, d = x.cols;
  MATALIGN_CHECK(nl > 0 && d > 0 && ni >= 1 && ni <= nl, "knn_block_pair_screened: bad blocks");
  const bool same = ni == nl;
  const int64_t nj = nl - ni;
  MATALIGN_CHECK(k >= 1 && (same ? k <= ni - 1 : (k <= ni && k <= nj)),
                 "knn_block_pair_screened: k must fit both blocks");
  const bool l2 = metric == Metric::l2;
  MATALIGN_CHECK(!l2 || centre != nullptr, "knn_block_pair_screened: l2 needs the centre");
  if (nl >= int64_t(0xFFFFFFFF) || round_up(d, 4) > 60000) return false;
  const Simd simd = simd_resolve(opt.simd);
  const Kernels<T> K = kernels_for<T>(simd);
  const bool use_vnni = simd == Simd::avx512 && screen_vnni_supported() &&
                        screen_vnni_kernel() != nullptr;
  const int nt = resolve_threads(opt.n_threads, double(ni) * double(nl) * double(d));
  // The whole database's centre: quantisation, bounds and the float64 re-scoring as there.
  // (For ip the screen also centres its quantisation on it; the re-scoring does not.)
  std::vector<double> mu(centre, centre + d);
  SideData xs;
  quantise(x, K, l2, nt, mu, bits, xs);
  if (!xs.in_range) return false;
  ScreenPlan plan = screen_plan(nl, nl, d, k, true, screen, use_vnni, nt, opt.tile_rows,
                                opt.tile_cols);
  plan.batches = false;  // every row's thresholds start from the heap (no seed pass)
  plan.batch_per = 0;
  const int64_t cap = plan.cap;
  const int64_t pad = 64;
  std::unique_ptr<ScreenCand[]> cand(new ScreenCand[static_cast<size_t>(mul_checked(nl, cap, "candidate buffer"))]);
  std::vector<int32_t> count(static_cast<size_t>(nl), 0);
  std::vector<float> thr(static_cast<size_t>(nl + pad), -std::numeric_limits<float>::infinity());
  std::vector<uint8_t> overflow(static_cast<size_t>(nl), 0);
  const ScreenSortedOps* sorted = plan.sorted ? screen_sorted_ops() : nullptr;
  MATALIGN_INTERNAL(sorted || !plan.sorted);
  const int64_t hs = plan.hs;
  const int64_t heap_size = mul_checked(nl, hs, "threshold heaps");
  std::unique_ptr<float[]> heap(new float[static_cast<size_t>(heap_size)]);
  std::fill(heap.get(), heap.get() + heap_size, std::numeric_limits<float>::infinity());
  std::vector<int32_t> heap_n(static_cast<size_t>(nl), 0);
  ScreenSpill spill;
  spill.rows.resize(static_cast<size_t>(nl));
  spill.row_limit = std::max<int64_t>(64 * cap, 4096);
  spill.budget = std::max<int64_t>(int64_t(256) << 20, nl * cap * int64_t(sizeof(ScreenCand)));
  ScreenState st{cand.get(), count.data(), thr.data(), overflow.data(), &spill, heap.get(),
                 heap_n.data(), k, cap, hs, sorted, nullptr};
  const ScreenTileFn tile_fn = !use_vnni ? nullptr : bits == 8 ? screen_vnni_kernel() : screen_vnni16_kernel();
  const int64_t tr = plan.tr;
  std::vector<int8_t> scratch;
  const int64_t scratch_per = tile_fn ? plan.scratch_per : 0;
  if (tile_fn) scratch.assign(static_cast<size_t>(mul_checked(nt, scratch_per, "scratch")) + 64, 0);
  int8_t* scratch_base = scratch.empty() ? nullptr
      : scratch.data() + ((64 - reinterpret_cast<uintptr_t>(scratch.data()) % 64) % 64);
  std::vector<float> batch_bufs(1);
  TileLoopOptions lo;
  lo.n_threads = nt;
  lo.progress = opt.progress;
  lo.any_order = true;  // exact whatever order the tiles come in
  for_each_tile(
      nl, nl, tr, tr, true,
      [&](const Tile& t, int tid) {
        ScreenTileArgs a;
        a.rows = xs.view();
        a.cols = xs.view();
        a.r0 = t.r0;
        a.r1 = t.r1;
        a.c0 = t.c0;
        a.c1 = t.c1;
        a.diagonal = t.diagonal;
        if (!same) {  // only pairs (I, J): rows in [0, ni), columns in [ni, nl)
          a.r1 = std::min(t.r1, ni);
          a.c0 = std::max(t.c0, ni);
          if (a.r0 >= a.r1 || a.c0 >= a.c1) return;
          a.diagonal = false;
        }
        a.l2 = l2;
        a.feed_cols = true;
        a.exclude_self = true;
        a.rs = &st;
        a.cs = &st;
        a.scratch = scratch_base ? scratch_base + tid * scratch_per : nullptr;
        a.batch = false;
        a.batch_buf = batch_bufs.data();
        if (tile_fn) tile_fn(a);
        else tile_generic(a);
      },
      lo);
  for (int64_t i = 0; i < nl; ++i)
    if (overflow[i] == 1) return false;

  auto score = [&](int64_t i, double ip, int64_t j) {
    return l2 ? (2.0 * ip) - (xs.norm2[i] + xs.norm2[j]) : ip;
  };
  std::exception_ptr error;
  std::mutex error_mutex;
#pragma omp parallel num_threads(nt)
  {
    std::vector<double> row(static_cast<size_t>(d));
    std::vector<std::pair<double, int64_t>> ex;
#pragma omp for schedule(dynamic, 64)
    for (int64_t i = 0; i < nl; ++i) {
      try {
        ScreenCand* c = cand.get() + i * cap;
        int64_t cnt = count[i];
        if (overflow[i] == 2) {
          c = spill.rows[i].data();
          cnt = static_cast<int64_t>(spill.rows[i].size());
        }
        MATALIGN_INTERNAL(cnt >= k && heap_n[i] >= k);
        const float th = thr[i];
        cnt = std::partition(c, c + cnt, [th](const ScreenCand& z) { return z.ub >= th; }) - c;
        for (int64_t col = 0; col < d; ++col) row[col] = static_cast<double>(x(i, col)) - (l2 ? mu[col] : 0.0);
        ex.resize(static_cast<size_t>(cnt));
        for (int64_t t0 = 0; t0 < cnt; t0 += 16) {
          const int ny = static_cast<int>(std::min<int64_t>(16, cnt - t0));
          const T* ys[16];
          double out[16];
          for (int u = 0; u < ny; ++u) ys[u] = &x(c[t0 + u].index, 0);
          K.dots_f64(row.data(), ys, x.col_stride, d, ny, out, l2 ? mu.data() : nullptr);
          for (int u = 0; u < ny; ++u) {
            const int64_t j = c[t0 + u].index;
            ex[t0 + u] = {score(i, out[u], j), j};
          }
        }
        MATALIGN_INTERNAL(static_cast<int64_t>(ex.size()) >= k);
        auto better = [](const std::pair<double, int64_t>& p1, const std::pair<double, int64_t>& p2) {
          return p1.first > p2.first || (p1.first == p2.first && p1.second < p2.second);
        };
        if (static_cast<int64_t>(ex.size()) > k) std::nth_element(ex.begin(), ex.begin() + (k - 1), ex.end(), better);
        std::sort(ex.begin(), ex.begin() + k, better);
        double* so = i < ni ? score_i + i * k : score_j + (i - ni) * k;
        int64_t* io = i < ni ? index_i + i * k : index_j + (i - ni) * k;
        for (int64_t t = 0; t < k; ++t) {
          so[t] = ex[static_cast<size_t>(t)].first;
          io[t] = ex[static_cast<size_t>(t)].second;  // local: the caller maps to rows of X
        }
      } catch (...) {
        std::lock_guard<std::mutex> lock(error_mutex);
        if (!error) error = std::current_exception();
      }
    }
  }
  if (error) std::rethrow_exception(error);
  return true;
}

template bool knn_block_pair_screened<float>(const MatrixView<float>&, int64_t, int64_t, Metric,
                                             const double*, Screen, double*, int64_t*, double*,
                                             int64_t*, const KnnOptions&);
template bool knn_block_pair_screened<double>(const MatrixView<double>&, int64_t, int64_t,
                                              Metric, const double*, Screen, double*, int64_t*,
                                              double*, int64_t*, const KnnOptions&);

template bool knn_screened<float>(const MatrixView<float>&, const MatrixView<float>*, int64_t,
                                  Metric, bool, float*, int64_t*, const KnnOptions&, bool, Screen);
template bool knn_screened<double>(const MatrixView<double>&, const MatrixView<double>*, int64_t,
                                   Metric, bool, double*, int64_t*, const KnnOptions&, bool, Screen);

}  // namespace matalign