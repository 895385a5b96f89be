// AVX2 + FMA kernels (compiled with -mavx2 -mfma; used only where the CPU has them).
#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <limits>

#include "kernels.h"

namespace {

struct VF {
  using T = float;
  using R = __m256;
  static constexpr int W = 8, MR = 6, NV = 2;  // 12 accumulators + 2 B + 1 A of 16 ymm
  static R zero() { return _mm256_setzero_ps(); }
  static R load(const T* p) { return _mm256_loadu_ps(p); }
  static R bcast(T x) { return _mm256_set1_ps(x); }
  static R fma(R a, R b, R c) { return _mm256_fmadd_ps(a, b, c); }
  static R add(R a, R b) { return _mm256_add_ps(a, b); }
  static R sub(R a, R b) { return _mm256_sub_ps(a, b); }
  static R mul(R a, R b) { return _mm256_mul_ps(a, b); }
  static void store(T* p, R r) { _mm256_storeu_ps(p, r); }
  static uint32_t ge_mask(R a, R b) {
    return static_cast<uint32_t>(_mm256_movemask_ps(_mm256_cmp_ps(a, b, _CMP_GE_OQ)));
  }
};

struct VD {
  using T = double;
  using R = __m256d;
  static constexpr int W = 4, MR = 6, NV = 2;
  static R zero() { return _mm256_setzero_pd(); }
  static R load(const T* p) { return _mm256_loadu_pd(p); }
  static R bcast(T x) { return _mm256_set1_pd(x); }
  static R fma(R a, R b, R c) { return _mm256_fmadd_pd(a, b, c); }
  static R add(R a, R b) { return _mm256_add_pd(a, b); }
  static R sub(R a, R b) { return _mm256_sub_pd(a, b); }
  static R mul(R a, R b) { return _mm256_mul_pd(a, b); }
  static void store(T* p, R r) { _mm256_storeu_pd(p, r); }
  static uint32_t ge_mask(R a, R b) {
    return static_cast<uint32_t>(_mm256_movemask_pd(_mm256_cmp_pd(a, b, _CMP_GE_OQ)));
  }
};

#include "kernels.inc"

}  // namespace

namespace matalign {
namespace detail {
Kernels<float> kernels_f32_avx2() { return make_kernels<VF>(); }
Kernels<double> kernels_f64_avx2() { return make_kernels<VD>(); }
}  // namespace detail
}  // namespace matalign
