// AVX-512 helpers of the screen's threshold keepers (screen_keepers.cpp): a row's k largest
// lower bounds kept sorted in 16-lane vectors, and the selections of a batch (k-th largest,
// values above it, positions at or above a threshold). Compiled with -mavx512f/bw/vl like the
// other per-ISA files (kernels.h explains the mechanism) and reached only through the table
// screen_sorted_ops(), which the driver takes where the VNNI kernel runs (so the CPU has
// AVX-512 F/BW/VL). Everything here has internal linkage except that getter.
#include <immintrin.h>

#include <climits>
#include <cstdint>
#include <cstring>
#include <limits>

#include "screen.h"

namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();

// The k largest lower bounds of a row kept sorted ascending in 16-lane vectors (h[0] is the
// threshold; entries past those held are +inf, and the row has 16 more lanes of padding).
// A new value finds its place by counting the entries below it (one compare per vector) and
// the entries before that place shift by one lane (valignd), all without branches on the
// data: a binary heap's walk from the root is a chain of dependent loads and mispredicted
// branches, and its rows are rarely in L1 when the next value of that row arrives, which made
// the heap ~35 % of the screen's time at k = 100.
inline int64_t count_below(const float* h, int64_t n, float v) {
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
void sorted_insert(float* h, int64_t n, float v) {
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
void sorted_replace_min(float* h, int64_t k, float v) {
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
inline __m512i order_key(__m512 x) {  // float order = signed int order of keys
  const __m512i b = _mm512_castps_si512(x);
  return _mm512_xor_si512(b, _mm512_and_si512(_mm512_maskz_srai_epi32(0xFFFF, b, 31), _mm512_set1_epi32(0x7FFFFFFF)));
}

float kth_largest(const float* v, int64_t n, int64_t k) {
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
bool kth_largest_applies(const float* v, int64_t n, int64_t k) {
  const __m512 ninf = _mm512_set1_ps(-kInf);
  int64_t c = 0;
  for (int64_t o = 0; o < n; o += 16) {
    const __mmask16 m = static_cast<__mmask16>(lanes_below(n - o));  // (the tail: fewer)
    c += __builtin_popcount(_mm512_mask_cmp_ps_mask(m, _mm512_maskz_loadu_ps(m, v + o), ninf, _CMP_GT_OQ));
  }
  return c > k;
}

// out <- the values of v[0..n) above x, in order (out has room for n + 16); returns how many.
int64_t collect_above(const float* v, int64_t n, float x, float* out) {
  const __m512 xs = _mm512_set1_ps(x);
  int64_t c = 0;
  for (int64_t o = 0; o < n; o += 16) {
    const __mmask16 m = static_cast<__mmask16>(lanes_below(n - o));  // (the tail: fewer)
    const __m512 y = _mm512_maskz_loadu_ps(m, v + o);
    const __mmask16 hit = _mm512_mask_cmp_ps_mask(m, y, xs, _CMP_GT_OQ);
    // (compress in a register, then a full store: out has 16 spare; the memory form of
    // vcompressps is microcoded on some CPUs)
    _mm512_storeu_ps(out + c, _mm512_maskz_compress_ps(hit, y));
    c += __builtin_popcount(hit);
  }
  return c;
}

// out <- the positions t of v[0..n) with v[t] >= x, ascending (room for n + 16); returns how many.
int64_t positions_at_least(const float* v, int64_t n, float x, uint32_t* out) {
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

}  // namespace

namespace matalign {
namespace detail {

const ScreenSortedOps* screen_sorted_ops() {
  static const ScreenSortedOps ops{&sorted_insert, &sorted_replace_min, &kth_largest,
                                   &kth_largest_applies, &collect_above, &positions_at_least};
  return &ops;
}

}  // namespace detail
}  // namespace matalign
