// Exact kNN on the GPU: tile GEMM + the TopK reducer (see engine.h for the contract).
//
// TopK keeps, for the rows of the current row tile, their best k so far as a sorted list at
// the head of a per-row segment of capacity k + C (C = column tile width). For each column
// tile (in increasing column order) a block per row appends, in increasing column order, the
// tile's candidates that beat the row's current k-th best; one stable segmented sort
// (descending by score) orders only the appended candidates (the list is already sorted: no
// re-sort of k entries per tile, which matters for large k), and keep_kernel merges list and
// sorted candidates by binary-search positions (screen_plan::count_before, the merge the
// int8 screen uses), keeping the first k. The tie rule "lower index first" holds because the
// stable sort keeps equal scores in increasing column order and the merge orders by
// (score desc, index asc). Rows without candidates get an empty segment (no work). The GPU visits all N×N pairs: no
// symmetric half (simpler; the CPU engine's conflict-free rounds have no cheap GPU analogue).
#include <cub/block/block_scan.cuh>
#include <cub/device/device_segmented_sort.cuh>

#include <cmath>
#include <limits>

#include "common.cuh"
#include "knn_dense.cuh"
#include "matalign/cuda/plan.h"
#include "matalign/cuda/screen_plan.h"

namespace matalign {
namespace cuda {

namespace {

using detail::Buffer;
using detail::DevMat;

constexpr int kRowThreads = 256;

template <class T>
struct TopKView {
  T* keys;             // R × cap scores (higher is better), list at the head of each segment
  int64_t* vals;       // R × cap database indices
  int64_t* begin;      // R segment begins (absolute element offsets)
  int64_t* end;        // R segment ends (== begin: nothing to sort)
  int32_t* filled;     // R entries in the list (<= k)
  int32_t* added;      // R candidates appended by the last tile
  int64_t cap, k;
};

// Appends the tile's candidates of row r (tile-local) behind its list, in column order.
template <class T>
__global__ void __launch_bounds__(kRowThreads)
select_kernel(const T* g, int64_t ldg, int64_t C, int64_t r0, int64_t c0, const T* norm_r,
              const T* norm_c, bool l2, bool exclude_self, TopKView<T> st) {
  using Scan = cub::BlockScan<int, kRowThreads>;
  __shared__ typename Scan::TempStorage scan_tmp;
  const int64_t r = blockIdx.x;
  const int64_t i = r0 + r;  // global row
  const int filled = st.filled[r];
  T* keys = st.keys + r * st.cap;
  int64_t* vals = st.vals + r * st.cap;
  const bool full = filled >= st.k;
  const T thr = full ? keys[st.k - 1] : T(0);  // unused until the list is full
  const int64_t thr_index = full ? vals[st.k - 1] : 0;
  const T ni = l2 ? norm_r[i] : T(0);
  int base = filled;
  for (int64_t c = 0; c < C; c += kRowThreads) {
    const int64_t jj = c + threadIdx.x;
    const int64_t j = c0 + jj;
    T s = T(0);
    int take = 0;
    if (jj < C && !(exclude_self && j == i)) {
      s = g[r * ldg + jj];
      if (l2) s = s * T(2) - (ni + norm_c[j]);  // −‖x_i − x_j‖², as the CPU engine
      s = s + T(0);  // −0 → +0: the radix sort orders −0 below +0, comparisons do not
      take = (!full || s > thr || (s == thr && j < thr_index)) ? 1 : 0;
    }
    int pos, total;
    Scan(scan_tmp).ExclusiveSum(take, pos, total);
    if (take) {
      keys[base + pos] = s;
      vals[base + pos] = j;
    }
    base += total;
    __syncthreads();  // scan_tmp is reused by the next chunk
  }
  if (threadIdx.x == 0) {
    const int added = base - filled;
    st.added[r] = added;
    st.begin[r] = r * st.cap + filled;  // only the appended candidates are sorted
    st.end[r] = r * st.cap + base;
  }
}

// After the sort: the list (keys[0, filled), sorted) and the sorted candidates
// (sorted_keys[filled, filled + added)) merged, the first min(k, filled + added) entries
// becoming the list. The list is first copied next to the candidates (the head of the sort's
// output segment is unused), so the merge reads one buffer and writes the other.
template <class T>
__global__ void __launch_bounds__(kRowThreads)
keep_kernel(T* sorted_keys, int64_t* sorted_vals, TopKView<T> st) {
  const int64_t r = blockIdx.x;
  const int added = st.added[r];
  if (added == 0) return;  // uniform across the block
  const int64_t filled = st.filled[r];
  const int64_t n = filled + added;
  const int64_t keep = n < st.k ? n : st.k;
  const int64_t off = r * st.cap;
  T* lk = sorted_keys + off;        // [0, filled): the list, then the sorted candidates
  int64_t* li = sorted_vals + off;
  for (int64_t t = threadIdx.x; t < filled; t += kRowThreads) {
    lk[t] = st.keys[off + t];
    li[t] = st.vals[off + t];
  }
  // Every thread has read filled[r] and the list above before any is overwritten.
  __syncthreads();
  const T* ck = lk + filled;
  const int64_t* ci = li + filled;
  for (int64_t q = threadIdx.x; q < filled; q += kRowThreads) {
    const int64_t p = screen_plan::merged_pos_list(lk, li, q, ck, ci, added);
    if (p < keep) {
      st.keys[off + p] = lk[q];
      st.vals[off + p] = li[q];
    }
  }
  for (int64_t u = threadIdx.x; u < added; u += kRowThreads) {
    const int64_t p = screen_plan::merged_pos_cand(ck, ci, u, lk, li, filled);
    if (p < keep) {
      st.keys[off + p] = ck[u];
      st.vals[off + p] = ci[u];
    }
  }
  if (threadIdx.x == 0) st.filled[r] = static_cast<int32_t>(keep);
}

template <class T>
__global__ void finish_kernel(TopKView<T> st, int64_t R, bool l2, T* values, int64_t* indices,
                              int* short_rows) {
  const int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (e >= R * st.k) return;
  const int64_t r = e / st.k, t = e % st.k;
  if (t == 0 && st.filled[r] < st.k) atomicAdd(short_rows, 1);
  const T s = st.keys[r * st.cap + t];
  values[e] = l2 ? (-s > T(0) ? -s : T(0)) : s;
  indices[e] = st.vals[r * st.cap + t];
}

template <class T>
__global__ void init_kernel(TopKView<T> st, int64_t R) {
  const int64_t r = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (r < R) st.filled[r] = 0;
}

// Row i divided by its norm: squares summed in double in dimension order, sqrt in double,
// each element divided in double and rounded once to T.
template <class T>
__global__ void normalize_kernel(DevMat<T> x, T* out, unsigned long long* zero_rows) {
  const int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (i >= x.rows) return;
  double acc = 0.0;
  for (int64_t j = 0; j < x.cols; ++j) {
    const double v = static_cast<double>(x.at(i, j));
    acc += v * v;
  }
  const double nrm = sqrt(acc);
  if (!(nrm > 0.0)) {
    atomicAdd(zero_rows, 1ull);
    return;
  }
  for (int64_t j = 0; j < x.cols; ++j)
    out[i * x.cols + j] = static_cast<T>(static_cast<double>(x.at(i, j)) / nrm);
}

template <class T>
DevMat<T> normalized(const DevMat<T>& x, Buffer<T>& storage, cudaStream_t s, const char* name) {
  Buffer<T> out(mul_checked(x.rows, x.cols, "normalised copy"), "normalised copy");
  Buffer<unsigned long long> zeros(1, "zero-row count");
  MATALIGN_CUDA_CHECK(cudaMemsetAsync(zeros.get(), 0, sizeof(unsigned long long), s));
  normalize_kernel<T><<<detail::grid_for(x.rows, 128), 128, 0, s>>>(x, out.get(), zeros.get());
  MATALIGN_CUDA_LAUNCHED("normalize_kernel");
  unsigned long long z = 0;
  MATALIGN_CUDA_CHECK(cudaMemcpyAsync(&z, zeros.get(), sizeof(z), cudaMemcpyDeviceToHost, s));
  MATALIGN_CUDA_CHECK(cudaStreamSynchronize(s));
  MATALIGN_CHECK(z == 0, name, " has ", z, " zero row", z == 1 ? "" : "s",
                 ", which cannot be L2-normalised (metric=\"cosine\" normalises rows); drop them "
                 "or pick a metric that does not normalise");
  storage = std::move(out);
  return DevMat<T>{storage.get(), x.rows, x.cols, x.cols, 1};
}

// Device bytes of one row tile of R rows against column tiles of C (everything but the data).
template <class T>
int64_t tile_bytes(int64_t R, int64_t C, int64_t k, int64_t sort_tmp) {
  const int64_t cap = k + C;
  return R * C * int64_t(sizeof(T)) + 2 * R * cap * int64_t(sizeof(T) + sizeof(int64_t)) +
         R * (2 * sizeof(int64_t) + 2 * sizeof(int32_t)) + R * k * int64_t(sizeof(T) + 8) + sort_tmp;
}

template <class T>
size_t sort_temp_bytes(int64_t R, int64_t cap, cudaStream_t s) {
  size_t bytes = 0;
  MATALIGN_CUDA_CHECK((cub::DeviceSegmentedSort::StableSortPairsDescending<T, int64_t, const int64_t*, const int64_t*>(
      nullptr, bytes, static_cast<const T*>(nullptr), static_cast<T*>(nullptr),
      static_cast<const int64_t*>(nullptr), static_cast<int64_t*>(nullptr), R * cap, R,
      static_cast<const int64_t*>(nullptr), static_cast<const int64_t*>(nullptr), s)));
  return bytes;
}

}  // namespace

template <class T>
void prepare_knn(const Matrix<T>& x, const Matrix<T>* queries, int64_t k, bool ip, bool exclude_self,
                 bool normalize, const Launch& l, const char* fn, KnnInputs<T>& p) {
  detail::check_launch(l, fn);
  const bool self = queries == nullptr;
  detail::check_matrix(x, l, fn, "X");
  if (!self) detail::check_matrix(*queries, l, fn, "queries");
  const Matrix<T>& q = self ? x : *queries;
  const int64_t n = x.rows, m = q.rows, d = x.cols;
  MATALIGN_CHECK(q.cols == d, fn, ": queries have ", q.cols, " columns but the database has ", d);
  const bool excl = self && exclude_self;
  const int64_t max_k = excl ? n - 1 : n;
  MATALIGN_CHECK(k >= 1 && k <= max_k, fn, ": k must be in 1..", max_k, ", got ", k);
  MATALIGN_CHECK(k < (int64_t(1) << 30), fn, ": k too large");
  mul_checked(m, k, "knn output size");
  const cudaStream_t s = detail::stream_of(l);
  p.self = self;
  p.l2 = !ip;
  p.excl = excl;
  p.n = n;
  p.m = m;
  p.k = k;
  const bool l2 = p.l2;

  p.dx = detail::stage(x, p.x_store, l, "knn database");
  p.dq = self ? p.dx : detail::stage(q, p.q_store, l, "knn queries");
  if (normalize) {
    p.dx = normalized(p.dx, p.x_norm_store, s, "X");
    p.dq = self ? p.dx : normalized(p.dq, p.q_norm_store, s, "queries");
  }
  // l2 on rows centred on the database mean, as the CPU engine (no cancellation on data far
  // from the origin; bitwise the CPU's centred values, norms and scores).
  if (l2) {
    p.dx = detail::centred(p.dx, p.dx.data == p.x_store.get(), p.x_store, p.x_centred, p.mu, s);
    p.dq = self ? p.dx
                : detail::centred_on(p.dq, p.dq.data == p.q_store.get(), p.q_store, p.q_centred,
                                     p.mu.get(), s);
    p.norm_x.allocate(n, "squared norms");
    detail::squared_norms(p.dx, p.norm_x.get(), s);
    if (!self) {
      p.norm_q.allocate(m, "squared norms");
      detail::squared_norms(p.dq, p.norm_q.get(), s);
    }
  }
  p.norm_r = l2 ? (self ? p.norm_x.get() : p.norm_q.get()) : nullptr;
  p.norm_c = l2 ? p.norm_x.get() : nullptr;
}

template <class T>
plan::KnnTiles dense_tiles(int64_t m, int64_t n, int64_t k, const Launch& l, const char* fn) {
  // Tiles (plan::knn_tiles): as given, else the largest power of two (<= 8192) whose buffers
  // fit in half of the free memory (the segment capacity k + C makes large k cost memory, not
  // correctness); R·(k + C) stays within one segmented sort's count. The graph does not
  // depend on the tiles (exact top-k, stable tie rule).
  const cudaStream_t s = detail::stream_of(l);
  const int64_t budget = (l.tile_rows > 0 && l.tile_cols > 0) ? 0 : detail::free_bytes() / 2;
  return plan::knn_tiles(
      m, n, k, l.tile_rows, l.tile_cols, budget,
      [&](int64_t r, int64_t c) {
        r = std::max<int64_t>(1, std::min(r, plan::kMaxSortItems / (k + c)));  // as the plan caps it
        return tile_bytes<T>(r, c, k, static_cast<int64_t>(sort_temp_bytes<T>(r, k + c, s)));
      },
      fn);
}

template <class T>
DenseTopK<T>::DenseTopK(const plan::KnnTiles& tiles, int64_t k, cudaStream_t s)
    : R(tiles.rows), C(tiles.cols), cap(tiles.cap), k_(k), s_(s) {
  g.allocate(mul_checked(R, C, "tile"), "kNN tile");
  keys.allocate(mul_checked(R, cap, "topk"), "top-k keys");
  keys_out.allocate(R * cap, "top-k keys");
  vals.allocate(R * cap, "top-k indices");
  vals_out.allocate(R * cap, "top-k indices");
  begin.allocate(R, "segments");
  end.allocate(R, "segments");
  filled.allocate(R, "top-k counts");
  added.allocate(R, "top-k counts");
  out_v.allocate(R * k, "kNN values");
  out_i.allocate(R * k, "kNN indices");
  short_rows.allocate(1, "check");
  tmp_bytes = sort_temp_bytes<T>(R, cap, s);
  tmp.allocate(static_cast<int64_t>(tmp_bytes), "segmented sort scratch");
}

template <class T>
void DenseTopK<T>::run(const KnnInputs<T>& p, int64_t r0, int64_t rows, int64_t col_end,
                       const Launch& l, int64_t& done, int64_t total) {
  const TopKView<T> st{keys.get(), vals.get(), begin.get(), end.get(), filled.get(), added.get(), cap, k_};
  const int64_t n_col_tiles = detail::ceil_div(col_end, C);
  init_kernel<T><<<detail::grid_for(rows, 256), 256, 0, s_>>>(st, rows);
  MATALIGN_CUDA_LAUNCHED("init_kernel");
  for (int64_t ct = 0; ct < n_col_tiles; ++ct) {
    const int64_t c0 = ct * C, cols = std::min(C, col_end - c0);
    detail::gemm_tile(p.dq, r0, rows, p.dx, c0, cols, g.get(), C, s_);
    select_kernel<T><<<static_cast<unsigned>(rows), kRowThreads, 0, s_>>>(
        g.get(), C, cols, r0, c0, p.norm_r, p.norm_c, p.l2, p.excl, st);
    MATALIGN_CUDA_LAUNCHED("select_kernel");
    size_t bytes = tmp_bytes;
    MATALIGN_CUDA_CHECK(cub::DeviceSegmentedSort::StableSortPairsDescending(
        tmp.get(), bytes, keys.get(), keys_out.get(), vals.get(), vals_out.get(), rows * cap,
        rows, static_cast<const int64_t*>(begin.get()), static_cast<const int64_t*>(end.get()), s_));
    keep_kernel<T><<<static_cast<unsigned>(rows), kRowThreads, 0, s_>>>(keys_out.get(), vals_out.get(), st);
    MATALIGN_CUDA_LAUNCHED("keep_kernel");
    ++done;
    if ((ct & 7) == 7 || ct + 1 == n_col_tiles) {
      MATALIGN_CUDA_CHECK(cudaStreamSynchronize(s_));  // keeps Ctrl-C and progress live
      detail::poll(l, done, total);
    }
  }
}

template <class T>
void DenseTopK<T>::to_host(int64_t rows, bool l2, T* values, int64_t* indices) {
  const TopKView<T> st{keys.get(), vals.get(), begin.get(), end.get(), filled.get(), added.get(), cap, k_};
  MATALIGN_CUDA_CHECK(cudaMemsetAsync(short_rows.get(), 0, sizeof(int), s_));
  finish_kernel<T><<<detail::grid_for(rows * k_, 256), 256, 0, s_>>>(st, rows, l2, out_v.get(),
                                                                      out_i.get(), short_rows.get());
  MATALIGN_CUDA_LAUNCHED("finish_kernel");
  int shorts = 0;
  MATALIGN_CUDA_CHECK(cudaMemcpyAsync(values, out_v.get(), rows * k_ * sizeof(T),
                                      cudaMemcpyDeviceToHost, s_));
  MATALIGN_CUDA_CHECK(cudaMemcpyAsync(indices, out_i.get(), rows * k_ * sizeof(int64_t),
                                      cudaMemcpyDeviceToHost, s_));
  MATALIGN_CUDA_CHECK(cudaMemcpyAsync(&shorts, short_rows.get(), sizeof(int), cudaMemcpyDeviceToHost, s_));
  MATALIGN_CUDA_CHECK(cudaStreamSynchronize(s_));
  MATALIGN_INTERNAL(shorts == 0);
}

template <class T>
void DenseTopK<T>::to_device(int64_t rows, T* lk, int64_t* li) {
  const TopKView<T> st{keys.get(), vals.get(), begin.get(), end.get(), filled.get(), added.get(), cap, k_};
  MATALIGN_CUDA_CHECK(cudaMemsetAsync(short_rows.get(), 0, sizeof(int), s_));
  // raw scores (l2 = false: no conversion to distances), the lists' sorted heads
  finish_kernel<T><<<detail::grid_for(rows * k_, 256), 256, 0, s_>>>(st, rows, false, lk, li,
                                                                      short_rows.get());
  MATALIGN_CUDA_LAUNCHED("finish_kernel");
  int shorts = 0;
  MATALIGN_CUDA_CHECK(cudaMemcpyAsync(&shorts, short_rows.get(), sizeof(int), cudaMemcpyDeviceToHost, s_));
  MATALIGN_CUDA_CHECK(cudaStreamSynchronize(s_));
  MATALIGN_INTERNAL(shorts == 0);
}

template <class T>
void knn_exact(const Matrix<T>& x, const Matrix<T>* queries, int64_t k, bool ip, bool exclude_self,
               bool normalize, T* values, int64_t* indices, const Launch& l) {
  static const char* fn = "knn (cuda)";
  detail::check_launch(l, fn);
  detail::CallScope scope(l);
  MATALIGN_CHECK(values != nullptr && indices != nullptr, fn, ": null output buffer");
  KnnInputs<T> p;
  prepare_knn(x, queries, k, ip, exclude_self, normalize, l, fn, p);
  const cudaStream_t s = detail::stream_of(l);
  const plan::KnnTiles tiles = dense_tiles<T>(p.m, p.n, k, l, fn);
  DenseTopK<T> dense(tiles, k, s);
  const int64_t R = tiles.rows;
  const int64_t n_row_tiles = detail::ceil_div(p.m, R), n_col_tiles = detail::ceil_div(p.n, tiles.cols);
  const int64_t total = n_row_tiles * n_col_tiles;
  int64_t done = 0;
  detail::poll(l, 0, total);
  for (int64_t rt = 0; rt < n_row_tiles; ++rt) {
    const int64_t r0 = rt * R, rows = std::min(R, p.m - r0);
    dense.run(p, r0, rows, p.n, l, done, total);
    dense.to_host(rows, p.l2, values + r0 * k, indices + r0 * k);
  }
}

#define MATALIGN_INSTANTIATE_DENSE(T)                                                              \
  template class DenseTopK<T>;                                                                     \
  template void prepare_knn<T>(const Matrix<T>&, const Matrix<T>*, int64_t, bool, bool, bool,      \
                               const Launch&, const char*, KnnInputs<T>&);                         \
  template plan::KnnTiles dense_tiles<T>(int64_t, int64_t, int64_t, const Launch&, const char*);
MATALIGN_INSTANTIATE_DENSE(float)
MATALIGN_INSTANTIATE_DENSE(double)
#undef MATALIGN_INSTANTIATE_DENSE

template void knn_exact<float>(const Matrix<float>&, const Matrix<float>*, int64_t, bool, bool, bool,
                               float*, int64_t*, const Launch&);
template void knn_exact<double>(const Matrix<double>&, const Matrix<double>*, int64_t, bool, bool,
                                bool, double*, int64_t*, const Launch&);

}  // namespace cuda
}  // namespace matalign
