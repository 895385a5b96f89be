/// @file graph.cpp
/// mutual_knn and CKNNA from two kNN graphs (definitions: docs/METRICS.md): O(N·k) time and
/// memory. The per-row arithmetic is graph_row.h, shared with the CUDA engine (graph.cu).
///
/// Determinism: rows are processed in fixed chunks of kGraphChunk rows. Inside a chunk rows are
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
#include "matalign/detail/graph_row.h"
#include "matalign/graph.h"

namespace matalign {
namespace {

// Big enough to amortise scheduling and per-chunk scratch, small enough to balance load.
constexpr int64_t kChunk = detail::kGraphChunk;

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

using detail::graph_row_ok;

void check_sizes(const char* fn, int64_t n, int64_t k, int64_t n_min) {
  MATALIGN_CHECK(n >= n_min, fn, ": needs at least ", n_min, " rows, got n = ", n);
  MATALIGN_CHECK(k >= 1 && k <= n - 1, fn, ": k must be in 1..n-1 = 1..", n - 1, ", got k = ",
                 k);
  mul_checked(n, k, "n * k");
}

/// Per-row sorted copy of a graph: sidx[i*k + s] increasing, perm[i*k + s] = the stored
/// position t of that neighbour (to fetch its kernel value from the caller's array).
struct SortedGraph {
  std::vector<int64_t> sidx;
  std::vector<int32_t> perm;
  template <class T>
  detail::SortedRows<T> rows(const T* val) const {
    return detail::SortedRows<T>{sidx.data(), perm.data(), val};
  }
};

}  // namespace

double mutual_knn(const int64_t* idx_x, const int64_t* idx_y, int64_t n, int64_t k,
                  double* per_row, int n_threads) {
  static const char* fn = "mutual_knn";
  check_sizes(fn, n, k, 2);
  MATALIGN_CHECK(idx_x != nullptr && idx_y != nullptr, fn, ": null index array");
  const int threads = resolve_threads(n_threads, 32.0 * double(n) * double(k));
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
      if (!graph_row_ok(sx.data(), n, k, i) || !graph_row_ok(sy.data(), n, k, i)) {
        bad.note(i);
        continue;
      }
      // Merge-intersect two sorted rows: O(k) after the O(k log k) sorts.
      const int64_t common = detail::graph_common(sx.data(), sy.data(), k);
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


template <class T>
CknnaResult cknna(const int64_t* idx_x, const T* val_x, const int64_t* idx_y, const T* val_y,
                  int64_t n, int64_t k, double eps, double* per_row, int n_threads) {
  static const char* fn = "cknna";
  check_sizes(fn, n, k, 4);
  MATALIGN_CHECK(idx_x && val_x && idx_y && val_y, fn, ": null input array");
  MATALIGN_CHECK(std::isfinite(eps) && eps >= 0, fn, ": eps must be finite and >= 0, got ",
                 eps);
  MATALIGN_CHECK(k <= std::numeric_limits<int32_t>::max(), fn, ": k = ", k, " is too large");
  const int threads = resolve_threads(n_threads, 32.0 * double(n) * double(k));
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
        ok = ok && graph_row_ok(s, n, k, i);
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

  // Phase 2, per row i: row sums, the trace terms, and which x-edges are mutual
  // (detail::cknna_row_first).
  std::vector<double> rs_xx(un), rs_yy(un), rs_a(un), rs_b(un), tr_xy(un);
  std::vector<uint8_t> mutual(unk);
  const detail::CknnaRowTerms terms{rs_xx.data(), rs_yy.data(), rs_a.data(), rs_b.data(),
                                    tr_xy.data(), mutual.data()};
  const detail::SortedRows<T> sx = gx.rows(val_x), sy = gy.rows(val_y);
  parallel_chunks(n_chunks, threads, [&](int64_t c) {
    const int64_t r0 = c * kChunk, r1 = std::min(n, r0 + kChunk);
    for (int64_t i = r0; i < r1; ++i) detail::cknna_row_first(i, idx_x, val_x, val_y, sx, sy, k, terms);
  });

  // Phase 3, per row i: the remaining trace terms and the cross terms, summed per chunk in
  // row order (detail::cknna_row_second), then the chunks in chunk order.
  std::vector<double> parts(static_cast<size_t>(n_chunks) * 12, 0.0);
  parallel_chunks(n_chunks, threads, [&](int64_t c) {
    const int64_t r0 = c * kChunk, r1 = std::min(n, r0 + kChunk);
    double* cs = parts.data() + c * 12;
    for (int64_t i = r0; i < r1; ++i)
      detail::cknna_row_second(i, idx_x, val_x, idx_y, val_y, sx, sy, k, terms, cs);
  });
  double sums[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
  for (int64_t c = 0; c < n_chunks; ++c)
    for (int q = 0; q < 12; ++q) sums[q] += parts[static_cast<size_t>(c * 12 + q)];

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
    const double c2 = sums[2] / ((N - 1) * (N - 2));
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

int64_t cknna_workspace_bytes(int64_t n, int64_t k) {
  MATALIGN_CHECK(n >= 1 && k >= 1, "cknna_workspace_bytes: n and k must be >= 1");
  const int64_t nk = mul_checked(n, k, "n * k");
  // sorted copies of both graphs (int64 + int32), the mutual-edge flags, five per-row sums,
  // the per-row output and its column sums, the chunk sums
  return 2 * nk * (8 + 4) + nk + 7 * n * 8 + ((n + kChunk - 1) / kChunk) * 12 * 8;
}

template CknnaResult cknna<float>(const int64_t*, const float*, const int64_t*, const float*,
                                  int64_t, int64_t, double, double*, int);
template CknnaResult cknna<double>(const int64_t*, const double*, const int64_t*,
                                   const double*, int64_t, int64_t, double, double*, int);

}  // namespace matalign
