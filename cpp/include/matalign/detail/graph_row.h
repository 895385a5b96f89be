// Per-row arithmetic of the graph metrics, shared by the CPU engine (cpp/src/graph.cpp) and the CUDA
// engine (cuda/src/graph.cu) so that both compute every row the same way, in the same order:
// plain C++ (no std:: calls, no OpenMP), compiled as host code there and as host/device code by
// nvcc. Both builds turn off floating-point contraction (-ffp-contract=off, --fmad=false), so
// each row's sums are bitwise the same on both engines; the callers add the rows in chunks of
// kGraphChunk rows in row order and the chunks in chunk order (see graph.cpp).
//
// Definitions of the metrics: docs/METRICS.md.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define MATALIGN_HOST_DEVICE __host__ __device__
#else
#define MATALIGN_HOST_DEVICE
#endif

namespace matalign {
namespace detail {

/// Rows per chunk of the graph metrics' fixed summation order.
constexpr int64_t kGraphChunk = 512;

/// Whether a row of a graph, sorted ascending (`s`, k entries), is valid for row i of n rows:
/// every index in [0, n), never i itself, no repeats.
MATALIGN_HOST_DEVICE inline bool graph_row_ok(const int64_t* s, int64_t n, int64_t k, int64_t i) {
  if (s[0] < 0 || s[k - 1] >= n) return false;
  for (int64_t t = 0; t < k; ++t) {
    if (s[t] == i) return false;
    if (t > 0 && s[t] == s[t - 1]) return false;
  }
  return true;
}

/// Position of v in the ascending s[0..k) (distinct values), or -1.
MATALIGN_HOST_DEVICE inline int64_t graph_find_sorted(const int64_t* s, int64_t k, int64_t v) {
  int64_t lo = 0, hi = k;
  while (lo < hi) {
    const int64_t mid = lo + (hi - lo) / 2;
    if (s[mid] < v) lo = mid + 1;
    else hi = mid;
  }
  return (lo < k && s[lo] == v) ? lo : -1;
}

/// A graph with each row sorted: sidx[i*k + s] ascending, perm[i*k + s] = the stored position
/// of that neighbour, val = the caller's n × k kernel values in stored order.
template <class T>
struct SortedRows {
  const int64_t* sidx;
  const int32_t* perm;
  const T* val;
  /// If row j lists i as a neighbour, set *v to the kernel value row j stores for i.
  MATALIGN_HOST_DEVICE bool lookup(int64_t k, int64_t j, int64_t i, double* v) const {
    const int64_t s = graph_find_sorted(sidx + j * k, k, i);
    if (s < 0) return false;
    *v = static_cast<double>(val[j * k + perm[j * k + s]]);
    return true;
  }
};

/// |nx(i) ∩ ny(i)| of two sorted rows (merge intersection).
MATALIGN_HOST_DEVICE inline int64_t graph_common(const int64_t* a, const int64_t* b, int64_t k) {
  int64_t p = 0, q = 0, c = 0;
  while (p < k && q < k) {
    if (a[p] < b[q]) ++p;
    else if (b[q] < a[p]) ++q;
    else ++c, ++p, ++q;
  }
  return c;
}

/// Per-row terms of CKNNA's first pass (row sums, the xy trace, which x-edges are mutual).
struct CknnaRowTerms {
  double* rs_xx;    ///< Σ_t K(i, nx_t)
  double* rs_yy;    ///< Σ_t L(i, ny_t)
  double* rs_a;     ///< Σ over mutual edges of K
  double* rs_b;     ///< Σ over mutual edges of L
  double* tr_xy;    ///< the xy trace terms of row i
  uint8_t* mutual;  ///< n × k: x-edge (i, t) also in ny(i)
};

/// First pass of CKNNA, row i.
///   xy: A = M∘K, B = M∘L with M_ij = 1[j ∈ nx(i)]·1[j ∈ ny(i)] (row-wise, asymmetric).
///       The trace Σ_ij A_ij B_ji pairs A_ij (row i of X's graph) with B_ji (row j of Y's
///       graph), so an edge counts only if it is mutual in both spaces and both directions.
///   xx: A = B = Mᴷ∘K;  yy: A = B = Mᴸ∘L.
template <class T>
MATALIGN_HOST_DEVICE void cknna_row_first(int64_t i, const int64_t* idx_x, const T* val_x,
                                          const T* val_y, const SortedRows<T>& gx,
                                          const SortedRows<T>& gy, int64_t k,
                                          const CknnaRowTerms& o) {
  const int64_t* xi = idx_x + i * k;
  double sxx = 0, syy = 0, sa = 0, sb = 0, txy = 0;
  for (int64_t t = 0; t < k; ++t) {
    const int64_t j = xi[t];
    const double kij = static_cast<double>(val_x[i * k + t]);
    sxx += kij;
    double lij, kji, lji;
    const bool m = gy.lookup(k, i, j, &lij);  // j ∈ ny(i): (i, j) is mutual
    if (m) {
      sa += kij;
      sb += lij;
      // A_ij B_ji ≠ 0 needs (j, i) mutual too: i ∈ nx(j) and i ∈ ny(j); L_ji from row j.
      if (gx.lookup(k, j, i, &kji) && gy.lookup(k, j, i, &lji)) txy += kij * lji;
    }
    o.mutual[i * k + t] = m ? 1 : 0;
  }
  for (int64_t t = 0; t < k; ++t) syy += static_cast<double>(val_y[i * k + t]);
  o.rs_xx[i] = sxx;
  o.rs_yy[i] = syy;
  o.rs_a[i] = sa;
  o.rs_b[i] = sb;
  o.tr_xy[i] = txy;
}

/// Second pass of CKNNA, row i's own terms t[0..4] = cxy, txx, cxx, tyy, cyy (each summed over
/// the row's neighbours in list order). Σ_j colsum(A)_j rowsum(B)_j is written as
/// Σ_i Σ_{j: A_ij≠0} A_ij rowsum(B)_j so that no column sum (a scatter) is needed. Rows are
/// independent: the CUDA engine computes them one thread per row.
template <class T>
MATALIGN_HOST_DEVICE void cknna_row_terms(int64_t i, const int64_t* idx_x, const T* val_x,
                                          const int64_t* idx_y, const T* val_y,
                                          const SortedRows<T>& gx, const SortedRows<T>& gy,
                                          int64_t k, const CknnaRowTerms& o, double* t) {
  const int64_t* xi = idx_x + i * k;
  const int64_t* yi = idx_y + i * k;
  double txx = 0, tyy = 0, cxx = 0, cyy = 0, cxy = 0;
  for (int64_t q = 0; q < k; ++q) {
    const int64_t j = xi[q];
    const double kij = static_cast<double>(val_x[i * k + q]);
    cxx += kij * o.rs_xx[j];
    if (o.mutual[i * k + q]) cxy += kij * o.rs_b[j];
    double kji;
    if (gx.lookup(k, j, i, &kji)) txx += kij * kji;
  }
  for (int64_t q = 0; q < k; ++q) {
    const int64_t j = yi[q];
    const double lij = static_cast<double>(val_y[i * k + q]);
    cyy += lij * o.rs_yy[j];
    double lji;
    if (gy.lookup(k, j, i, &lji)) tyy += lij * lji;
  }
  t[0] = cxy, t[1] = txx, t[2] = cxx, t[3] = tyy, t[4] = cyy;
}

/// Adds row i's terms (t from cknna_row_terms) to the 12 sums of its chunk, in the order
/// xy, xx, yy × (trace, sum_a, sum_b, cross): one addition per sum and row.
MATALIGN_HOST_DEVICE inline void cknna_add_row(int64_t i, const CknnaRowTerms& o, const double* t,
                                               double* cs) {
  cs[0] += o.tr_xy[i], cs[1] += o.rs_a[i], cs[2] += o.rs_b[i], cs[3] += t[0];
  cs[4] += t[1], cs[5] += o.rs_xx[i], cs[6] += o.rs_xx[i], cs[7] += t[2];
  cs[8] += t[3], cs[9] += o.rs_yy[i], cs[10] += o.rs_yy[i], cs[11] += t[4];
}

/// Second pass of CKNNA, row i: adds row i's terms to the 12 sums of its chunk
/// (cknna_row_terms, then cknna_add_row).
template <class T>
MATALIGN_HOST_DEVICE void cknna_row_second(int64_t i, const int64_t* idx_x, const T* val_x,
                                           const int64_t* idx_y, const T* val_y,
                                           const SortedRows<T>& gx, const SortedRows<T>& gy,
                                           int64_t k, const CknnaRowTerms& o, double* cs) {
  double t[5];
  cknna_row_terms(i, idx_x, val_x, idx_y, val_y, gx, gy, k, o, t);
  cknna_add_row(i, o, t, cs);
}

}  // namespace detail
}  // namespace matalign
