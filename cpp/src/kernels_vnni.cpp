// AVX-512 VNNI tile kernel of the int8 kNN screen (screen.h). Compiled with
// -mavx512f/bw/vl/vnni and used only where the CPU has them.
//
// vpdpbusd multiplies unsigned bytes by signed bytes, four per 32-bit lane, and adds the four
// products to an int32 accumulator: 64 products per instruction. Rows (broadcast) are the
// signed operand; columns are stored offset by +128 as unsigned, so the raw sum is
// <q_i, q_j> + 128 Σ_k q_ik, corrected exactly in int32 before conversion.
// GCC 12 reports _mm512_cvtepi32_ps's deliberately undefined pass-through operand
// (_mm512_undefined_ps) as "may be used uninitialized"; the instruction has no mask, so no
// lane of it is ever read.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <cstdint>
#include <cstring>
#include <limits>

#include "screen.h"

namespace {

constexpr int MR = 12;       // rows per micro-panel
constexpr int NV = 2;        // vectors of 16 columns per micro-panel
constexpr int NR = 16 * NV;  // columns per micro-panel
static_assert(MR == matalign::detail::kScreenBatchRows && NR == 32,
              "batch buffers (screen_batch_floats) are sized for MR-row panels of 32-column steps");

inline int64_t imin(int64_t a, int64_t b) { return a < b ? a : b; }
inline int64_t round_up(int64_t a, int64_t m) { return (a + m - 1) / m * m; }

// Rows [r0, r1) -> panels of MR rows: for each group of 4 bytes of depth (4 int8 or 2 int16
// values), MR 32-bit words.
template <bool I16>
void pack_rows(const matalign::detail::ScreenSide& s, int64_t r0, int64_t r1, int32_t* out) {
  const int64_t row_bytes = I16 ? 2 * s.dp : s.dp;
  const int64_t kg = row_bytes / 4;
  const int8_t* base = I16 ? reinterpret_cast<const int8_t*>(s.q16) : s.q;
  for (int64_t p = r0; p < r1; p += MR) {
    const int valid = static_cast<int>(imin(MR, r1 - p));
    for (int i = 0; i < MR; ++i) {
      if (i < valid) {
        const int8_t* src = base + (p + i) * row_bytes;
        for (int64_t g = 0; g < kg; ++g) std::memcpy(out + g * MR + i, src + 4 * g, 4);
      } else {
        for (int64_t g = 0; g < kg; ++g) out[g * MR + i] = 0;
      }
    }
    out += kg * MR;
  }
}

// Columns [c0, c1) -> panels of NR columns: for each group of 4 bytes of depth, NR 32-bit
// words; int8 bytes are offset by +128 (xor 0x80) for vpdpbusd's unsigned operand and
// missing columns are q = 0 (0x80 bytes); int16 words are copied as they are.
template <bool I16>
void pack_cols(const matalign::detail::ScreenSide& s, int64_t c0, int64_t c1, uint32_t* out) {
  const int64_t row_bytes = I16 ? 2 * s.dp : s.dp;
  const int64_t kg = row_bytes / 4;
  const int8_t* base = I16 ? reinterpret_cast<const int8_t*>(s.q16) : s.q;
  const uint32_t flip = I16 ? 0u : 0x80808080u;
  for (int64_t p = c0; p < c1; p += NR) {
    const int valid = static_cast<int>(imin(NR, c1 - p));
    for (int j = 0; j < NR; ++j) {
      if (j < valid) {
        const int8_t* src = base + (p + j) * row_bytes;
        for (int64_t g = 0; g < kg; ++g) {
          uint32_t w;
          std::memcpy(&w, src + 4 * g, 4);
          out[g * NR + j] = w ^ flip;
        }
      } else {
        for (int64_t g = 0; g < kg; ++g) out[g * NR + j] = flip;
      }
    }
    out += kg * NR;
  }
}

inline __m512 load_col_thr(const float* thr, int64_t j0, int64_t c1) {
  if (j0 + 16 <= c1) return _mm512_loadu_ps(thr + j0);
  alignas(64) float tmp[16];
  for (int l = 0; l < 16; ++l)
    tmp[l] = (j0 + l < c1) ? thr[j0 + l] : std::numeric_limits<float>::infinity();
  return _mm512_load_ps(tmp);
}

// MR×NR int32 block of raw (offset) dot products, full depth, stored to out[MR][NR].
template <bool I16>
__attribute__((noinline)) void micro_vnni(const int32_t* pap, const uint32_t* pbp, int64_t kg,
                                          int32_t* out) {
  __m512i c[MR][NV];
#pragma GCC unroll 12
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 2
    for (int v = 0; v < NV; ++v) c[i][v] = _mm512_setzero_si512();
  for (int64_t g = 0; g < kg; ++g) {
    __m512i b[NV];
#pragma GCC unroll 2
    for (int v = 0; v < NV; ++v)
      b[v] = _mm512_loadu_si512(reinterpret_cast<const void*>(pbp + g * NR + 16 * v));
    const int32_t* ag = pap + g * MR;
#pragma GCC unroll 12
    for (int i = 0; i < MR; ++i) {
      const __m512i ai = _mm512_set1_epi32(ag[i]);
#pragma GCC unroll 2
      for (int v = 0; v < NV; ++v)
        c[i][v] = I16 ? _mm512_dpwssd_epi32(c[i][v], b[v], ai) : _mm512_dpbusd_epi32(c[i][v], b[v], ai);
    }
  }
#pragma GCC unroll 12
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 2
    for (int v = 0; v < NV; ++v)
      _mm512_store_si512(reinterpret_cast<void*>(out + i * NR + 16 * v), c[i][v]);
}

template <bool I16>
void tile_vnni(const matalign::detail::ScreenTileArgs& a) {
  using matalign::detail::screen_offer;
  const auto& R = a.rows;
  const auto& C = a.cols;
  const int64_t kg = (I16 ? 2 * R.dp : R.dp) / 4;
  int32_t* pa = reinterpret_cast<int32_t*>(a.scratch);
  uint32_t* pb = reinterpret_cast<uint32_t*>(a.scratch) + round_up(a.r1 - a.r0, MR) * kg;
  pack_rows<I16>(R, a.r0, a.r1, pa);
  pack_cols<I16>(C, a.c0, a.c1, pb);
  const bool l2 = a.l2;
  alignas(64) int32_t raw[MR * NR];
  alignas(64) float approx[MR * NR];

  if (a.batch) {
    // Both bounds of every pair, MR rows at a time (row panels outer), merged per panel.
    const int64_t ld = round_up(a.c1 - a.c0, NR);
    float* lbuf = a.batch_buf;
    float* ubuf = lbuf + MR * ld;
    for (int64_t ip = a.r0; ip < a.r1; ip += MR) {
      const int64_t mn = imin(MR, a.r1 - ip);
      const int32_t* pap = pa + ((ip - a.r0) / MR) * MR * kg;
      for (int64_t jp = a.c0; jp < a.c1; jp += NR) {
        const uint32_t* pbp = pb + ((jp - a.c0) / NR) * NR * kg;
        micro_vnni<I16>(pap, pbp, kg, raw);
        for (int i = 0; i < mn; ++i) {
          const int64_t r = ip + i;
          const __m512i fix = _mm512_set1_epi32(I16 ? 0 : 128 * R.qsum[r]);
          const __m512 si = _mm512_set1_ps(R.s[r]), ei = _mm512_set1_ps(R.e[r]);
          const __m512 ti = _mm512_set1_ps(R.t[r]), ci = _mm512_set1_ps(R.c[r]);
          const __m512 di = _mm512_set1_ps(R.dc[r]);
          const __m512 hi = _mm512_set1_ps(R.nhi[r]), lo = _mm512_set1_ps(R.nlo[r]);
          for (int v = 0; v < NV; ++v) {
            const int64_t j = jp + 16 * v;
            const __m512i cv = _mm512_load_si512(reinterpret_cast<const void*>(raw + i * NR + 16 * v));
            const __m512 p = _mm512_cvtepi32_ps(_mm512_sub_epi32(cv, fix));
            __m512 av = _mm512_mul_ps(_mm512_mul_ps(p, _mm512_loadu_ps(C.s + j)), si);
            __m512 m = _mm512_fmadd_ps(ei, _mm512_loadu_ps(C.n + j), _mm512_mul_ps(ti, _mm512_loadu_ps(C.g + j)));
            if (!l2) {
              m = _mm512_add_ps(m, _mm512_add_ps(di, _mm512_loadu_ps(C.dc + j)));
              av = _mm512_add_ps(av, _mm512_add_ps(ci, _mm512_loadu_ps(C.c + j)));
            }
            __m512 u = _mm512_add_ps(av, m), l = _mm512_sub_ps(av, m);
            if (l2) {
              u = _mm512_sub_ps(_mm512_add_ps(u, u), _mm512_add_ps(hi, _mm512_loadu_ps(C.nhi + j)));
              l = _mm512_sub_ps(_mm512_add_ps(l, l), _mm512_add_ps(lo, _mm512_loadu_ps(C.nlo + j)));
            }
            _mm512_storeu_ps(ubuf + i * ld + (j - a.c0), u);
            _mm512_storeu_ps(lbuf + i * ld + (j - a.c0), l);
          }
        }
      }
      matalign::detail::screen_merge_rows(a, ip, mn, lbuf, ubuf, ld);
    }
    return;
  }

  for (int64_t jp = a.c0; jp < a.c1; jp += NR) {
    const uint32_t* pbp = pb + ((jp - a.c0) / NR) * NR * kg;
    const int64_t jn = imin(NR, a.c1 - jp);
    // Column terms of the upper bound, folded: ip u = s_i·(s_j p) + e_i n_j + t_i g_j
    // + (c_j + dc_j) + (c_i + dc_i); l2 u = 2·(s_i·(s_j p) + e_i n_j + t_i g_j − nhi_j/2) − nhi_i.
    // (The order differs from screen_offer's scalar evaluation; each is a valid bound, the
    // few float32 roundings lying far inside the 4e-6 allowances of g, dc and nhi.)
    __m512 sj[NV], nj[NV], gj[NV], kj[NV];
    for (int v = 0; v < NV; ++v) {
      sj[v] = _mm512_loadu_ps(C.s + jp + 16 * v);
      nj[v] = _mm512_loadu_ps(C.n + jp + 16 * v);
      gj[v] = _mm512_loadu_ps(C.g + jp + 16 * v);
      kj[v] = l2 ? _mm512_mul_ps(_mm512_set1_ps(-0.5f), _mm512_loadu_ps(C.nhi + jp + 16 * v))
                 : _mm512_add_ps(_mm512_loadu_ps(C.c + jp + 16 * v), _mm512_loadu_ps(C.dc + jp + 16 * v));
    }
    const __m512 scale = _mm512_set1_ps(l2 ? 2.0f : 1.0f);
    for (int64_t ip = a.r0; ip < a.r1; ip += MR) {
      const int64_t mn = imin(MR, a.r1 - ip);
      if (a.diagonal) {
        const int64_t jmax = jp + jn - 1;
        if (a.exclude_self ? (jmax <= ip) : (jmax < ip)) continue;
      }
      const int32_t* pap = pa + ((ip - a.r0) / MR) * MR * kg;
      micro_vnni<I16>(pap, pbp, kg, raw);
      // Epilogue: approximate inner product, its upper bound, screen against the row and
      // column thresholds; only masks leave the registers (hits are rare once thresholds
      // settle), and a block with a hit recomputes its approximate products for the walk.
      uint16_t rm[MR][NV], cm[MR][NV];
      uint32_t any = 0;
      __m512 cthr[NV];
#pragma GCC unroll 2
      for (int v = 0; v < NV; ++v)
        cthr[v] = a.feed_cols ? load_col_thr(a.cs->thr, jp + 16 * v, a.c1)
                              : _mm512_set1_ps(std::numeric_limits<float>::infinity());
#pragma GCC unroll 12
      for (int i = 0; i < MR; ++i) {
        const int64_t r = ip + (i < mn ? i : 0);
        const __m512i fix = _mm512_set1_epi32(I16 ? 0 : 128 * R.qsum[r]);
        const __m512 si = _mm512_set1_ps(R.s[r]);
        const __m512 ei = _mm512_set1_ps(R.e[r]);
        const __m512 ti = _mm512_set1_ps(R.t[r]);
        const __m512 thr = _mm512_set1_ps(a.rs->thr[r]);
        const __m512 ki = _mm512_set1_ps(l2 ? -R.nhi[r] : R.c[r] + R.dc[r]);
#pragma GCC unroll 2
        for (int v = 0; v < NV; ++v) {
          const __m512i cv = _mm512_load_si512(reinterpret_cast<const void*>(raw + i * NR + 16 * v));
          const __m512 p = _mm512_cvtepi32_ps(I16 ? cv : _mm512_sub_epi32(cv, fix));
          __m512 u = _mm512_fmadd_ps(_mm512_mul_ps(p, sj[v]), si, kj[v]);
          u = _mm512_fmadd_ps(ei, nj[v], u);
          u = _mm512_fmadd_ps(ti, gj[v], u);
          u = _mm512_fmadd_ps(u, scale, ki);
          rm[i][v] = _mm512_cmp_ps_mask(u, thr, _CMP_GE_OQ);
          cm[i][v] = _mm512_cmp_ps_mask(u, cthr[v], _CMP_GE_OQ);
          any |= static_cast<uint32_t>(rm[i][v]) | cm[i][v];
        }
      }
      if (!any) continue;
      for (int i = 0; i < mn; ++i) {
        bool hit = false;
        for (int v = 0; v < NV; ++v) hit |= (rm[i][v] | cm[i][v]) != 0;
        if (!hit) continue;
        const __m512i fix = _mm512_set1_epi32(I16 ? 0 : 128 * R.qsum[ip + i]);
        const __m512 si = _mm512_set1_ps(R.s[ip + i]);
        for (int v = 0; v < NV; ++v) {
          const __m512i cv = _mm512_load_si512(reinterpret_cast<const void*>(raw + i * NR + 16 * v));
          const __m512 p = _mm512_cvtepi32_ps(_mm512_sub_epi32(cv, fix));
          _mm512_store_ps(approx + i * NR + 16 * v, _mm512_mul_ps(_mm512_mul_ps(p, sj[v]), si));
        }
      }
      // Walk only the lanes that passed (rows past the tile and columns past c1 are dropped).
      for (int ii = 0; ii < mn; ++ii) {
        const int64_t i = ip + ii;
        for (int v = 0; v < NV; ++v) {
          uint32_t bits = static_cast<uint32_t>(rm[ii][v]) | cm[ii][v];
          if (!bits) continue;
          const float* av = approx + ii * NR + 16 * v;
          for (; bits; bits &= bits - 1) {
            const int lane = __builtin_ctz(bits);
            const int64_t j = jp + 16 * v + lane;
            if (j >= a.c1) break;
            if (a.diagonal && (a.exclude_self ? j <= i : j < i)) continue;
            const bool to_row = (rm[ii][v] >> lane) & 1u;
            const bool to_col = ((cm[ii][v] >> lane) & 1u) && !(a.diagonal && j == i);
            if (to_row || to_col) screen_offer(a, i, j, av[lane], to_row, to_col);
          }
        }
      }
    }
  }
}

}  // namespace

namespace matalign {
namespace detail {
int64_t screen_vnni_scratch_bytes(int64_t tile_rows, int64_t tile_cols, int64_t dp) {
  return (round_up(tile_rows, MR) + round_up(tile_cols, NR)) * 2 * dp + 64;  // int16 size
}
ScreenTileFn screen_vnni_kernel() { return &tile_vnni<false>; }
ScreenTileFn screen_vnni16_kernel() { return &tile_vnni<true>; }
}  // namespace detail
}  // namespace matalign
