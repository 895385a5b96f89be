// The pair bounds of the int8 kNN screen, shared by the CPU engine (cpp/src/screen_keepers.cpp,
// screen_bounds) and the planned CUDA screen (docs/ARCHITECTURE.md, "GPU int8 screen") so that
// both evaluate every bound with the same float32 operations in the same order. Plain C++,
// compiled as host code there and as host/device code by nvcc; both builds turn off
// floating-point contraction (-ffp-contract=off, --fmad=false), and the one fused step is an
// explicit fma, so host and device results are bitwise equal.
//
// The bound itself (cpp/src/screen.h): with per-row scale s, int8 codes q and the rounded-up
// terms n = |x|, t = |s q|, e = |x - s q|, g = e + c·t of the centred rows (screen_quantise.h),
//     a_ij = (p_ij · s_j) · s_i          p_ij = <q_i, q_j>, an exact int32
//     |<x_i, x_j> - a_ij| <= e_i n_j + t_i g_j
// int8 tensor-core products accumulate exactly in int32 (as VNNI does), so p_ij, and with it
// every bound below, is the same number on both engines.
//
// Re-scoring slack (GPU only). The CPU re-scores survivors in float64; the GPU re-scores them
// with its exact path's FMA chain in the input's dtype (float32 or float64), whose graph is the
// one the screen must reproduce. The bounds are therefore widened by a bound on that chain's
// rounding (screen_rescore_term / screen_rescore_slack): every score the exact GPU path would
// compute then lies in [lb - δ, ub + δ], so the row threshold (k-th largest widened lower
// bound) never exceeds the k-th best GPU score and no member of the GPU's top-k (ties
// included) is filtered out.
#pragma once

#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define MATALIGN_SCREEN_HD __host__ __device__
#else
#define MATALIGN_SCREEN_HD
#endif

namespace matalign {
namespace detail {

/// The per-row terms of one side at one row (SideData's arrays at index r).
struct ScreenTerms {
  float s, n, t, e, g, nhi, nlo, c, dc;
};

MATALIGN_SCREEN_HD inline float screen_fma(float a, float b, float c) {
#if defined(__CUDA_ARCH__)
  return fmaf(a, b, c);
#else
  return std::fma(a, b, c);
#endif
}

/// The approximate product a_ij from the exact int32 product of the codes: (p · s_col) · s_row.
MATALIGN_SCREEN_HD inline float screen_approx(int32_t p, float s_col, float s_row) {
  return (static_cast<float>(p) * s_col) * s_row;
}

/// Both bounds of pair (i, j) (larger is better: <x_i, x_j> for ip, -|x_i - x_j|² for l2)
/// from its approximate product.
MATALIGN_SCREEN_HD inline void screen_pair_bounds(const ScreenTerms& R, const ScreenTerms& C,
                                                  float approx, bool l2, float& lb, float& ub) {
  const float m = screen_fma(R.e, C.n, R.t * C.g) + (R.dc + C.dc);
  approx = approx + (R.c + C.c);
  const float u = approx + m, l = approx - m;
  ub = u;
  lb = l;
  if (l2) {
    ub = (u + u) - (R.nhi + C.nhi);
    lb = (l + l) - (R.nlo + C.nlo);
  }
}

/// Unit roundoff of the re-scoring dtype (itemsize 4: float32, 8: float64).
inline double screen_unit_roundoff(int64_t itemsize) {
  return itemsize == 4 ? std::ldexp(1.0, -24) : std::ldexp(1.0, -53);
}

/// gamma_m = m·u / (1 - m·u): the classical bound on the relative error of a dot product of
/// length m - 2 in any summation order (fused or not), with two more roundings for the
/// centring of l2 rows and the score's final combination (Higham, "Accuracy and Stability of
/// Numerical Algorithms", §3.1).
inline double screen_gamma(int64_t d, int64_t itemsize) {
  const double mu = static_cast<double>(d + 4) * screen_unit_roundoff(itemsize);
  return mu / (1.0 - mu);
}

/// Per-row term w of the re-scoring slack, rounded up so that float32 products and sums of
/// it stay upper bounds. ip: w = sqrt(2 γ)·|x| (|x| of the raw row, the one the GPU scores),
/// and δ_ij = w_i w_j >= 2γ |x_i||x_j| >= |fl(<x_i, x_j>) - <x_i, x_j>| (Cauchy-Schwarz).
/// l2: w = 8 γ |x'|² (x' the centred row), and δ_ij = w_i + w_j bounds the error of
/// 2 fl(<x'_i, x'_j>) - (fl|x'_i|² + fl|x'_j|²) with x' rounded to the dtype when centred:
/// each of the three products errs by at most 3γ·(|x'_i|² + |x'_j|²) / 2 after centring.
/// @param norm2  |x|² (ip) or |x'|² (l2), in double
inline float screen_rescore_term(double norm2, int64_t d, int64_t itemsize, bool l2) {
  const double g = screen_gamma(d, itemsize);
  const double w = l2 ? 8.0 * g * norm2 : std::sqrt(2.0 * g * norm2);
  return static_cast<float>(w * (1.0 + 1e-6));
}

/// The slack δ_ij from the two rows' terms (float32, rounded up by the terms' 1e-6 margin).
MATALIGN_SCREEN_HD inline float screen_rescore_slack(float wi, float wj, bool l2) {
  return l2 ? (wi + wj) : (wi * wj);
}

/// Bounds widened by the re-scoring slack: every score of the GPU's exact path lies in
/// [lb, ub] afterwards. (The extra float32 rounding of these two additions is covered by the
/// 4e-6 allowance the bound already carries, far above float32's 6e-8.)
MATALIGN_SCREEN_HD inline void screen_widen(float delta, float& lb, float& ub) {
  lb = lb - delta;
  ub = ub + delta;
}

}  // namespace detail
}  // namespace matalign
