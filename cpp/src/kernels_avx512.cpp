// AVX-512 kernels (compiled with -mavx512f/dq/bw/vl -mfma; used only where the CPU has them).
#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <limits>

#include "kernels.h"

namespace {

struct VF {
  using T = float;
  using R = __m512;
  // 12×32 micro-panel: 24 zmm accumulators + 2 B vectors + 1 broadcast of 32 registers.
  static constexpr int W = 16, MR = 12, NV = 2;
  static R zero() { return _mm512_setzero_ps(); }
  static R load(const T* p) { return _mm512_loadu_ps(p); }
  static R bcast(T x) { return _mm512_set1_ps(x); }
  static R fma(R a, R b, R c) { return _mm512_fmadd_ps(a, b, c); }
  static R add(R a, R b) { return _mm512_add_ps(a, b); }
  static R sub(R a, R b) { return _mm512_sub_ps(a, b); }
  static R mul(R a, R b) { return _mm512_mul_ps(a, b); }
  static void store(T* p, R r) { _mm512_storeu_ps(p, r); }
  static uint32_t ge_mask(R a, R b) {
    return static_cast<uint32_t>(_mm512_cmp_ps_mask(a, b, _CMP_GE_OQ));
  }
};

struct VD {
  using T = double;
  using R = __m512d;
  static constexpr int W = 8, MR = 12, NV = 2;
  static R zero() { return _mm512_setzero_pd(); }
  static R load(const T* p) { return _mm512_loadu_pd(p); }
  static R bcast(T x) { return _mm512_set1_pd(x); }
  static R fma(R a, R b, R c) { return _mm512_fmadd_pd(a, b, c); }
  static R add(R a, R b) { return _mm512_add_pd(a, b); }
  static R sub(R a, R b) { return _mm512_sub_pd(a, b); }
  static R mul(R a, R b) { return _mm512_mul_pd(a, b); }
  static void store(T* p, R r) { _mm512_storeu_pd(p, r); }
  static uint32_t ge_mask(R a, R b) {
    return static_cast<uint32_t>(_mm512_cmp_pd_mask(a, b, _CMP_GE_OQ));
  }
};

#include "kernels.inc"

}  // namespace

namespace matalign {
namespace detail {
Kernels<float> kernels_f32_avx512() { return make_kernels<VF>(); }
Kernels<double> kernels_f64_avx512() { return make_kernels<VD>(); }
}  // namespace detail
}  // namespace matalign
