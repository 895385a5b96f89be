/// @file gram.h
/// Feature-space Gram of several spaces stacked side by side, for linear CKA (docs/METRICS.md):
/// one streaming pass over row blocks, float64 products and accumulation, O(D²) memory for
/// D = Σ d_m, never an N×N matrix. The engine's GEMM micro-kernels do the products.
#pragma once

#include <cstdint>
#include <vector>

#include "matalign/common.h"

namespace matalign {

struct GramOptions {
  int64_t block_rows = 0;  ///< rows per streamed block (0 = automatic); tests force tiny ones
  int n_threads = 0;       ///< 0 = all cores
  Simd simd = Simd::automatic;
  ProgressFn progress;
};

/// Shifted Gram of Z = [x_0 | x_1 | ... ] (n × D, D = Σ d_m), in float64:
///   gram[a*D + b] = Σ_i (z_ia − shift_a)(z_ib − shift_b)   (full symmetric D × D)
///   colsum[a]     = Σ_i (z_ia − shift_a)
///   constant[a]   = 1 when column a holds one value in every row (exact, in T), else 0.
/// With shift close to the column means (e.g. the mean of a first block) the centred Gram
/// gram − colsum·colsumᵀ/n is free of cancellation. Row blocks are combined in block order,
/// so the result does not depend on the thread count or the SIMD level.
/// @param[in]  spaces    M views with the same n ≥ 1 rows (any strides)
/// @param[in]  shift     D values
/// @param[out] gram      D × D
/// @param[out] colsum    D
/// @param[out] constant  D
template <class T>
void shifted_gram(const std::vector<MatrixView<T>>& spaces, const double* shift, double* gram,
                  double* colsum, uint8_t* constant, const GramOptions& options);

/// Peak bytes of shifted_gram over spaces of these dimensions (outputs and per-thread block
/// scratch), from the same block rule as the call (simd="auto", automatic block_rows).
int64_t gram_workspace_bytes(int64_t n, const std::vector<int64_t>& dims, int n_threads);

}  // namespace matalign
