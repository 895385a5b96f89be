// mutual_knn and CKNNA from two kNN graphs on the GPU (definitions: docs/METRICS.md): O(N·k)
// work.
//
// Each row's neighbour list is sorted once (cub segmented sort, with the permutation to fetch
// kernel values), then one thread per row runs the CPU engine's per-row arithmetic itself
// (matalign/detail/graph_row.h, shared with cpp/src/graph.cpp: the same loops in the same
// order, double, no FMA contraction), and the per-row terms are summed in chunks of
// kGraphChunk rows in row order, chunks added in order on the host: the CKNNA value is
// bitwise the CPU engine's.
#include <cub/device/device_segmented_sort.cuh>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "common.cuh"
#include "matalign/cuda/plan.h"
#include "matalign/detail/graph_row.h"

namespace matalign {
namespace cuda {

namespace {

using detail::Buffer;

constexpr int64_t kChunk = ::matalign::detail::kGraphChunk;  // the CPU's summation order

__global__ void offsets_kernel(int64_t n, int64_t k, int64_t* off) {
  const int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (i <= n) off[i] = i * k;
}

__global__ void iota_kernel(int64_t n, int64_t k, int32_t* pos) {
  const int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (e < n * k) pos[e] = static_cast<int32_t>(e % k);
}

__global__ void validate_kernel(const int64_t* sx, const int64_t* sy, int64_t n, int64_t k,
                                unsigned long long* first_bad) {
  const int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (i >= n) return;
  if (!::matalign::detail::graph_row_ok(sx + i * k, n, k, i) ||
      (sy && !::matalign::detail::graph_row_ok(sy + i * k, n, k, i)))
    atomicMin(first_bad, static_cast<unsigned long long>(i));
}

template <class T>
using Sorted = ::matalign::detail::SortedRows<T>;
using RowTerms = ::matalign::detail::CknnaRowTerms;

template <class T>
__global__ void phase2_kernel(const int64_t* idx_x, const T* val_x, const T* val_y, Sorted<T> gx,
                              Sorted<T> gy, int64_t n, int64_t k, RowTerms o) {
  const int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (i >= n) return;
  ::matalign::detail::cknna_row_first(i, idx_x, val_x, val_y, gx, gy, k, o);
}

// Phase 3a, one thread per row: the row's own five terms (the costly part: two passes over its
// neighbours with a binary search each).
template <class T>
__global__ void phase3_rows_kernel(const int64_t* idx_x, const T* val_x, const int64_t* idx_y,
                                   const T* val_y, Sorted<T> gx, Sorted<T> gy, int64_t n, int64_t k,
                                   RowTerms o, double* terms) {
  const int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (i >= n) return;
  ::matalign::detail::cknna_row_terms(i, idx_x, val_x, idx_y, val_y, gx, gy, k, o, terms + i * 5);
}

// Phase 3b: the 12 sums of one chunk (xy, xx, yy × (trace, sum_a, sum_b, cross)), rows added in
// row order, one addition per sum and row, as the CPU engine.
__global__ void phase3_chunks_kernel(int64_t n, RowTerms o, const double* terms, double* chunk_sums) {
  const int64_t c = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  const int64_t r0 = c * kChunk;
  if (r0 >= n) return;
  const int64_t r1 = r0 + kChunk < n ? r0 + kChunk : n;
  double cs[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
  for (int64_t i = r0; i < r1; ++i) ::matalign::detail::cknna_add_row(i, o, terms + i * 5, cs);
  for (int q = 0; q < 12; ++q) chunk_sums[c * 12 + q] = cs[q];
}

__global__ void common_kernel(const int64_t* sx, const int64_t* sy, int64_t n, int64_t k,
                              int64_t* common) {
  const int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (i >= n) return;
  const int64_t c = ::matalign::detail::graph_common(sx + i * k, sy + i * k, k);
  common[i] = c;
}

void check_sizes(const char* fn, int64_t n, int64_t k, int64_t n_min) {
  MATALIGN_CHECK(n >= n_min, fn, ": needs at least ", n_min, " rows, got n = ", n);
  MATALIGN_CHECK(k >= 1 && k <= n - 1, fn, ": k must be in 1..n-1 = 1..", n - 1, ", got k = ", k);
  MATALIGN_CHECK(k <= std::numeric_limits<int32_t>::max(), fn, ": k = ", k, " is too large");
  mul_checked(n, k, "n * k");
}

// The CPU engine's message for the first bad row (graph.cpp throw_row_problem).
void throw_row_problem(const char* fn, const char* graph, const int64_t* row, int64_t n, int64_t k,
                       int64_t i) {
  for (int64_t t = 0; t < k; ++t) {
    const int64_t j = row[t];
    MATALIGN_CHECK(j >= 0 && j < n, fn, ": graph ", graph, " row ", i, " has neighbour index ", j,
                   " outside [0, ", n, ")");
    MATALIGN_CHECK(j != i, fn, ": graph ", graph, " row ", i, " lists the row itself (index ", j,
                   ") as a neighbour; self must be excluded");
  }
  std::vector<int64_t> s(row, row + k);
  std::sort(s.begin(), s.end());
  for (int64_t t = 1; t < k; ++t)
    MATALIGN_CHECK(s[t] != s[t - 1], fn, ": graph ", graph, " row ", i, " lists neighbour ", s[t],
                   " more than once");
}

/// A graph's indices on the device, and each row sorted (with the permutation).
struct DeviceGraph {
  Buffer<int64_t> idx, sidx;
  Buffer<int32_t> pos, perm;
};

void upload_sorted(const int64_t* idx, int64_t n, int64_t k, const Buffer<int64_t>& offsets,
                   DeviceGraph& g, cudaStream_t s) {
  const int64_t nk = n * k;
  g.idx.allocate(nk, "graph indices");
  g.sidx.allocate(nk, "sorted graph indices");
  g.pos.allocate(nk, "graph positions");
  g.perm.allocate(nk, "graph permutation");
  MATALIGN_CUDA_CHECK(cudaMemcpyAsync(g.idx.get(), idx, nk * sizeof(int64_t), cudaMemcpyHostToDevice, s));
  iota_kernel<<<detail::grid_for(nk, 256), 256, 0, s>>>(n, k, g.pos.get());
  MATALIGN_CUDA_LAUNCHED("iota_kernel");
  // One sort per group of rows whose n·k items fit the library's count (plan::row_groups: CUB
  // before CCCL 3 counts items in int). Segment offsets are relative to the group's first
  // row: offsets[i] = i·k serves every group.
  const auto groups = plan::row_groups(n, k);
  const int64_t* begin = offsets.get();
  const int64_t* end = offsets.get() + 1;
  size_t bytes = 0;
  for (const auto& grp : groups) {  // scratch for the largest query (full and ragged groups)
    const int64_t rows = grp.second - grp.first;
    size_t b = 0;
    MATALIGN_CUDA_CHECK(cub::DeviceSegmentedSort::SortPairs(nullptr, b, g.idx.get(), g.sidx.get(),
                                                            g.pos.get(), g.perm.get(), rows * k,
                                                            rows, begin, end, s));
    bytes = std::max(bytes, b);
  }
  Buffer<unsigned char> tmp(static_cast<int64_t>(bytes), "segmented sort scratch");
  for (const auto& grp : groups) {
    const int64_t rows = grp.second - grp.first, base = grp.first * k;
    size_t b = bytes;
    MATALIGN_CUDA_CHECK(cub::DeviceSegmentedSort::SortPairs(
        tmp.get(), b, g.idx.get() + base, g.sidx.get() + base, g.pos.get() + base,
        g.perm.get() + base, rows * k, rows, begin, end, s));
  }
}

/// Sorted device copies of both graphs; throws the CPU engine's message for the first bad row.
void prepare(const char* fn, const int64_t* idx_x, const int64_t* idx_y, int64_t n, int64_t k,
             DeviceGraph& gx, DeviceGraph& gy, cudaStream_t s) {
  Buffer<int64_t> offsets(n + 1, "segment offsets");
  offsets_kernel<<<detail::grid_for(n + 1, 256), 256, 0, s>>>(n, k, offsets.get());
  MATALIGN_CUDA_LAUNCHED("offsets_kernel");
  upload_sorted(idx_x, n, k, offsets, gx, s);
  upload_sorted(idx_y, n, k, offsets, gy, s);
  Buffer<unsigned long long> bad(1, "validation flag");
  const unsigned long long none = std::numeric_limits<unsigned long long>::max();
  MATALIGN_CUDA_CHECK(cudaMemcpyAsync(bad.get(), &none, sizeof(none), cudaMemcpyHostToDevice, s));
  validate_kernel<<<detail::grid_for(n, 256), 256, 0, s>>>(gx.sidx.get(), gy.sidx.get(), n, k, bad.get());
  MATALIGN_CUDA_LAUNCHED("validate_kernel");
  unsigned long long first = none;
  MATALIGN_CUDA_CHECK(cudaMemcpyAsync(&first, bad.get(), sizeof(first), cudaMemcpyDeviceToHost, s));
  MATALIGN_CUDA_CHECK(cudaStreamSynchronize(s));
  if (first != none) {
    const int64_t i = static_cast<int64_t>(first);
    throw_row_problem(fn, "x", idx_x + i * k, n, k, i);
    throw_row_problem(fn, "y", idx_y + i * k, n, k, i);
    MATALIGN_INTERNAL(false);
  }
}

}  // namespace

double mutual_knn(const int64_t* idx_x, const int64_t* idx_y, int64_t n, int64_t k, double* per_row,
                  const Launch& l) {
  static const char* fn = "mutual_knn";
  check_sizes(fn, n, k, 2);
  MATALIGN_CHECK(idx_x && idx_y, fn, ": null index array");
  detail::check_launch(l, fn);
  detail::CallScope scope(l);
  const cudaStream_t s = detail::stream_of(l);
  DeviceGraph gx, gy;
  prepare(fn, idx_x, idx_y, n, k, gx, gy, s);
  Buffer<int64_t> common(n, "common counts");
  common_kernel<<<detail::grid_for(n, 256), 256, 0, s>>>(gx.sidx.get(), gy.sidx.get(), n, k, common.get());
  MATALIGN_CUDA_LAUNCHED("common_kernel");
  std::vector<int64_t> host(static_cast<size_t>(n));
  MATALIGN_CUDA_CHECK(cudaMemcpyAsync(host.data(), common.get(), n * sizeof(int64_t), cudaMemcpyDeviceToHost, s));
  MATALIGN_CUDA_CHECK(cudaStreamSynchronize(s));
  int64_t total = 0;
  for (int64_t i = 0; i < n; ++i) {
    total += host[static_cast<size_t>(i)];
    if (per_row) per_row[i] = static_cast<double>(host[static_cast<size_t>(i)]) / static_cast<double>(k);
  }
  return static_cast<double>(total) / (static_cast<double>(n) * static_cast<double>(k));
}

template <class T>
CknnaResult cknna(const int64_t* idx_x, const T* val_x, const int64_t* idx_y, const T* val_y,
                  int64_t n, int64_t k, double eps, const Launch& l) {
  static const char* fn = "cknna";
  check_sizes(fn, n, k, 4);
  MATALIGN_CHECK(idx_x && val_x && idx_y && val_y, fn, ": null input array");
  MATALIGN_CHECK(std::isfinite(eps) && eps >= 0, fn, ": eps must be finite and >= 0, got ", eps);
  detail::check_launch(l, fn);
  detail::CallScope scope(l);
  const cudaStream_t s = detail::stream_of(l);
  const int64_t nk = n * k;
  DeviceGraph gx, gy;
  prepare(fn, idx_x, idx_y, n, k, gx, gy, s);
  Buffer<T> vx(nk, "graph values"), vy(nk, "graph values");
  MATALIGN_CUDA_CHECK(cudaMemcpyAsync(vx.get(), val_x, nk * sizeof(T), cudaMemcpyHostToDevice, s));
  MATALIGN_CUDA_CHECK(cudaMemcpyAsync(vy.get(), val_y, nk * sizeof(T), cudaMemcpyHostToDevice, s));
  Buffer<double> rows(mul_checked(5, n, "row terms"), "CKNNA row terms");
  Buffer<uint8_t> mutual(nk, "mutual flags");
  const RowTerms o{rows.get(), rows.get() + n, rows.get() + 2 * n, rows.get() + 3 * n,
                   rows.get() + 4 * n, mutual.get()};
  const Sorted<T> sx{gx.sidx.get(), gx.perm.get(), vx.get()};
  const Sorted<T> sy{gy.sidx.get(), gy.perm.get(), vy.get()};
  phase2_kernel<T><<<detail::grid_for(n, 128), 128, 0, s>>>(gx.idx.get(), vx.get(), vy.get(), sx, sy, n, k, o);
  MATALIGN_CUDA_LAUNCHED("phase2_kernel");
  const int64_t chunks = detail::ceil_div(n, kChunk);
  Buffer<double> parts(chunks * 12, "chunk sums");
  Buffer<double> terms(mul_checked(n, 5, "row terms"), "CKNNA row terms");
  phase3_rows_kernel<T><<<detail::grid_for(n, 128), 128, 0, s>>>(gx.idx.get(), vx.get(), gy.idx.get(),
                                                                vy.get(), sx, sy, n, k, o, terms.get());
  MATALIGN_CUDA_LAUNCHED("phase3_rows_kernel");
  phase3_chunks_kernel<<<detail::grid_for(chunks, 64), 64, 0, s>>>(n, o, terms.get(), parts.get());
  MATALIGN_CUDA_LAUNCHED("phase3_chunks_kernel");
  std::vector<double> host(static_cast<size_t>(chunks * 12));
  MATALIGN_CUDA_CHECK(cudaMemcpyAsync(host.data(), parts.get(), chunks * 12 * sizeof(double),
                                      cudaMemcpyDeviceToHost, s));
  MATALIGN_CUDA_CHECK(cudaStreamSynchronize(s));
  double tot[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
  for (int64_t c = 0; c < chunks; ++c)
    for (int q = 0; q < 12; ++q) tot[q] += host[static_cast<size_t>(c * 12 + q)];

  return ::matalign::detail::cknna_from_sums(tot, n, eps, fn);
}

template CknnaResult cknna<float>(const int64_t*, const float*, const int64_t*, const float*, int64_t,
                                  int64_t, double, const Launch&);
template CknnaResult cknna<double>(const int64_t*, const double*, const int64_t*, const double*,
                                   int64_t, int64_t, double, const Launch&);

}  // namespace cuda
}  // namespace matalign
