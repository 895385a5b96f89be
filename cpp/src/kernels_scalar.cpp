// Portable kernels (baseline x86-64 or any CPU): one lane per "vector". Same FMA order as the
// SIMD files, so results are bitwise identical to them.
#include <algorithm>
#include <cstdint>
#include <limits>

#include "kernels.h"

namespace {

template <class TT, int MR_, int NV_>
struct VScalar {
  using T = TT;
  using R = TT;
  static constexpr int W = 1, MR = MR_, NV = NV_;
  static R zero() { return T(0); }
  static R load(const T* p) { return *p; }
  static R bcast(T x) { return x; }
  static R fma(R a, R b, R c);
  static R add(R a, R b) { return a + b; }
  static R sub(R a, R b) { return a - b; }
  static R mul(R a, R b) { return a * b; }
  static void store(T* p, R r) { *p = r; }
  static uint32_t ge_mask(R a, R b) { return a >= b ? 1u : 0u; }
};
template <>
inline float VScalar<float, 4, 4>::fma(float a, float b, float c) { return __builtin_fmaf(a, b, c); }
template <>
inline double VScalar<double, 4, 4>::fma(double a, double b, double c) { return __builtin_fma(a, b, c); }

using VF = VScalar<float, 4, 4>;
using VD = VScalar<double, 4, 4>;

#include "kernels.inc"

}  // namespace

namespace matalign {
namespace detail {

Kernels<float> kernels_f32_scalar() { return make_kernels<VF>(); }
Kernels<double> kernels_f64_scalar() { return make_kernels<VD>(); }

#if !defined(MATALIGN_HAVE_X86_KERNELS)
Kernels<float> kernels_f32_avx2() { return make_kernels<VF>(); }
Kernels<double> kernels_f64_avx2() { return make_kernels<VD>(); }
Kernels<float> kernels_f32_avx512() { return make_kernels<VF>(); }
Kernels<double> kernels_f64_avx512() { return make_kernels<VD>(); }
#endif

Kernels<float> kernels_f32(Simd s) {
  switch (s) {
    case Simd::avx512: return kernels_f32_avx512();
    case Simd::avx2: return kernels_f32_avx2();
    default: return kernels_f32_scalar();
  }
}
Kernels<double> kernels_f64(Simd s) {
  switch (s) {
    case Simd::avx512: return kernels_f64_avx512();
    case Simd::avx2: return kernels_f64_avx2();
    default: return kernels_f64_scalar();
  }
}

}  // namespace detail
}  // namespace matalign
