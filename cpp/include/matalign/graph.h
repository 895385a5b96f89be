/// @file graph.h
/// Metrics computed from two kNN graphs over the same N structures (docs/METRICS.md):
/// O(N·k) time and memory, no N×N array anywhere.
///
/// A graph is `indices` (n × k, int64, C order, row i = the k neighbours of i best first,
/// never i itself, no repeats within a row) and, where needed, `values` (n × k, the kernel
/// values K_ij = <x_i, x_j> of those neighbours, in the same order).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "matalign/common.h"

namespace matalign {

/// mutual_knn = (1/n) Σ_i |nx(i) ∩ ny(i)| / k.
/// @param[in]  idx_x, idx_y  n × k neighbour indices of the two spaces
/// @param[out] per_row       n values |nx(i) ∩ ny(i)| / k (local_agreement), or nullptr
/// @return the mean over rows
/// @throws std::invalid_argument if an index is outside [0, n) or equals its row
double mutual_knn(const int64_t* idx_x, const int64_t* idx_y, int64_t n, int64_t k,
                  double* per_row, int n_threads = 0);

/// The three unbiased HSIC values behind CKNNA (Song et al. 2012 estimator, docs/METRICS.md).
struct CknnaResult {
  double value;    ///< hsic_xy / (sqrt(hsic_xx * hsic_yy) + eps)
  double hsic_xy;  ///< HSIC₁(M∘K, M∘L), M = Mᴷ∘Mᴸ
  double hsic_xx;  ///< HSIC₁(Mᴷ∘K, Mᴷ∘K)
  double hsic_yy;  ///< HSIC₁(Mᴸ∘L, Mᴸ∘L)
};

/// CKNNA from two inner-product kNN graphs (reference-code compatible, O(N·k)).
/// @param[in]  idx_x, val_x  n × k graph of X; val_x[i*k+t] = K(i, idx_x[i*k+t])
/// @param[in]  idx_y, val_y  n × k graph of Y; L values likewise
/// @param[in]  eps           added to the denominator (0 = exact; 1e-6 = reference code)
/// @param[out] per_row       n values whose sum is `value` (row i's share of the numerator:
///                           its trace-term edges, its row-sum × total term and its
///                           colsum × rowsum term, divided by the denominator), or nullptr
/// @throws std::invalid_argument for bad indices, n < 4, k outside 1..n-1, eps < 0, or an
///         undefined ratio (hsic_xx * hsic_yy < 0, or == 0 with eps == 0)
template <class T>
CknnaResult cknna(const int64_t* idx_x, const T* val_x, const int64_t* idx_y, const T* val_y,
                  int64_t n, int64_t k, double eps, double* per_row, int n_threads = 0);

/// Peak bytes cknna allocates for n rows and k neighbours (per-row output included).
int64_t cknna_workspace_bytes(int64_t n, int64_t k);

namespace detail {

/// Unbiased HSIC₁ from its four sums s = {trace, sum_a, sum_b, cross} over n rows.
inline double hsic1_from_sums(const double* s, int64_t n) {
  const double N = static_cast<double>(n);
  return (s[0] + s[1] * s[2] / ((N - 1) * (N - 2)) - 2.0 * s[3] / (N - 2)) / (N * (N - 3));
}

/// CKNNA from the 12 sums of the three HSICs (xy, xx, yy; each as in hsic1_from_sums), with
/// the checks that make an undefined ratio an error. Shared by the CPU and CUDA engines so
/// that both finish identically.
inline CknnaResult cknna_from_sums(const double* sums, int64_t n, double eps, const char* fn) {
  CknnaResult r;
  r.hsic_xy = hsic1_from_sums(sums, n);
  r.hsic_xx = hsic1_from_sums(sums + 4, n);
  r.hsic_yy = hsic1_from_sums(sums + 8, n);
  const bool finite =
      std::isfinite(r.hsic_xy) && std::isfinite(r.hsic_xx) && std::isfinite(r.hsic_yy);
  MATALIGN_CHECK(finite, fn, ": non-finite HSIC (hsic_xy = ", r.hsic_xy, ", hsic_xx = ", r.hsic_xx,
                 ", hsic_yy = ", r.hsic_yy, "); the kernel values must be finite");
  const double prod = r.hsic_xx * r.hsic_yy;
  // The unbiased HSIC can be zero or negative; the reference code then returns NaN (or, with
  // its epsilon, a huge value). Say so instead.
  MATALIGN_CHECK(prod > 0 || (prod == 0 && eps > 0), fn,
                 ": CKNNA is undefined: HSIC(K,K) * HSIC(L,L) = ", r.hsic_xx, " * ", r.hsic_yy,
                 " = ", prod, (prod < 0 ? ", negative (square root of a negative number)"
                                        : ", zero with eps = 0 (division by zero)"),
                 "; the masked kernels carry no usable variance (try a larger k)");
  r.value = r.hsic_xy / (std::sqrt(std::max(prod, 0.0)) + eps);
  return r;
}

}  // namespace detail

}  // namespace matalign
