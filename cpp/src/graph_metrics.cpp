/// @file graph_metrics.cpp
/// mutual_knn and CKNNA from two kNN graphs (DESIGN.md §1.2, §2): O(N·k) time and memory.
///
/// Determinism: rows are processed in fixed chunks of kChunk rows. Inside a chunk rows are
/// visited in increasing order and each row's edges in stored order; chunk partials are then
/// added serially in chunk order. The thread count only decides which thread runs a chunk,
/// so every result is bitwise independent of it.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <exception>
#include <limits>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "matalign/common.h"
#include "matalign/graph.h"

namespace matalign {
namespace {

// Big enough to amortise scheduling and per-chunk scratch, small enough to balance load.
constexpr int64_t kChunk = 512;

int64_t n_chunks_for(int64_t n) { return (n + kChunk - 1) / kChunk; }

/// Run body(chunk) for every chunk on up to n_threads threads. The first exception thrown by
/// a body stops the remaining chunks and is rethrown here (none escapes the OpenMP region).
template <class F>
void parallel_chunks(int64_t n_chunks, int n_threads, F&& body) {
  std::exception_ptr error;
  std::atomic<bool> stop{false};
#ifdef _OPENMP
#pragma omp parallel for schedule(dynamic, 1) num_threads(n_threads)
#endif
  for (int64_t c = 0; c < n_chunks; ++c) {
    if (stop.load(std::memory_order_relaxed)) continue;
    try {
      body(c);
    } catch (...) {
#ifdef _OPENMP
#pragma omp critical(matalign_graph_metrics_error)
#endif
      {
        if (!error) error = std::current_exception();
      }
      stop.store(true, std::memory_order_relaxed);
    }
  }
  (void)n_threads;
  if (error) std::rethrow_exception(error);
}

/// Lowest row found bad by any thread (so the error message does not depend on timing).
struct BadRow {
  std::atomic<int64_t> row{std::numeric_limits<int64_t>::max()};
  void note(int64_t i) {
    int64_t cur = row.load(std::memory_order_relaxed);
    while (i < cur && !row.compare_exchange_weak(cur, i, std::memory_order_relaxed)) {
    }
  }
  bool any() const { return row.load() != std::numeric_limits<int64_t>::max(); }
};

/// Throws std::invalid_argument describing the first problem of row i of one graph
/// (`row` = its k stored indices); returns normally if the row is valid.
void throw_row_problem(const char* fn, const char* graph, const int64_t* row, int64_t n,
                       int64_t k, int64_t i) {
  for (int64_t t = 0; t < k; ++t) {
    const int64_t j = row[t];
    MATALIGN_CHECK(j >= 0 && j < n, fn, ": graph ", graph, " row ", i, " has neighbour index ",
                   j, " outside [0, ", n, ")");
    MATALIGN_CHECK(j != i, fn, ": graph ", graph, " row ", i, " lists the row itself (index ",
                   j, ") as a neighbour; self must be excluded");
  }
  std::vector<int64_t> s(row, row + k);
  std::sort(s.begin(), s.end());
  for (int64_t t = 1; t < k; ++t)
    MATALIGN_CHECK(s[t] != s[t - 1], fn, ": graph ", graph, " row ", i, " lists neighbour ",
                   s[t], " more than once");
}

/// Cheap validity test of a row whose sorted copy is `s` (no message; see throw_row_problem).
inline bool row_ok(const int64_t* s, int64_t n, int64_t k, int64_t i) {
  if (s[0] < 0 || s[k - 1] >= n) return false;
  for (int64_t t = 0; t < k; ++t) {
    if (s[t] == i) return false;
    if (t > 0 && s[t] == s[t - 1]) return false;
  }
  return true;
}

void check_sizes(const char* fn, int64_t n, int64_t k, int64_t n_min) {
  MATALIGN_CHECK(n >= n_min, fn, ": needs at least ", n_min, " rows, got n = ", n);
  MATALIGN_CHECK(k >= 1 && k <= n - 1, fn, ": k must be in 1..n-1 = 1..", n - 1, ", got k = ",
                 k);
  mul_checked(n, k, "n * k");
}

/// Position of value v in sorted[0..k), or -1.
inline int64_t find_sorted(const int64_t* sorted, int64_t k, int64_t v) {
  const int64_t* p = std::lower_bound(sorted, sorted + k, v);
  return (p != sorted + k && *p == v) ? static_cast<int64_t>(p - sorted) : -1;
}

/// Per-row sorted copy of a graph: sidx[i*k + s] increasing, perm[i*k + s] = the stored
/// position t of that neighbour (to fetch its kernel value from the caller's array).
struct SortedGraph {
  std::vector<int64_t> sidx;
  std::vector<int32_t> perm;

  /// If j lists i as a neighbour, set *value to the kernel value stored in row j for i
  /// (read from `val`, the caller's n × k values) and return true.
  template <class T>
  bool lookup(const T* val, int64_t k, int64_t j, int64_t i, double* value) const {
    const int64_t s = find_sorted(sidx.data() + j * k, k, i);
    if (s < 0) return false;
    *value = static_cast<double>(val[j * k + perm[static_cast<size_t>(j * k + s)]]);
    return true;
  }
};

}  // namespace

double mutual_knn(const int64_t* idx_x, const int64_t* idx_y, int64_t n, int64_t k,
                  double* per_row, int n_threads) {
  static const char* fn = "mutual_knn";
  check_sizes(fn, n, k, 2);
  MATALIGN_CHECK(idx_x != nullptr && idx_y != nullptr, fn, ": null index array");
  const int threads = resolve_threads(n_threads);
  const int64_t n_chunks = n_chunks_for(n);
  std::vector<int64_t> chunk_count(static_cast<size_t>(n_chunks), 0);
  BadRow bad;

  parallel_chunks(n_chunks, threads, [&](int64_t c) {
    std::vector<int64_t> sx(static_cast<size_t>(k)), sy(static_cast<size_t>(k));
    const int64_t r0 = c * kChunk, r1 = std::min(n, r0 + kChunk);
    int64_t total = 0;
    for (int64_t i = r0; i < r1; ++i) {
      std::copy(idx_x + i * k, idx_x + (i + 1) * k, sx.begin());
      std::copy(idx_y + i * k, idx_y + (i + 1) * k, sy.begin());
      std::sort(sx.begin(), sx.end());
      std::sort(sy.begin(), sy.end());
      if (!row_ok(sx.data(), n, k, i) || !row_ok(sy.data(), n, k, i)) {
        bad.note(i);
        continue;
      }
      // Merge-intersect two sorted rows: O(k) after the O(k log k) sorts.
      int64_t a = 0, b = 0, common = 0;
      while (a < k && b < k) {
        if (sx[a] < sy[b]) {
          ++a;
        } else if (sy[b] < sx[a]) {
          ++b;
        } else {
          ++common, ++a, ++b;
        }
      }
      total += common;
      if (per_row) per_row[i] = static_cast<double>(common) / static_cast<double>(k);
    }
    chunk_count[static_cast<size_t>(c)] = total;
  });
  if (bad.any()) {
    const int64_t i = bad.row.load();
    throw_row_problem(fn, "x", idx_x + i * k, n, k, i);
    throw_row_problem(fn, "y", idx_y + i * k, n, k, i);
    MATALIGN_INTERNAL(false);
  }
  // Integer total: exact, so the mean is independent of any order.
  int64_t total = 0;
  for (int64_t c : chunk_count) total += c;
  return static_cast<double>(total) / (static_cast<double>(n) * static_cast<double>(k));
}

namespace {

/// Sums of one unbiased HSIC, from which HSIC₁ is assembled (DESIGN §2):
/// trace = Σ_ij A_ij B_ji, sum_a = ΣA, sum_b = ΣB, cross = Σ_j colsum(A)_j rowsum(B)_j.
struct HsicSums {
  double trace = 0, sum_a = 0, sum_b = 0, cross = 0;
  void add(const HsicSums& o) {
    trace += o.trace, sum_a += o.sum_a, sum_b += o.sum_b, cross += o.cross;
  }
};

struct ChunkSums {
  HsicSums xy, xx, yy;
};

}  // namespace

template <class T>
CknnaResult cknna(const int64_t* idx_x, const T* val_x, const int64_t* idx_y, const T* val_y,
                  int64_t n, int64_t k, double eps, double* per_row, int n_threads) {
  static const char* fn = "cknna";
  check_sizes(fn, n, k, 4);
  MATALIGN_CHECK(idx_x && val_x && idx_y && val_y, fn, ": null input array");
  MATALIGN_CHECK(std::isfinite(eps) && eps >= 0, fn, ": eps must be finite and >= 0, got ",
                 eps);
  MATALIGN_CHECK(k <= std::numeric_limits<int32_t>::max(), fn, ": k = ", k, " is too large");
  const int threads = resolve_threads(n_threads);
  const int64_t nk = mul_checked(n, k, "n * k");
  const int64_t n_chunks = n_chunks_for(n);
  const size_t un = static_cast<size_t>(n), unk = static_cast<size_t>(nk);

  // Phase 1: sorted copies of both graphs (membership tests by binary search) + validation.
  SortedGraph gx, gy;
  gx.sidx.resize(unk), gx.perm.resize(unk), gy.sidx.resize(unk), gy.perm.resize(unk);
  BadRow bad;
  parallel_chunks(n_chunks, threads, [&](int64_t c) {
    std::vector<int32_t> order(static_cast<size_t>(k));
    const int64_t r0 = c * kChunk, r1 = std::min(n, r0 + kChunk);
    for (int64_t i = r0; i < r1; ++i) {
      bool ok = true;
      for (int g = 0; g < 2; ++g) {
        const int64_t* row = (g == 0 ? idx_x : idx_y) + i * k;
        SortedGraph& sg = g == 0 ? gx : gy;
        for (int32_t t = 0; t < static_cast<int32_t>(k); ++t) order[static_cast<size_t>(t)] = t;
        std::sort(order.begin(), order.end(),
                  [row](int32_t a, int32_t b) { return row[a] < row[b]; });
        int64_t* s = sg.sidx.data() + i * k;
        int32_t* p = sg.perm.data() + i * k;
        for (int64_t t = 0; t < k; ++t) {
          p[t] = order[static_cast<size_t>(t)];
          s[t] = row[p[t]];
        }
        ok = ok && row_ok(s, n, k, i);
      }
      if (!ok) bad.note(i);
    }
  });
  if (bad.any()) {
    const int64_t i = bad.row.load();
    throw_row_problem(fn, "x", idx_x + i * k, n, k, i);
    throw_row_problem(fn, "y", idx_y + i * k, n, k, i);
    MATALIGN_INTERNAL(false);
  }

  // Phase 2, per row i: row sums, the trace terms, and which x-edges are mutual.
  //   xy: A = M∘K, B = M∘L with M_ij = 1[j ∈ nx(i)]·1[j ∈ ny(i)] (row-wise, asymmetric).
  //       The trace Σ_ij A_ij B_ji pairs A_ij (row i of X's graph) with B_ji (row j of Y's
  //       graph), so an edge counts only if it is mutual in both spaces and both directions.
  //   xx: A = B = Mᴷ∘K;  yy: A = B = Mᴸ∘L.
  std::vector<double> rs_xx(un), rs_yy(un), rs_a(un), rs_b(un), tr_xy(un);
  std::vector<uint8_t> mutual(unk);
  parallel_chunks(n_chunks, threads, [&](int64_t c) {
    const int64_t r0 = c * kChunk, r1 = std::min(n, r0 + kChunk);
    for (int64_t i = r0; i < r1; ++i) {
      const int64_t* xi = idx_x + i * k;
      double sxx = 0, syy = 0, sa = 0, sb = 0, txy = 0;
      for (int64_t t = 0; t < k; ++t) {
        const int64_t j = xi[t];
        const double kij = static_cast<double>(val_x[i * k + t]);
        sxx += kij;
        double lij, kji, lji;
        const bool m = gy.lookup(val_y, k, i, j, &lij);  // j ∈ ny(i): (i, j) is mutual
        if (m) {
          sa += kij;
          sb += lij;
          // A_ij B_ji ≠ 0 needs (j, i) mutual too: i ∈ nx(j) and i ∈ ny(j); L_ji from row j.
          if (gx.lookup(val_x, k, j, i, &kji) && gy.lookup(val_y, k, j, i, &lji)) txy += kij * lji;
        }
        mutual[static_cast<size_t>(i * k + t)] = m ? 1 : 0;
      }
      for (int64_t t = 0; t < k; ++t) syy += static_cast<double>(val_y[i * k + t]);
      rs_xx[static_cast<size_t>(i)] = sxx;
      rs_yy[static_cast<size_t>(i)] = syy;
      rs_a[static_cast<size_t>(i)] = sa;
      rs_b[static_cast<size_t>(i)] = sb;
      tr_xy[static_cast<size_t>(i)] = txy;
    }
  });

  // Phase 3, per row i: the remaining trace terms and Σ_j colsum(A)_j rowsum(B)_j, written
  // as Σ_i Σ_{j: A_ij≠0} A_ij rowsum(B)_j so that no column sum (a scatter) is needed.
  std::vector<ChunkSums> parts(static_cast<size_t>(n_chunks));
  parallel_chunks(n_chunks, threads, [&](int64_t c) {
    const int64_t r0 = c * kChunk, r1 = std::min(n, r0 + kChunk);
    ChunkSums cs;
    for (int64_t i = r0; i < r1; ++i) {
      const int64_t* xi = idx_x + i * k;
      const int64_t* yi = idx_y + i * k;
      double txx = 0, tyy = 0, cxx = 0, cyy = 0, cxy = 0;
      for (int64_t t = 0; t < k; ++t) {
        const int64_t j = xi[t];
        const double kij = static_cast<double>(val_x[i * k + t]);
        cxx += kij * rs_xx[static_cast<size_t>(j)];
        if (mutual[static_cast<size_t>(i * k + t)]) cxy += kij * rs_b[static_cast<size_t>(j)];
        double kji;
        if (gx.lookup(val_x, k, j, i, &kji)) txx += kij * kji;
      }
      for (int64_t t = 0; t < k; ++t) {
        const int64_t j = yi[t];
        const double lij = static_cast<double>(val_y[i * k + t]);
        cyy += lij * rs_yy[static_cast<size_t>(j)];
        double lji;
        if (gy.lookup(val_y, k, j, i, &lji)) tyy += lij * lji;
      }
      const size_t ui = static_cast<size_t>(i);
      cs.xy.trace += tr_xy[ui], cs.xy.sum_a += rs_a[ui], cs.xy.sum_b += rs_b[ui];
      cs.xy.cross += cxy;
      cs.xx.trace += txx, cs.xx.sum_a += rs_xx[ui], cs.xx.sum_b += rs_xx[ui], cs.xx.cross += cxx;
      cs.yy.trace += tyy, cs.yy.sum_a += rs_yy[ui], cs.yy.sum_b += rs_yy[ui], cs.yy.cross += cyy;
    }
    parts[static_cast<size_t>(c)] = cs;
  });
  ChunkSums tot;
  for (const ChunkSums& p : parts) tot.xy.add(p.xy), tot.xx.add(p.xx), tot.yy.add(p.yy);

  const double sums[12] = {tot.xy.trace, tot.xy.sum_a, tot.xy.sum_b, tot.xy.cross,
                           tot.xx.trace, tot.xx.sum_a, tot.xx.sum_b, tot.xx.cross,
                           tot.yy.trace, tot.yy.sum_a, tot.yy.sum_b, tot.yy.cross};
  const CknnaResult r = detail::cknna_from_sums(sums, n, eps, fn);
  const double denom = std::sqrt(std::max(r.hsic_xx * r.hsic_yy, 0.0)) + eps;

  if (per_row) {
    // Row i's share of the numerator: its trace edges, rowsum(A)_i·ΣB/((N−1)(N−2)) and
    // colsum(A)_i·rowsum(B)_i. The column sums need a scatter; it runs serially, in row
    // order, so the result is independent of the thread count.
    std::vector<double> col_a(un, 0.0);
    for (int64_t i = 0; i < n; ++i) {
      const int64_t* xi = idx_x + i * k;
      for (int64_t t = 0; t < k; ++t)
        if (mutual[static_cast<size_t>(i * k + t)])
          col_a[static_cast<size_t>(xi[t])] += static_cast<double>(val_x[i * k + t]);
    }
    const double N = static_cast<double>(n);
    const double c2 = tot.xy.sum_b / ((N - 1) * (N - 2));
    const double c3 = 2.0 / (N - 2);
    const double scale = 1.0 / (N * (N - 3)) / denom;
    parallel_chunks(n_chunks, threads, [&](int64_t c) {
      const int64_t r0 = c * kChunk, r1 = std::min(n, r0 + kChunk);
      for (int64_t i = r0; i < r1; ++i) {
        const size_t ui = static_cast<size_t>(i);
        per_row[i] = (tr_xy[ui] + rs_a[ui] * c2 - c3 * col_a[ui] * rs_b[ui]) * scale;
      }
    });
  }
  return r;
}

template CknnaResult cknna<float>(const int64_t*, const float*, const int64_t*, const float*,
                                  int64_t, int64_t, double, double*, int);
template CknnaResult cknna<double>(const int64_t*, const double*, const int64_t*,
                                   const double*, int64_t, int64_t, double, double*, int);

}  // namespace matalign
