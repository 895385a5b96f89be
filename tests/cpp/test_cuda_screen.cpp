// matalign_cuda_screen_test: the host side of the planned CUDA int8 screen, without a GPU.
//  1. The quantised data the GPU path uploads are the CPU screen's (detail::quantise, one
//     function), and the shared pair bounds (matalign/detail/screen_bound.h) equal the CPU's
//     screen_bounds bit for bit on every pair, from exact int32 products of the codes (what
//     int8 tensor cores accumulate).
//  2. The widened bounds contain the score the GPU's exact path computes (emulated here as an
//     FMA chain in the dtype, sequential and in reverse order) for every pair.
//  3. A host emulation of the kernel's algorithm (cuda/src/knn_screen.cu), built from the
//     same screen_plan.h host/device functions the kernels call: seed lists of the dense path
//     over columns [0, S), self tiles J >= I of [S, n) feeding rows and columns, the
//     epilogue's test against each list's k-th exact score as it stood before the tile,
//     survivor lines in random order with the overflow -> all-columns fallback, and the merge
//     kernel's re-score / filter / rank sort / merged positions) returns the brute-force
//     graph of the same scores bit for bit, on data with exact duplicates and near-ties, ip
//     and l2, float32 and float64, with tiny survivor slots (forcing the fallback) and the
//     planned ones.
// Seeded random inputs; no test framework: CHECK counts failures, main returns 1 if any.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels.h"
#include "matalign/cuda/screen_plan.h"
#include "matalign/detail/screen_bound.h"
#include "screen.h"
#include "screen_quantise.h"

namespace {

int g_failures = 0;
int g_checks = 0;

#define CHECK(cond)                                                                 \
  do {                                                                              \
    ++g_checks;                                                                     \
    if (!(cond)) {                                                                  \
      ++g_failures;                                                                 \
      std::fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
    }                                                                               \
  } while (0)

using namespace matalign;
using namespace matalign::detail;
namespace sp = matalign::cuda::screen_plan;

detail::ScreenTerms terms(const SideData& s, int64_t r) {
  return ScreenTerms{s.s[r], s.n[r], s.t[r], s.e[r], s.g[r], s.nhi[r], s.nlo[r], s.c[r], s.dc[r]};
}

/// Rows with structure: clusters around an offset, exact duplicates, near-ties (a row and a
/// copy perturbed in its last bits), and a few zero-spread rows.
template <class T>
std::vector<T> make_data(int64_t n, int64_t d, uint32_t seed) {
  std::mt19937 gen(seed);
  std::normal_distribution<double> nd(0.0, 1.0);
  std::vector<T> x(static_cast<size_t>(n * d));
  for (int64_t r = 0; r < n; ++r) {
    const double base = 3.0 + 0.1 * static_cast<double>(r % 5);
    for (int64_t k = 0; k < d; ++k) x[r * d + k] = static_cast<T>(base + nd(gen));
  }
  for (int64_t r = 1; r < n; r += 7)  // exact duplicates of the previous row
    std::copy(&x[(r - 1) * d], &x[r * d], &x[r * d]);
  for (int64_t r = 3; r < n; r += 11) {  // near-ties: the previous row, one coordinate nudged
    std::copy(&x[(r - 1) * d], &x[r * d], &x[r * d]);
    T& v = x[r * d + (r % d)];
    v = std::nextafter(v, T(100));
  }
  return x;
}

/// The GPU exact path's score, emulated: an FMA chain in T over the raw rows (ip) or the rows
/// centred in T with norms of the same chain (l2: 2<x', y'> - (|x'|² + |y'|²)). `rev` runs the
/// chain backwards (the bound must hold for any order).
template <class T>
T gpu_score(const T* a, const T* b, const T* na, const T* nb, int64_t d, bool l2, bool rev) {
  T s = T(0);
  for (int64_t t = 0; t < d; ++t) {
    const int64_t k = rev ? d - 1 - t : t;
    s = std::fma(a[k], b[k], s);
  }
  if (l2) s = s * T(2) - (*na + *nb);
  return s + T(0);
}

/// The kernel's algorithm (cuda/src/knn_screen.cu), emulated with the same screen_plan.h
/// functions the kernels call, on m rows against n columns with scores f(i, j) (the GPU exact
/// path's numbers) and widened upper bounds ub(i, j) (i a tile row, j a tile column): seed
/// lists from the dense path (rows i < full_rows against all columns, the rest against
/// [0, S)), then the tiles: the epilogue's survives() against the lists' k-th entries as they
/// stood before the tile, survivor lines in a random order (the kernel's atomics give any
/// order), and the merge kernel's steps (re-score and filter, rank sort, merged positions,
/// overflow chunks). Returns the lists (key, idx: m × k) and counts reruns / survivors.
template <class T, class F, class U>
void emulate_screen(int64_t m, int64_t n, int64_t k, int64_t S, int64_t full_rows, bool excl,
                    const std::vector<sp::Tile>& tiles, int64_t slots, const F& f, const U& ub,
                    uint32_t seed, std::vector<T>& key, std::vector<int64_t>& idx,
                    int64_t& reruns, int64_t& survivors) {
  key.assign(static_cast<size_t>(m * k), T(0));
  idx.assign(static_cast<size_t>(m * k), -1);
  for (int64_t i = 0; i < m; ++i) {  // 1. seed: the dense path's exact top-k
    std::vector<int64_t> c;
    for (int64_t j = 0; j < (i < full_rows ? n : S); ++j)
      if (!(excl && j == i)) c.push_back(j);
    std::sort(c.begin(), c.end(),
              [&](int64_t p, int64_t q) { return sp::ranks_before(f(i, p), p, f(i, q), q); });
    for (int64_t t = 0; t < k; ++t) {
      key[i * k + t] = f(i, c[t]);
      idx[i * k + t] = c[t];
    }
  }
  std::mt19937 shuffle_gen(seed + 1000);
  reruns = survivors = 0;
  for (const sp::Tile& t : tiles) {
    // 2. the screen kernel: thresholds read before the tile's merges
    const int64_t nl = sp::tile_lines(t);
    std::vector<std::vector<uint32_t>> surv(static_cast<size_t>(nl));
    std::vector<int64_t> cnt(static_cast<size_t>(nl), 0);
    const std::vector<T> key0(key);
    auto push = [&](int64_t line, int64_t index) {
      if (cnt[line]++ < slots) surv[line].push_back(static_cast<uint32_t>(index));
    };
    for (int64_t i = t.r0; i < t.r1; ++i)
      for (int64_t j = t.c0; j < t.c1; ++j) {
        const bool to_row = sp::offers_row(t, i, j, excl), to_col = sp::offers_mirror(t, i, j);
        if (to_row && sp::survives(ub(i, j), key0[i * k + k - 1])) push(sp::row_line(t, i), j);
        if (to_col && sp::survives(ub(i, j), key0[j * k + k - 1])) push(sp::mirror_line(t, j), i);
      }
    // 3. the merge kernel, line by line
    for (int64_t line = 0; line < nl; ++line) {
      if (cnt[line] == 0) continue;
      survivors += cnt[line];
      std::shuffle(surv[line].begin(), surv[line].end(), shuffle_gen);
      const int64_t g = sp::line_row(t, line);
      T* lk = &key[g * k];
      int64_t* li = &idx[g * k];
      const bool overflow = cnt[line] > slots;
      reruns += overflow ? 1 : 0;
      int64_t cb = 0, ce = 0;
      sp::line_columns(t, line, cb, ce);
      const int64_t chunks = overflow ? (ce - cb + slots - 1) / slots : 1;
      for (int64_t ch = 0; ch < chunks; ++ch) {
        const int64_t nc = overflow ? std::min(slots, ce - cb - ch * slots) : cnt[line];
        const T kth = lk[k - 1];
        const int64_t kth_i = li[k - 1];
        std::vector<T> ck;
        std::vector<uint32_t> ci;
        for (int64_t u = 0; u < nc; ++u) {
          const int64_t j = overflow ? cb + ch * slots + u : static_cast<int64_t>(surv[line][u]);
          if (overflow && excl && j == g) continue;
          if (sp::ranks_before(f(g, j), j, kth, kth_i)) {
            ck.push_back(f(g, j));
            ci.push_back(static_cast<uint32_t>(j));
          }
        }
        const int64_t cn = static_cast<int64_t>(ck.size());
        if (cn == 0) continue;
        std::vector<T> sk(static_cast<size_t>(cn)), ok(static_cast<size_t>(k));
        std::vector<uint32_t> si(static_cast<size_t>(cn));
        std::vector<int64_t> oi(static_cast<size_t>(k), -1);
        for (int64_t u = 0; u < cn; ++u) {
          const int64_t r = sp::rank_among(ck.data(), ci.data(), cn, u);
          sk[r] = ck[u];
          si[r] = ci[u];
        }
        for (int64_t q = 0; q < k; ++q) {
          const int64_t p = sp::merged_pos_list(lk, li, q, sk.data(), si.data(), cn);
          if (p < k) ok[p] = lk[q], oi[p] = li[q];
        }
        for (int64_t u = 0; u < cn; ++u) {
          const int64_t p = sp::merged_pos_cand(sk.data(), si.data(), u, lk, li, k);
          if (p < k) ok[p] = sk[u], oi[p] = si[u];
        }
        CHECK(std::find(oi.begin(), oi.end(), int64_t(-1)) == oi.end());  // positions 0..k-1 filled
        std::copy(ok.begin(), ok.end(), lk);
        std::copy(oi.begin(), oi.end(), li);
      }
    }
  }
}

/// Rows of the lists that differ from the brute-force top-k of the scores f (bitwise).
template <class T, class F>
int64_t graph_mismatches(int64_t m, int64_t n, int64_t k, bool excl, const F& f,
                         const std::vector<T>& key, const std::vector<int64_t>& idx) {
  int64_t bad = 0;
  for (int64_t i = 0; i < m; ++i) {
    std::vector<int64_t> all;
    for (int64_t j = 0; j < n; ++j)
      if (!(excl && j == i)) all.push_back(j);
    std::sort(all.begin(), all.end(),
              [&](int64_t p, int64_t q) { return sp::ranks_before(f(i, p), p, f(i, q), q); });
    for (int64_t t = 0; t < k; ++t) {
      const T v = f(i, all[t]);
      if (idx[i * k + t] != all[t] || std::memcmp(&key[i * k + t], &v, sizeof(T)) != 0) {
        ++bad;
        break;
      }
    }
  }
  return bad;
}

template <class T>
void run_case(int64_t n, int64_t d, int64_t k, bool l2, int64_t tile, int64_t slots_override,
              uint32_t seed, int64_t seed_floor = 40) {
  const int64_t itemsize = sizeof(T);
  std::vector<T> x = make_data<T>(n, d, seed);
  const MatrixView<T> xv{x.data(), n, d, d, 1};
  const Kernels<T> K = kernels_for<T>(Simd::scalar);
  std::vector<double> mu(static_cast<size_t>(d));
  column_centre(xv, 1, mu.data());
  SideData sd;
  quantise(xv, K, l2, 1, mu, 8, sd);
  CHECK(sd.in_range);
  // (1) the uploaded arrays are quantise()'s: a second call gives the same bytes (one
  // function, deterministic), and the bounds from the shared header equal screen_bounds'.
  SideData sd2;
  quantise(xv, K, l2, 2, mu, 8, sd2);
  CHECK(sd.q == sd2.q && sd.s == sd2.s && sd.g == sd2.g && sd.c == sd2.c && sd.dc == sd2.dc &&
        sd.nhi == sd2.nhi && sd.nlo == sd2.nlo);

  // the rows the GPU path scores: raw (ip) or centred in T (l2), and their norms in T
  std::vector<T> rows(x), nrm(static_cast<size_t>(n), T(0));
  std::vector<float> w(static_cast<size_t>(n));
  for (int64_t r = 0; r < n; ++r) {
    double n2 = 0.0;
    for (int64_t c = 0; c < d; ++c) {
      if (l2) rows[r * d + c] = static_cast<T>(static_cast<double>(x[r * d + c]) - mu[c]);
      const double v = l2 ? static_cast<double>(x[r * d + c]) - mu[c] : static_cast<double>(x[r * d + c]);
      n2 += v * v;
    }
    T s = T(0);
    for (int64_t c = 0; c < d; ++c) s = std::fma(rows[r * d + c], rows[r * d + c], s);
    nrm[r] = s;
    w[r] = screen_rescore_term(n2, d, itemsize, l2);
  }

  ScreenTileArgs a{};
  a.rows = sd.view();
  a.cols = sd.view();
  a.l2 = l2;
  std::vector<float> lb(static_cast<size_t>(n * n)), ub(static_cast<size_t>(n * n));
  std::vector<T> f(static_cast<size_t>(n * n));
  int64_t bitwise_bad = 0, contain_bad = 0, slack_bad = 0;
  double max_ratio = 0.0;
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < n; ++j) {
      int64_t p64 = 0;
      int32_t p32 = 0;
      for (int64_t t = 0; t < sd.dp; ++t) {
        const int32_t prod = int32_t(sd.q[i * sd.dp + t]) * int32_t(sd.q[j * sd.dp + t]);
        p64 += prod;
        p32 += prod;  // int32 accumulation, as the tensor cores: exact (|p| <= 127² dp)
      }
      CHECK(p64 == p32);
      const float approx = screen_approx(p32, sd.s[j], sd.s[i]);
      float l0, u0, l1, u1;
      screen_bounds(a, i, j, approx, l0, u0);
      screen_pair_bounds(terms(sd, i), terms(sd, j), approx, l2, l1, u1);
      if (std::memcmp(&l0, &l1, 4) != 0 || std::memcmp(&u0, &u1, 4) != 0) ++bitwise_bad;
      screen_widen(screen_rescore_slack(w[i], w[j], l2), l1, u1);
      const T s0 = gpu_score(&rows[i * d], &rows[j * d], &nrm[i], &nrm[j], d, l2, false);
      const T s1 = gpu_score(&rows[i * d], &rows[j * d], &nrm[i], &nrm[j], d, l2, true);
      if (!(static_cast<double>(l1) <= static_cast<double>(std::min(s0, s1)) &&
            static_cast<double>(std::max(s0, s1)) <= static_cast<double>(u1)))
        ++contain_bad;
      // the slack itself bounds the chain's error against the real score (long double)
      long double ex = 0.0L;
      for (int64_t t = 0; t < d; ++t) {
        const long double xi = x[i * d + t], xj = x[j * d + t];
        ex += l2 ? -(xi - xj) * (xi - xj) : xi * xj;
      }
      const long double delta = screen_rescore_slack(w[i], w[j], l2);
      const long double err = std::max(std::fabs(static_cast<long double>(s0) - ex),
                                       std::fabs(static_cast<long double>(s1) - ex));
      if (!(err <= delta)) ++slack_bad;
      if (delta > 0) max_ratio = std::max(max_ratio, static_cast<double>(err / delta));
      lb[i * n + j] = l1;
      ub[i * n + j] = u1;
      f[i * n + j] = s0;
    }
  CHECK(bitwise_bad == 0);
  CHECK(contain_bad == 0);
  CHECK(slack_bad == 0);

  // (3) the kernel's algorithm, emulated (emulate_screen); exclude_self as the graph
  // functions do. Self graph: rows [0, S) dense against all columns, tiles J >= I of [S, n).
  const int64_t slots = slots_override > 0 ? slots_override : sp::survivor_slots(k, tile);
  const int64_t S = sp::seed_columns(n, k, seed_floor);
  CHECK(S < n);  // the screen runs on these sizes
  std::vector<sp::Tile> tiles = sp::self_tiles(n - S, tile);
  for (sp::Tile& t : tiles) t.r0 += S, t.r1 += S, t.c0 += S, t.c1 += S;
  auto fs = [&](int64_t i, int64_t j) { return f[i * n + j]; };
  auto us = [&](int64_t i, int64_t j) { return ub[i * n + j]; };
  std::vector<T> key;
  std::vector<int64_t> idx;
  int64_t reruns = 0, survivors = 0;
  emulate_screen<T>(n, n, k, S, S, true, tiles, slots, fs, us, seed, key, idx, reruns, survivors);
  if (slots_override > 0) CHECK(reruns > 0);  // the fallback ran
  const int64_t graph_bad = graph_mismatches<T>(n, n, k, true, fs, key, idx);
  CHECK(graph_bad == 0);
  std::printf("  %s %s n=%lld d=%lld k=%lld tile=%lld slots=%lld S=%lld: survivors %lld, reruns %lld, bound/graph mismatches %lld/%lld/%lld, slack misses %lld (max error/slack %.2g)\n",
              itemsize == 4 ? "float32" : "float64", l2 ? "l2" : "ip", (long long)n, (long long)d,
              (long long)k, (long long)tile, (long long)slots, (long long)S, (long long)survivors, (long long)reruns,
              (long long)bitwise_bad, (long long)contain_bad, (long long)graph_bad, (long long)slack_bad, max_ratio);
}

/// Q != X: m query rows (half of them copies of database rows: exact ties) against n database
/// rows, both quantised on the database mean, query tiles R × C over columns [S, n), row lines
/// only. The emulation must return the brute-force graph of the GPU scores bit for bit.
template <class T>
void run_query_case(int64_t m, int64_t n, int64_t d, int64_t k, bool l2, int64_t R, int64_t C,
                    int64_t slots_override, uint32_t seed) {
  const int64_t itemsize = sizeof(T);
  std::vector<T> x = make_data<T>(n, d, seed), qd = make_data<T>(m, d, seed + 7);
  for (int64_t r = 0; r < m; r += 2) std::copy(&x[(r * 5 % n) * d], &x[(r * 5 % n + 1) * d], &qd[r * d]);
  const MatrixView<T> xv{x.data(), n, d, d, 1}, qv{qd.data(), m, d, d, 1};
  const Kernels<T> K = kernels_for<T>(Simd::scalar);
  std::vector<double> mu(static_cast<size_t>(d));
  column_centre(xv, 1, mu.data());
  SideData xs, qs;
  quantise(xv, K, l2, 1, mu, 8, xs);
  quantise(qv, K, l2, 1, mu, 8, qs);
  CHECK(xs.in_range && qs.in_range);
  // the rows the GPU scores (raw for ip, centred in T for l2), their norms and slack terms
  auto prep = [&](const std::vector<T>& src, int64_t rows, std::vector<T>& out, std::vector<T>& nrm,
                  std::vector<float>& w) {
    out = src;
    nrm.assign(static_cast<size_t>(rows), T(0));
    w.assign(static_cast<size_t>(rows), 0.0f);
    for (int64_t r = 0; r < rows; ++r) {
      double n2 = 0.0;
      for (int64_t c = 0; c < d; ++c) {
        const double v = static_cast<double>(src[r * d + c]) - (l2 ? mu[c] : 0.0);
        if (l2) out[r * d + c] = static_cast<T>(v);
        n2 += v * v;
      }
      T acc = T(0);
      for (int64_t c = 0; c < d; ++c) acc = std::fma(out[r * d + c], out[r * d + c], acc);
      nrm[r] = acc;
      w[r] = screen_rescore_term(n2, d, itemsize, l2);
    }
  };
  std::vector<T> xr, qr, xn, qn;
  std::vector<float> xw, qw;
  prep(x, n, xr, xn, xw);
  prep(qd, m, qr, qn, qw);
  std::vector<T> f(static_cast<size_t>(m * n));
  std::vector<float> ub(static_cast<size_t>(m * n));
  int64_t contain_bad = 0;
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      int32_t p = 0;
      for (int64_t t = 0; t < xs.dp; ++t) p += int32_t(qs.q[i * qs.dp + t]) * int32_t(xs.q[j * xs.dp + t]);
      float lb = 0.0f, u = 0.0f;
      screen_pair_bounds(terms(qs, i), terms(xs, j), screen_approx(p, xs.s[j], qs.s[i]), l2, lb, u);
      screen_widen(screen_rescore_slack(qw[i], xw[j], l2), lb, u);
      f[i * n + j] = gpu_score(&qr[i * d], &xr[j * d], &qn[i], &xn[j], d, l2, false);
      if (!(static_cast<double>(lb) <= static_cast<double>(f[i * n + j]) &&
            static_cast<double>(f[i * n + j]) <= static_cast<double>(u)))
        ++contain_bad;
      ub[i * n + j] = u;
    }
  CHECK(contain_bad == 0);
  const int64_t slots = slots_override > 0 ? slots_override : sp::survivor_slots(k, std::max(R, C));
  const int64_t S = sp::seed_columns(n, k, 40);
  CHECK(S < n);
  std::vector<sp::Tile> tiles = sp::query_tiles(m, n - S, R, C);
  for (sp::Tile& t : tiles) t.c0 += S, t.c1 += S;
  auto fq = [&](int64_t i, int64_t j) { return f[i * n + j]; };
  auto uq = [&](int64_t i, int64_t j) { return ub[i * n + j]; };
  std::vector<T> key;
  std::vector<int64_t> idx;
  int64_t reruns = 0, survivors = 0;
  emulate_screen<T>(m, n, k, S, 0, false, tiles, slots, fq, uq, seed, key, idx, reruns, survivors);
  if (slots_override > 0) CHECK(reruns > 0);
  const int64_t graph_bad = graph_mismatches<T>(m, n, k, false, fq, key, idx);
  CHECK(graph_bad == 0);
  std::printf("  %s %s queries m=%lld n=%lld d=%lld k=%lld tiles=%lldx%lld slots=%lld S=%lld: "
              "survivors %lld, reruns %lld, containment/graph mismatches %lld/%lld\n",
              itemsize == 4 ? "float32" : "float64", l2 ? "l2" : "ip", (long long)m, (long long)n,
              (long long)d, (long long)k, (long long)R, (long long)C, (long long)slots,
              (long long)S, (long long)survivors, (long long)reruns, (long long)contain_bad,
              (long long)graph_bad);
}

/// The exact path's TopK reducer (cuda/src/knn.cu), emulated for one row: per column tile,
/// select_kernel appends (in column order) the candidates that beat the list's k-th entry,
/// the stable segmented sort orders only them (score desc), and keep_kernel merges list and
/// candidates with the same screen_plan.h position functions. Scores with many ties (a few
/// distinct values), k from 1 to beyond a tile; must equal the brute-force top-k.
void test_dense_topk_merge() {
  std::mt19937 gen(21);
  int64_t bad = 0, cases = 0;
  for (int64_t n : {1, 7, 64, 333}) {
    for (int64_t k : {1, 3, 10, 100, 400}) {
      if (k > n) continue;
      for (int64_t C : {1, 5, 64, 1000}) {
        std::uniform_int_distribution<int> v(0, 6);
        std::vector<float> f(static_cast<size_t>(n));
        for (auto& x : f) x = 0.5f * static_cast<float>(v(gen));
        std::vector<float> lk;
        std::vector<int64_t> li;
        for (int64_t c0 = 0; c0 < n; c0 += C) {
          const bool full = static_cast<int64_t>(lk.size()) >= k;
          std::vector<float> ck;
          std::vector<int64_t> ci;
          for (int64_t j = c0; j < std::min(n, c0 + C); ++j)
            if (!full || sp::ranks_before(f[j], j, lk[k - 1], li[k - 1])) {
              ck.push_back(f[j]);
              ci.push_back(j);
            }
          std::vector<size_t> order(ck.size());
          for (size_t u = 0; u < order.size(); ++u) order[u] = u;
          std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return ck[a] > ck[b]; });
          std::vector<float> sk;
          std::vector<int64_t> si;
          for (size_t u : order) sk.push_back(ck[u]), si.push_back(ci[u]);
          const int64_t filled = static_cast<int64_t>(lk.size()), added = static_cast<int64_t>(sk.size());
          const int64_t keep = std::min(k, filled + added);
          std::vector<float> ok(static_cast<size_t>(keep));
          std::vector<int64_t> oi(static_cast<size_t>(keep), -1);
          for (int64_t q = 0; q < filled; ++q) {
            const int64_t p = sp::merged_pos_list(lk.data(), li.data(), q, sk.data(), si.data(), added);
            if (p < keep) ok[p] = lk[q], oi[p] = li[q];
          }
          for (int64_t u = 0; u < added; ++u) {
            const int64_t p = sp::merged_pos_cand(sk.data(), si.data(), u, lk.data(), li.data(), filled);
            if (p < keep) ok[p] = sk[u], oi[p] = si[u];
          }
          lk = ok;
          li = oi;
        }
        std::vector<int64_t> all(static_cast<size_t>(n));
        for (int64_t j = 0; j < n; ++j) all[j] = j;
        std::sort(all.begin(), all.end(), [&](int64_t p, int64_t q) { return sp::ranks_before(f[p], p, f[q], q); });
        ++cases;
        if (static_cast<int64_t>(li.size()) != k || !std::equal(li.begin(), li.end(), all.begin())) ++bad;
      }
    }
  }
  CHECK(bad == 0);
  std::printf("  dense TopK merge: %lld cases, %lld mismatches\n", (long long)cases, (long long)bad);
}

void test_plan() {
  // every unordered pair in exactly one self tile; tile count b(b+1)/2
  for (int64_t n : {1, 5, 64, 100, 257}) {
    for (int64_t t : {1, 7, 64, 300}) {
      const auto tiles = sp::self_tiles(n, t);
      const int64_t b = (n + t - 1) / t;
      CHECK(static_cast<int64_t>(tiles.size()) == b * (b + 1) / 2);
      std::vector<int> seen(static_cast<size_t>(n * n), 0);
      for (const auto& tl : tiles) {
        CHECK(tl.c0 >= tl.r0 && tl.mirror && tl.diagonal == (tl.c0 == tl.r0));
        for (int64_t i = tl.r0; i < tl.r1; ++i)
          for (int64_t j = tl.diagonal ? i + 1 : tl.c0; j < tl.c1; ++j) ++seen[std::min(i, j) * n + std::max(i, j)];
      }
      bool ok = true;
      for (int64_t i = 0; i < n; ++i)
        for (int64_t j = 0; j < n; ++j) ok = ok && seen[i * n + j] == (j > i ? 1 : 0);
      CHECK(ok);
    }
  }
  const auto q = sp::query_tiles(10, 25, 4, 10);
  CHECK(q.size() == 9 && q.back().r1 == 10 && q.back().c1 == 25 && !q.back().mirror);
  CHECK(sp::survivor_slots(10, 8192) == 104);
  CHECK(sp::survivor_slots(100, 256) == 256);
  CHECK(sp::survivor_bytes(8192, 8192, 10, true) == 2 * 8192 * (104 * 4 + 4));
  CHECK(sp::survivor_bytes(8192, 4096, 10, false) == 8192 * (104 * 4 + 4));
  CHECK(sp::row_outcome(104, 104) == sp::RowOutcome::merge);
  CHECK(sp::row_outcome(105, 104) == sp::RowOutcome::rerun_exact);
  std::string msg;
  try {
    sp::self_tiles(0, 8);
  } catch (const std::invalid_argument& e) {
    msg = e.what();
  }
  CHECK(msg.find("self_tiles: n and t must be >= 1, got n=0") != std::string::npos);
}

}  // namespace

int main() {
  test_plan();
  test_dense_topk_merge();
  for (bool l2 : {false, true}) {
    run_case<float>(300, 37, 10, l2, 64, 0, 11);
    run_case<double>(300, 37, 10, l2, 64, 0, 12);
    run_case<float>(260, 64, 30, l2, 100, 0, 13);
    run_case<float>(200, 20, 5, l2, 50, 6, 14);   // 6 slots: the exact-rerun fallback runs
    run_case<double>(200, 20, 5, l2, 50, 6, 15);
    run_query_case<float>(90, 250, 29, 7, l2, 32, 45, 0, 16);  // ragged query tiles
    run_query_case<double>(90, 250, 29, 7, l2, 32, 45, 0, 17);
    run_query_case<float>(60, 200, 12, 4, l2, 25, 40, 5, 18);  // 5 slots: the fallback runs
  }
  std::printf("%d checks, %d failures\n", g_checks, g_failures);
  return g_failures == 0 ? 0 : 1;
}
