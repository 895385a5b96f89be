// Exact kNN through an int8 or int16 screen (see screen.h for the idea and the bound).
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
// pick from the same candidate set.
#include <algorithm>
#include <atomic>
#include <climits>
#include <cmath>
#include <cstring>
#include <exception>
#include <functional>
#include <limits>
#include <memory>
#include <mutex>
#include <type_traits>
#include <vector>

#include "kernels.h"
#include "matalign/knn.h"
#include "matalign/tiling.h"
#include "screen.h"

#ifdef _OPENMP
#include <omp.h>
#endif
#if defined(MATALIGN_HAVE_X86_KERNELS)
#include <immintrin.h>
#endif

namespace matalign {
namespace detail {

#if !defined(MATALIGN_HAVE_X86_KERNELS)
int64_t screen_vnni_scratch_bytes(int64_t, int64_t, int64_t) { return 0; }
ScreenTileFn screen_vnni_kernel() { return nullptr; }
ScreenTileFn screen_vnni16_kernel() { return nullptr; }
bool screen_vnni_supported() { return false; }
#else
bool screen_vnni_supported() {
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni");
}
#endif

// Rows whose candidates outgrow the inline list continue in a growable one, up to a per-row
// limit and a shared byte budget; past either, the row is searched by the float64 kernel.
struct ScreenSpill {
  std::vector<std::vector<ScreenCand>> rows;
  int64_t row_limit = 0;            // entries
  std::atomic<int64_t> budget{0};  // bytes left
};

namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();

// Appends column idx (upper bound ub >= the row's threshold) to row r's candidates; a full
// list drops what can no longer reach the threshold, and a list that stays full moves to a
// growable one (or, past the budget, the row is left to the float64 kernel).
void append(ScreenState& st, int64_t r, float ub, uint32_t idx) {
  int32_t& cnt = st.count[r];
  const float thr0 = st.thr[r];
  auto reachable = [&](const ScreenCand& x) { return x.ub >= thr0; };
  if (st.overflow[r] == 2) {  // spilled: cnt is the list's current limit
    std::vector<ScreenCand>& v = st.spill->rows[r];
    v.push_back(ScreenCand{ub, idx});
    if (static_cast<int64_t>(v.size()) < cnt) return;
    v.erase(std::partition(v.begin(), v.end(), reachable), v.end());
    if (static_cast<int64_t>(v.size()) > cnt - cnt / 4) {
      const int64_t more = int64_t(cnt) * int64_t(sizeof(ScreenCand));
      if (2 * int64_t(cnt) > st.spill->row_limit ||
          st.spill->budget.fetch_sub(more, std::memory_order_relaxed) < more) {
        st.overflow[r] = 1;  // the bound cannot separate this row: float64 search later
        st.thr[r] = kInf;
        std::vector<ScreenCand>().swap(v);
        cnt = 0;
        return;
      }
      cnt *= 2;
      v.reserve(static_cast<size_t>(cnt));
    }
    return;
  }
  ScreenCand* c = st.cand + r * st.cap;
  c[cnt++] = ScreenCand{ub, idx};
  if (cnt < st.cap) return;
  // Full: drop what can no longer reach the threshold.
  ScreenCand* end = std::partition(c, c + st.cap, reachable);
  cnt = static_cast<int32_t>(end - c);
  if (cnt > st.cap - st.cap / 4) {
    // Too many undecided candidates: continue in a growable list (or, past the budget,
    // search this row with the float64 kernel later).
    const int64_t bytes = 4 * st.cap * int64_t(sizeof(ScreenCand));
    if (st.spill->budget.fetch_sub(bytes, std::memory_order_relaxed) < bytes) {
      st.overflow[r] = 1;
      st.thr[r] = kInf;
      cnt = 0;
      return;
    }
    std::vector<ScreenCand>& v = st.spill->rows[r];
    v.reserve(static_cast<size_t>(4 * st.cap));
    v.assign(c, c + cnt);
    st.overflow[r] = 2;
    cnt = static_cast<int32_t>(4 * st.cap);
  }
}

#if defined(MATALIGN_HAVE_X86_KERNELS)
// The k largest lower bounds of a row kept sorted ascending in 16-lane vectors (h[0] is the
// threshold; entries past those held are +inf, and the row has 16 more lanes of padding).
// A new value finds its place by counting the entries below it (one compare per vector) and
// the entries before that place shift by one lane (valignd), all without branches on the
// data: a binary heap's walk from the root is a chain of dependent loads and mispredicted
// branches, and its rows are rarely in L1 when the next value of that row arrives, which made
// the heap ~35 % of the screen's time at k = 100.
#define MATALIGN_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl")))
MATALIGN_AVX512 inline int64_t count_below(const float* h, int64_t n, float v) {
  const __m512 x = _mm512_set1_ps(v);
  int64_t p = 0;
  for (int64_t o = 0; o < n; o += 16)
    p += __builtin_popcount(_mm512_cmp_ps_mask(_mm512_loadu_ps(h + o), x, _CMP_LT_OQ));
  return p;
}

inline uint32_t lanes_below(int64_t rel) {  // lanes t with t < rel, of 16
  return rel >= 16 ? 0xFFFFu : rel <= 0 ? 0u : (1u << rel) - 1u;
}
inline uint32_t lane_at(int64_t rel) { return rel >= 0 && rel < 16 ? 1u << rel : 0u; }

// Inserts v into the first n entries (n < k): the entries from v's place on move up a lane.
MATALIGN_AVX512 void sorted_insert(float* h, int64_t n, float v) {
  const int64_t p = count_below(h, n, v);
  const __m512 x = _mm512_set1_ps(v);
  for (int64_t b = (n / 16) * 16; b >= (p / 16) * 16; b -= 16) {  // high to low: reads old b-16
    const __m512i cur = _mm512_castps_si512(_mm512_loadu_ps(h + b));
    const __m512i prev = b > 0 ? _mm512_castps_si512(_mm512_loadu_ps(h + b - 16)) : cur;
    // lanes from v's place on take h[b-1 .. b+14], v goes to its place
    const __mmask16 up = static_cast<__mmask16>(~lanes_below(p - b) & 0xFFFFu);
    __m512 r = _mm512_castsi512_ps(_mm512_mask_alignr_epi32(cur, up, cur, prev, 15));
    r = _mm512_mask_mov_ps(r, static_cast<__mmask16>(lane_at(p - b)), x);
    _mm512_storeu_ps(h + b, r);
  }
}

// Replaces the minimum h[0] of the k entries by v > h[0]: the entries below v's place move
// down a lane.
MATALIGN_AVX512 void sorted_replace_min(float* h, int64_t k, float v) {
  const int64_t q = count_below(h, k, v) - 1;  // >= 0: v > h[0]
  const __m512 x = _mm512_set1_ps(v);
  for (int64_t b = 0; b <= q; b += 16) {  // low to high: reads old b+16 (the padding at the end)
    const __m512i cur = _mm512_castps_si512(_mm512_loadu_ps(h + b));
    const __m512i next = _mm512_castps_si512(_mm512_loadu_ps(h + b + 16));
    // lanes below v's place take h[b+1 .. b+16], v goes to its place
    const __mmask16 down = static_cast<__mmask16>(lanes_below(q - b));
    __m512 r = _mm512_castsi512_ps(_mm512_mask_alignr_epi32(cur, down, next, cur, 1));
    r = _mm512_mask_mov_ps(r, static_cast<__mmask16>(lane_at(q - b)), x);
    _mm512_storeu_ps(h + b, r);
  }
}

// The k-th largest of v[0..n) (1 <= k <= n, no NaN): a binary search over the order-preserving
// integer image of the floats, counting with one compare per 16 values (std::nth_element on
// a row's first tile, ~1000 values, was ~10 % of the screen at k = 100).
MATALIGN_AVX512 inline __m512i order_key(__m512 x) {  // float order = signed int order of keys
  const __m512i b = _mm512_castps_si512(x);
  return _mm512_xor_si512(b, _mm512_and_si512(_mm512_maskz_srai_epi32(0xFFFF, b, 31), _mm512_set1_epi32(0x7FFFFFFF)));
}

MATALIGN_AVX512 float kth_largest(const float* v, int64_t n, int64_t k) {
  const auto key = order_key;
  const int64_t full = n / 16 * 16;
  const __mmask16 tail = static_cast<__mmask16>((1u << (n - full)) - 1u);
  // the largest t with #{key >= t} >= k
  int64_t lo = INT32_MIN, hi = INT32_MAX;
  while (lo < hi) {
    const int64_t mid = lo + (hi - lo + 1) / 2;
    const __m512i t = _mm512_set1_epi32(static_cast<int32_t>(mid));
    int64_t c = 0;
    for (int64_t o = 0; o < full; o += 16)
      c += __builtin_popcount(_mm512_cmpge_epi32_mask(key(_mm512_loadu_ps(v + o)), t));
    if (tail) c += __builtin_popcount(_mm512_mask_cmpge_epi32_mask(tail, key(_mm512_maskz_loadu_ps(tail, v + full)), t));
    if (c >= k) lo = mid;
    else hi = mid - 1;
  }
  const int32_t kb = static_cast<int32_t>(lo);
  const int32_t b = kb >= 0 ? kb : (kb ^ 0x7FFFFFFF);
  float out;
  std::memcpy(&out, &b, sizeof(out));
  return out;
}

// Whether kth_largest may run: more than k values above -inf (the excluded self is -inf).
MATALIGN_AVX512 bool kth_largest_applies(const float* v, int64_t n, int64_t k) {
  const __m512 ninf = _mm512_set1_ps(-kInf);
  int64_t c = 0;
  for (int64_t o = 0; o < n; o += 16) {
    const __mmask16 m = static_cast<__mmask16>(lanes_below(n - o));  // (the tail: fewer)
    c += __builtin_popcount(_mm512_mask_cmp_ps_mask(m, _mm512_maskz_loadu_ps(m, v + o), ninf, _CMP_GT_OQ));
  }
  return c > k;
}

// out <- the values of v[0..n) above x, in order (out has room for n + 16); returns how many.
MATALIGN_AVX512 int64_t collect_above(const float* v, int64_t n, float x, float* out) {
  const __m512 xs = _mm512_set1_ps(x);
  int64_t c = 0;
  for (int64_t o = 0; o < n; o += 16) {
    const __mmask16 m = static_cast<__mmask16>(lanes_below(n - o));  // (the tail: fewer)
    const __m512 y = _mm512_maskz_loadu_ps(m, v + o);
    const __mmask16 hit = _mm512_mask_cmp_ps_mask(m, y, xs, _CMP_GT_OQ);
    // (compress in a register, then a full store: out has 16 spare; the memory form of
    // vcompressps is microcoded on Zen 4)
    _mm512_storeu_ps(out + c, _mm512_maskz_compress_ps(hit, y));
    c += __builtin_popcount(hit);
  }
  return c;
}

// out <- the positions t of v[0..n) with v[t] >= x, ascending (room for n + 16); returns how many.
MATALIGN_AVX512 int64_t positions_at_least(const float* v, int64_t n, float x, uint32_t* out) {
  const __m512 xs = _mm512_set1_ps(x);
  const __m512i lane = _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
  int64_t c = 0;
  for (int64_t o = 0; o < n; o += 16) {
    const __mmask16 m = static_cast<__mmask16>(lanes_below(n - o));  // (the tail: fewer)
    const __mmask16 hit = _mm512_mask_cmp_ps_mask(m, _mm512_maskz_loadu_ps(m, v + o), xs, _CMP_GE_OQ);
    if (!hit) continue;
    const __m512i idx = _mm512_add_epi32(lane, _mm512_set1_epi32(static_cast<int32_t>(o)));
    _mm512_storeu_si512(reinterpret_cast<void*>(out + c), _mm512_maskz_compress_epi32(hit, idx));
    c += __builtin_popcount(hit);
  }
  return c;
}
#undef MATALIGN_AVX512
#endif

}  // namespace

// Histogram thresholds (rows seeded by a batch, k >= 48). Past its first tile a row only
// needs *a* lower bound on its k-th largest score, not the k-th largest lower bound itself:
// the lower bounds above the seed's threshold x are counted in kHistBins bins of equal width
// between x and the seed's largest lower bound, and the threshold is the (rounded-down) lower
// edge of the highest bin with at least k counts at or above it. A push is then one counter
// increment (one cache line per row; the other fields are dense per-row arrays) instead of a
// sorted insertion into k values, whose rows were rarely cached (~10 % of the screen at
// k = 100); the price is a threshold up to one bin low, i.e. a few more candidates for the
// exact re-scoring. Counters saturate: an undercount only lowers the threshold (still valid).
constexpr int64_t kHistBins = 32;  // uint16 counters: one 64-byte line per row
struct ScreenHist {
  std::vector<float> e0, width, inv;
  std::vector<int32_t> tb, above;
  std::vector<uint16_t> counts;  // rows × kHistBins, the base aligned to 64 bytes
  uint16_t* cnt = nullptr;
  explicit ScreenHist(int64_t rows)
      : e0(static_cast<size_t>(rows)), width(static_cast<size_t>(rows)), inv(static_cast<size_t>(rows)),
        tb(static_cast<size_t>(rows)), above(static_cast<size_t>(rows)),
        counts(static_cast<size_t>(rows * kHistBins + 32), 0) {
    const auto addr = reinterpret_cast<uintptr_t>(counts.data());
    cnt = counts.data() + ((64 - addr % 64) % 64) / sizeof(uint16_t);
  }
};

namespace {

// The lower edge of bin b, rounded down by far more than the float error of binning a value.
inline float hist_edge(const ScreenHist& H, int64_t r, int64_t b) {
  const double w = static_cast<double>(H.width[r]), e0 = static_cast<double>(H.e0[r]);
  const double e = e0 + static_cast<double>(b) * w;
  return static_cast<float>(e - 1e-5 * (std::fabs(e0) + static_cast<double>(b) * w) - 1e-30);
}

inline void hist_count(ScreenState& st, int64_t r, float lb) {
  ScreenHist& H = *st.hist;
  const float f = (lb - H.e0[r]) * H.inv[r];
  if (!(f >= 0.0f)) return;  // below the seed's threshold (within the edge's rounding)
  const int64_t b = f >= static_cast<float>(kHistBins - 1) ? kHistBins - 1 : static_cast<int64_t>(f);
  int32_t& tb = H.tb[r];
  if (b < tb) return;  // below the current bin (only within the rounding of its edge)
  uint16_t* c = H.cnt + r * kHistBins;
  if (c[b] == 0xFFFF) return;  // saturated: undercounting is safe
  ++c[b];
  int32_t& above = H.above[r];
  ++above;
  bool moved = false;
  while (tb < kHistBins - 1 && above - static_cast<int32_t>(c[tb]) >= st.k) {
    above -= c[tb];
    ++tb;
    moved = true;
  }
  if (moved) st.thr[r] = std::max(st.thr[r], hist_edge(H, r, tb));
}

void push(ScreenState& st, int64_t r, float lb, float ub, uint32_t idx) {
  if (!(ub >= st.thr[r])) return;
  // The threshold: the k-th largest lower bound, kept by the k largest.
  float* h = st.heap + r * st.hs;
  int32_t& hn = st.heap_n[r];
  const int64_t k = st.k;
  if (hn > k) {  // histogram mode (see ScreenHist)
    if (lb > st.thr[r]) hist_count(st, r, lb);
    if (!(ub >= st.thr[r])) return;
    append(st, r, ub, idx);
    return;
  }
#if defined(MATALIGN_HAVE_X86_KERNELS)
  if (st.sorted) {
    if (hn < k) {
      sorted_insert(h, hn++, lb);
      if (hn == k) st.thr[r] = h[0];
    } else if (lb > h[0]) {
      sorted_replace_min(h, k, lb);
      st.thr[r] = h[0];
    }
  } else
#endif
  if (hn < k) {
    int64_t c = hn++;
    h[c] = lb;
    while (c > 0) {  // sift up
      const int64_t p = (c - 1) / 2;
      if (!(h[c] < h[p])) break;
      std::swap(h[c], h[p]);
      c = p;
    }
    if (hn == k) st.thr[r] = h[0];
  } else if (lb > h[0]) {
    // Replace the minimum (Floyd's bottom-up variant): walk the hole down to a leaf along the
    // smaller children with branch-free selects, then sift the new value up from there (it
    // rarely moves: new values are large, and large values live near the leaves).
    int64_t c = 0;
    for (;;) {
      const int64_t l = 2 * c + 1;
      if (l >= k) break;
      const int64_t rr = l + 1;
      const int64_t m = (rr < k && h[rr] < h[l]) ? rr : l;
      h[c] = h[m];
      c = m;
    }
    while (c > 0) {
      const int64_t p = (c - 1) / 2;
      if (!(lb < h[p])) break;
      h[c] = h[p];
      c = p;
    }
    h[c] = lb;
    st.thr[r] = h[0];
  }
  if (!(ub >= st.thr[r])) return;  // its own lower bound may have raised the threshold
  append(st, r, ub, idx);
}

// Both bounds of pair (i, j) from its approximate product (the VNNI kernels evaluate the same
// expressions in vectors).
inline void screen_bounds(const ScreenTileArgs& a, int64_t i, int64_t j, float approx,
                          float& lb, float& ub) {
  const ScreenSide& R = a.rows;
  const ScreenSide& C = a.cols;
  const float m = std::fma(R.e[i], C.n[j], R.t[i] * C.g[j]) + (R.dc[i] + C.dc[j]);
  approx = approx + (R.c[i] + C.c[j]);
  const float u = approx + m, l = approx - m;
  ub = u;
  lb = l;
  if (a.l2) {
    ub = (u + u) - (R.nhi[i] + C.nhi[j]);
    lb = (l + l) - (R.nlo[i] + C.nlo[j]);
  }
}

// Appends the batch's columns whose upper bound reaches the row's threshold (never the
// excluded self, whose bounds are -inf), and stops once the row is left to the float64 kernel.
void append_batch(ScreenState& st, int64_t i, const float* u, int64_t nc, int64_t c0, uint32_t* pos) {
  const float thr = std::max(st.thr[i], -std::numeric_limits<float>::max());
  int64_t np = 0;
#if defined(MATALIGN_HAVE_X86_KERNELS)
  if (st.sorted) np = positions_at_least(u, nc, thr, pos);
  else
#endif
    for (int64_t t = 0; t < nc; ++t)
      if (u[t] >= thr) pos[np++] = static_cast<uint32_t>(t);
  for (int64_t p = 0; p < np && st.overflow[i] != 1; ++p)
    append(st, i, u[pos[p]], static_cast<uint32_t>(c0 + pos[p]));
}

}  // namespace

void screen_offer(const ScreenTileArgs& a, int64_t i, int64_t j, float approx, bool to_row,
                  bool to_col) {
  float lb, ub;
  screen_bounds(a, i, j, approx, lb, ub);
  if (to_row) push(*a.rs, i, lb, ub, static_cast<uint32_t>(j));
  if (to_col) push(*a.cs, j, lb, ub, static_cast<uint32_t>(i));
}

void screen_merge_rows(const ScreenTileArgs& a, int64_t i0, int64_t nrows, float* lb, float* ub,
                       int64_t ld) {
  ScreenState& st = *a.rs;
  const int64_t k = st.k, nc = a.c1 - a.c0;
  thread_local std::vector<float> vals;
  thread_local std::vector<uint32_t> pos;
  vals.resize(static_cast<size_t>(nc + k + 16));
  pos.resize(static_cast<size_t>(nc + 16));
  for (int64_t ii = 0; ii < nrows; ++ii) {
    const int64_t i = i0 + ii;
    if (st.overflow[i] == 1) continue;  // left to the float64 kernel
    float* l = lb + ii * ld;
    float* u = ub + ii * ld;
    if (a.exclude_self && i >= a.c0 && i < a.c1) l[i - a.c0] = u[i - a.c0] = -kInf;
    // The k largest of the held lower bounds and the batch's (only those above the
    // threshold can be among them), sorted ascending: a valid binary min-heap as well.
    float* h = st.heap + i * st.hs;
    int32_t& hn = st.heap_n[i];
    int64_t keep = 0;
#if defined(MATALIGN_HAVE_X86_KERNELS)
    if (st.sorted && hn == 0 && kth_largest_applies(l, nc, k)) {
      // (a row's first tile: its heap is empty) the k-th largest, then everything above it
      // and as many copies of it as make k (equal values are distinct columns' bounds)
      const float x = kth_largest(l, nc, k);
      keep = collect_above(l, nc, x, vals.data());
      const float top = keep > 0 ? *std::max_element(vals.begin(), vals.begin() + keep) : x;
      const float width = (top - x) / static_cast<float>(kHistBins);
      if (st.hist && std::isfinite(x) && std::isfinite(top) && top > x &&
          (top - x) > 1e-4f * (std::fabs(x) + std::fabs(top)) && std::isfinite(width) &&
          width > 0.0f && std::isfinite(1.0f / width)) {
        // histogram mode: every value >= x counted in its bin (x's own copies in bin 0)
        ScreenHist& H = *st.hist;
        H.e0[i] = x;
        H.width[i] = width;
        H.inv[i] = 1.0f / H.width[i];
        H.tb[i] = 0;
        const int64_t nx = static_cast<int64_t>(std::count(l, l + nc, x));
        H.cnt[i * kHistBins] = static_cast<uint16_t>(std::min<int64_t>(nx, 0xFFFF));
        H.above[i] = H.cnt[i * kHistBins];
        st.thr[i] = hist_edge(H, i, 0);
        hn = static_cast<int32_t>(k + 1);
        for (int64_t t = 0; t < keep; ++t) hist_count(st, i, vals[t]);
        append_batch(st, i, u, nc, a.c0, pos.data());
        continue;
      }
      std::fill(vals.begin() + keep, vals.begin() + k, x);
      keep = k;
    } else
#endif
    {
      MATALIGN_INTERNAL(hn <= k);  // (batches come first: never a histogram row)
      std::copy(h, h + hn, vals.begin());
      keep = hn;
      const float thr = st.thr[i];
      for (int64_t t = 0; t < nc; ++t)
        if (l[t] > thr) vals[keep++] = l[t];
      if (keep > k) {
        std::nth_element(vals.begin(), vals.begin() + (k - 1), vals.begin() + keep, std::greater<float>());
        keep = k;
      }
    }
    std::sort(vals.begin(), vals.begin() + keep);
    std::copy(vals.begin(), vals.begin() + keep, h);
    if (st.sorted) std::fill(h + keep, h + st.hs, kInf);  // (batches leave `heap` uninitialised)
    hn = static_cast<int32_t>(keep);
    if (keep == k) st.thr[i] = h[0];
    append_batch(st, i, u, nc, a.c0, pos.data());
  }
}

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

// Quantised copy and per-row bound terms of one side.
struct SideData {
  std::vector<int8_t> q;
  std::vector<int16_t> q16;
  std::vector<float> s, n, t, e, g, nhi, nlo, c, dc;
  std::vector<int32_t> qsum;
  std::vector<double> norm2;  // Σ x² with the float64 GEMM's FMA chain (l2 re-scoring)
  int64_t dp = 0;
  bool in_range = true;

  ScreenSide view() const {
    return ScreenSide{q16.empty() ? q.data() : nullptr, q16.empty() ? nullptr : q16.data(), dp, s.data(), n.data(), t.data(), e.data(), g.data(),
                      nhi.data(), nlo.data(), qsum.data(), c.data(), dc.data()};
  }
};

constexpr double kSlack = 4e-6;      // rounding allowance, relative to |s q|² or |x|²
constexpr double kUp = 1.0 + 1e-6;   // rounds a float32 copy of a bound term safely up

template <class T>
void quantise(const MatrixView<T>& x, const Kernels<T>& K, bool l2, int nt,
              const std::vector<double>& mu, int bits, SideData& out) {
  const int64_t n = x.rows, d = x.cols, pad = 64;
  double mu2 = 0.0;
  for (int64_t k = 0; k < d; ++k) mu2 += mu[k] * mu[k];
  out.dp = round_up(d, 4);
  // int8: ±127. int16: the largest level whose dp products still sum exactly in int32.
  const long qmax = bits == 8 ? 127L
      : std::min(32767L, static_cast<long>(std::floor(std::sqrt(2147483647.0 / static_cast<double>(out.dp)))));
  if (bits == 8) out.q.assign(static_cast<size_t>(mul_checked(n, out.dp, "int8 copy")), 0);
  else out.q16.assign(static_cast<size_t>(mul_checked(n, out.dp, "int16 copy")), 0);
  for (auto* v : {&out.s, &out.n, &out.t, &out.e, &out.g, &out.nhi, &out.nlo, &out.c, &out.dc})
    v->assign(static_cast<size_t>(n + pad), 0.0f);
  out.qsum.assign(static_cast<size_t>(n + pad), 0);
  if (l2) out.norm2.assign(static_cast<size_t>(n), 0.0);
  int bad = 0;
#pragma omp parallel num_threads(nt) reduction(| : bad)
  {
    std::vector<double> row(static_cast<size_t>(d));
    // Sums run in kLanes interleaved partial sums (vectorised; a different order than one
    // chain changes them by ~d·1e-16 relative, far inside the allowances below).
    constexpr int64_t kLanes = 8;
#pragma omp for schedule(static)
    for (int64_t r = 0; r < n; ++r) {
      for (int64_t k = 0; k < d; ++k) row[k] = static_cast<double>(x(r, k));
      double lmax[kLanes] = {}, lcr[kLanes] = {};
      int64_t k0 = 0;
      for (; k0 + kLanes <= d; k0 += kLanes)
        for (int64_t l = 0; l < kLanes; ++l) {
          const double v = row[k0 + l], c = v - mu[k0 + l];
          row[k0 + l] = c;
          lmax[l] = std::max(lmax[l], std::fabs(c));
          lcr[l] += mu[k0 + l] * c;
        }
      for (int64_t k = k0; k < d; ++k) {
        const double v = row[k], c = v - mu[k];
        row[k] = c;
        lmax[0] = std::max(lmax[0], std::fabs(c));
        lcr[0] += mu[k] * c;
      }
      double amax = 0.0, cr = 0.0;
      for (int64_t l = 0; l < kLanes; ++l) {
        amax = std::max(amax, lmax[l]);
        cr += lcr[l];
      }
      if (!l2) {
        // c = <μ, x'> + |μ|²/2 and an allowance for its rounding (double, ~d·1e-16 relative)
        // and for the two float32 additions of c terms to the approximate product
        cr += 0.5 * mu2;
        const double bound = std::fabs(cr) + 1e-12 * (std::sqrt(mu2) * std::sqrt(d) * amax + mu2);
        out.c[r] = static_cast<float>(cr);
        out.dc[r] = static_cast<float>(kSlack * bound + 1e-30);
        if (!(std::fabs(cr) <= 1e24)) bad = 1;
      }
      if (amax == 0.0) continue;  // x = μ: q = 0 and every bound term 0 (exact)
      const float sf = static_cast<float>(amax / static_cast<double>(qmax));
      const double s = static_cast<double>(sf);
      int8_t* q8 = bits == 8 ? out.q.data() + r * out.dp : nullptr;
      int16_t* q16 = bits == 8 ? nullptr : out.q16.data() + r * out.dp;
      // q = the nearest integer to x'/s (ties to even: adding and subtracting 1.5·2^52 rounds
      // any |t| < 2^51), clamped to ±qmax; the bounds use the q actually chosen.
      const double inv = 1.0 / s, lim = static_cast<double>(qmax), magic = 6755399441055744.0;
      double le2[kLanes] = {}, lx2[kLanes] = {}, lq2[kLanes] = {};
      int32_t lqs[kLanes] = {};
      auto level = [&](int64_t k, int64_t l) {
        const double t = std::min(lim, std::max(-lim, (row[k] * inv + magic) - magic));
        const int32_t v = static_cast<int32_t>(t);
        if (q8) q8[k] = static_cast<int8_t>(v);
        else q16[k] = static_cast<int16_t>(v);
        lqs[l] += v;
        const double qv = static_cast<double>(v);  // (the stored level, whatever t's precision)
        const double diff = row[k] - s * qv;
        le2[l] += diff * diff;
        lx2[l] += row[k] * row[k];
        lq2[l] += qv * qv;
      };
      for (k0 = 0; k0 + kLanes <= d; k0 += kLanes)
        for (int64_t l = 0; l < kLanes; ++l) level(k0 + l, l);
      for (int64_t k = k0; k < d; ++k) level(k, 0);
      double e2 = 0.0, x2 = 0.0, q2 = 0.0;
      int32_t qs = 0;
      for (int64_t l = 0; l < kLanes; ++l) {
        e2 += le2[l];
        x2 += lx2[l];
        q2 += lq2[l];
        qs += lqs[l];
      }
      const double nn = std::sqrt(x2), tt = s * std::sqrt(q2), ee = std::sqrt(e2);
      // Outside this range float32 bound arithmetic could overflow or underflow: the caller
      // then uses the direct kernel instead.
      if (!(nn >= 1e-12 && nn <= 1e12)) bad = 1;
      out.s[r] = sf;
      out.n[r] = static_cast<float>(nn * kUp);
      out.t[r] = static_cast<float>(tt * kUp);
      out.e[r] = static_cast<float>(ee * kUp);
      out.g[r] = static_cast<float>((ee + kSlack * tt) * kUp);
      out.nhi[r] = static_cast<float>(x2 * (1.0 - kSlack));
      out.nlo[r] = static_cast<float>(x2 * (1.0 + kSlack));
      out.qsum[r] = qs;
    }
  }
  out.in_range = bad == 0;
  if (l2) {
#pragma omp parallel num_threads(nt)
    {
      std::vector<double> row(static_cast<size_t>(d));
#pragma omp for schedule(static)
      for (int64_t r = 0; r < n; ++r) {
        for (int64_t k = 0; k < d; ++k) row[k] = static_cast<double>(x(r, k)) - mu[k];
        const T* p = &x(r, 0);
        K.dots_f64(row.data(), &p, x.col_stride, d, 1, &out.norm2[r], mu.data());
      }
    }
  }
}

}  // namespace

}  // namespace detail

using detail::round_up;

/// Implemented here, declared in knn.cpp: exact kNN through the int8 (bits = 8) or int16 screen
/// (bits = 16); use_vnni picks the VNNI tile kernel, else the portable one. Returns false
/// (nothing written) where the screen does not apply: norms outside [1e-12, 1e12], depth or
/// row count beyond the int32/uint32 ranges.
template <class T>
bool knn_screened(const MatrixView<T>& x, const MatrixView<T>* queries, int64_t k, Metric metric,
                  bool exclude_self, T* values, int64_t* indices, const KnnOptions& opt,
                  bool use_vnni, int bits) {
  using namespace detail;
  const bool self = queries == nullptr;
  const MatrixView<T>& q = self ? x : *queries;
  const int64_t n = x.rows, m = q.rows, d = x.cols;
  const bool excl = self && exclude_self;
  const bool l2 = metric == Metric::l2;
  if (n >= int64_t(0xFFFFFFFF) || round_up(d, 4) > 60000) return false;

  const Simd simd = opt.simd_auto ? simd_best() : opt.simd;
  const Kernels<T> K = kernels_for<T>(simd);
  const int nt = resolve_threads(opt.n_threads);

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

  const int64_t cap = std::min<int64_t>((bits == 8 ? 4 : 2) * k + 64, int64_t(1) << 30);
  const int64_t pad = 64;
  // (uninitialised: a row's entries are written before they are read)
  std::unique_ptr<ScreenCand[]> cand(new ScreenCand[static_cast<size_t>(mul_checked(m, cap, "candidate buffer"))]);
  std::vector<int32_t> count(static_cast<size_t>(m), 0);
  std::vector<float> thr(static_cast<size_t>(m + pad), -std::numeric_limits<float>::infinity());
  std::vector<uint8_t> overflow(static_cast<size_t>(m), 0);
  // The VNNI kernel implies AVX-512 F/BW/VL: keep each row's k largest lower bounds sorted
  // in vectors there (see sorted_replace_min), a binary heap elsewhere and for very large k.
  const bool sorted = use_vnni && k <= 1024;
  const int64_t hs = sorted ? round_up(k, 16) + 16 : k;
  // Batches cost a selection over every column of the tile per row; they pay off for large k
  // (measured, N = 20k, D = 256: Q≠X k = 100 0.50 s with, 0.53-0.55 s without; self k = 10
  // at N = 10k 0.113 s with, 0.097 s without).
  // Batches (see below) write every row's threshold state before its first push, and most
  // rows then need none of it (histogram thresholds): leave it uninitialised there.
  const bool batches = k >= 48;
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
  // 1024 rows × D bytes of int8 sit in L2; from N ~ 8k on, each conflict-free round of the
  // symmetric loop holds >= 2 tiles per thread, which keeps two threads evenly loaded.
  int64_t tr = opt.tile_rows > 0 ? opt.tile_rows : 1024;
  int64_t tc = opt.tile_cols > 0 ? opt.tile_cols : 2048;
  if (self && opt.tile_rows <= 0 && nt > 1) {
    // A conflict-free round of the symmetric loop holds B/2 tiles: B a multiple of 2·threads
    // gives every thread as many per round (with rounds and barriers, B = 10 on 2 threads left
    // one idle 1/3 of a round; the screen's any-order loop is less sensitive, measured no
    // worse with this rule).
    int64_t blocks = (n + tr - 1) / tr;
    blocks = round_up(blocks, 2 * nt);
    tr = std::max<int64_t>(64, (n + blocks - 1) / blocks);
  }
  if (!self && opt.tile_rows <= 0) {
    const int64_t per_thread = (m + nt - 1) / nt;
    tr = std::max<int64_t>(12, std::min(tr, round_up(per_thread, 12)));
  }
  tr = std::min(tr, self ? n : m);
  tc = std::min(tc, n);
  if (self) tc = tr;
  std::vector<int8_t> scratch;
  int64_t scratch_per = 0;
  if (tile_fn) {
    scratch_per = round_up(screen_vnni_scratch_bytes(tr, tc, xs.dp), 64);
    scratch.assign(static_cast<size_t>(mul_checked(nt, scratch_per, "scratch")) + 64, 0);
  }
  int8_t* scratch_base = scratch.empty() ? nullptr
      : scratch.data() + ((64 - reinterpret_cast<uintptr_t>(scratch.data()) % 64) % 64);
  // Batch buffers: each row's first tile is merged as a whole (screen_merge_rows): a heap
  // update per column from an empty heap would cost k·(1 + ln(tile/k)) of them per row.
  std::unique_ptr<ScreenHist> hist;  // rows seeded by a batch continue with histogram thresholds
  if (batches && sorted) {
    hist.reset(new ScreenHist(m));
    st.hist = hist.get();
  }
  const int64_t batch_per = batches ? screen_batch_floats(std::max(tc, tr)) : 0;
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
    o2.simd_auto = false;
    o2.screen = 0;
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

template bool knn_screened<float>(const MatrixView<float>&, const MatrixView<float>*, int64_t,
                                  Metric, bool, float*, int64_t*, const KnnOptions&, bool, int);
template bool knn_screened<double>(const MatrixView<double>&, const MatrixView<double>*, int64_t,
                                   Metric, bool, double*, int64_t*, const KnnOptions&, bool, int);

}  // namespace matalign
