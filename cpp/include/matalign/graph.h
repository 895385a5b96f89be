/// @file graph.h
/// Metrics computed from two kNN graphs over the same N structures (DESIGN.md §1.2, §2):
/// O(N·k) time and memory, no N×N array anywhere.
///
/// A graph is `indices` (n × k, int64, C order, row i = the k neighbours of i best first,
/// never i itself, no repeats within a row) and, where needed, `values` (n × k, the kernel
/// values K_ij = <x_i, x_j> of those neighbours, in the same order).
#pragma once

#include <cstdint>

namespace matalign {

/// mutual_knn = (1/n) Σ_i |nx(i) ∩ ny(i)| / k.
/// @param[in]  idx_x, idx_y  n × k neighbour indices of the two spaces
/// @param[out] per_row       n values |nx(i) ∩ ny(i)| / k (local_agreement), or nullptr
/// @return the mean over rows
/// @throws std::invalid_argument if an index is outside [0, n) or equals its row
double mutual_knn(const int64_t* idx_x, const int64_t* idx_y, int64_t n, int64_t k,
                  double* per_row, int n_threads = 0);

/// The three unbiased HSIC values behind CKNNA (Song et al. 2012 estimator, as DESIGN §2).
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

}  // namespace matalign
