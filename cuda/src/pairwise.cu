// PairSums (RBF CKA, distance correlation) and RankCount (exact information imbalance) on the
// GPU: the tile GEMM of each space, then one block per tile row that reduces the row's pairs.
//
// Determinism: tiles are R rows × plan::kPairCols columns, column tiles starting at multiples
// of kPairCols whatever R is. A row's partial over a column tile is a cub::BlockReduce of
// per-thread sums over a fixed column assignment (fixed block size), added to the row's
// float64 accumulator by one thread, column tiles in increasing order. The M×M cross sums are
// kept per row and added on the host in row order. So a row's sums do not depend on R, which
// comes from tile_rows or from free device memory: every result is identical run to run and
// across tile_rows. It is not bitwise the CPU's (different summation order), but RankCount
// counts are (integers from bitwise-identical scores).
#include <cub/block/block_reduce.cuh>

#include <cmath>
#include <vector>

#include "common.cuh"
#include "matalign/cuda/plan.h"

namespace matalign {
namespace cuda {

namespace {

using detail::Buffer;
using detail::DevMat;

constexpr int kMaxSpaces = 8;
constexpr int kRowThreads = 256;

template <class T>
struct SpaceTiles {
  const T* g[kMaxSpaces];      // tile of inner products of each space, R × ldg
  const T* norms[kMaxSpaces];  // squared norms of each space, n
  double gamma[kMaxSpaces];
};

// M (the number of spaces) is a template parameter: the per-thread sums are fixed-size arrays
// with fully unrolled loops, held in registers (with a runtime M they sat in local memory).
template <class T, int M>
__global__ void __launch_bounds__(kRowThreads)
pair_kernel(SpaceTiles<T> t, bool rbf, int64_t ldg, int64_t C, int64_t r0, int64_t c0,
            int64_t n, double* rowsum_acc, double* cross_acc) {
  using Reduce = cub::BlockReduce<double, kRowThreads>;
  __shared__ typename Reduce::TempStorage tmp;
  constexpr int P = M * (M + 1) / 2;
  const int64_t r = blockIdx.x, i = r0 + r;
  double rs[M], cr[P];
#pragma unroll
  for (int m = 0; m < M; ++m) rs[m] = 0.0;
#pragma unroll
  for (int p = 0; p < P; ++p) cr[p] = 0.0;
  for (int64_t jj = threadIdx.x; jj < C; jj += kRowThreads) {
    const int64_t j = c0 + jj;
    if (j == i) continue;  // the diagonal is the caller's (0 for distance, 1 for rbf)
    double f[M];
#pragma unroll
    for (int m = 0; m < M; ++m) {
      const T s = t.g[m][r * ldg + jj] * T(2) - (t.norms[m][i] + t.norms[m][j]);  // −d², as CPU
      const double d2 = -static_cast<double>(s);
      f[m] = rbf ? exp(-t.gamma[m] * (d2 > 0.0 ? d2 : 0.0)) : (d2 > 0.0 ? sqrt(d2) : 0.0);
      rs[m] += f[m];
    }
#pragma unroll
    for (int a = 0, p = 0; a < M; ++a)
#pragma unroll
      for (int b = a; b < M; ++b) cr[p++] += f[a] * f[b];
  }
#pragma unroll
  for (int m = 0; m < M; ++m) {
    const double v = Reduce(tmp).Sum(rs[m]);
    if (threadIdx.x == 0) rowsum_acc[m * n + i] += v;
    __syncthreads();
  }
#pragma unroll
  for (int p = 0; p < P; ++p) {
    const double v = Reduce(tmp).Sum(cr[p]);
    if (threadIdx.x == 0) cross_acc[i * P + p] += v;
    __syncthreads();
  }
}

template <class T, int M>
void launch_pair(unsigned rows, cudaStream_t s, const SpaceTiles<T>& tiles, bool rbf, int64_t ldg,
                 int64_t C, int64_t r0, int64_t c0, int64_t n, double* racc, double* cacc) {
  pair_kernel<T, M><<<rows, kRowThreads, 0, s>>>(tiles, rbf, ldg, C, r0, c0, n, racc, cacc);
}

/// pair_kernel<T, M> for a runtime M in 1..kMaxSpaces.
template <class T>
void launch_pair(int M, unsigned rows, cudaStream_t s, const SpaceTiles<T>& tiles, bool rbf,
                 int64_t ldg, int64_t C, int64_t r0, int64_t c0, int64_t n, double* racc,
                 double* cacc) {
  static_assert(kMaxSpaces == 8, "one case per M below");
  switch (M) {
    case 1: launch_pair<T, 1>(rows, s, tiles, rbf, ldg, C, r0, c0, n, racc, cacc); break;
    case 2: launch_pair<T, 2>(rows, s, tiles, rbf, ldg, C, r0, c0, n, racc, cacc); break;
    case 3: launch_pair<T, 3>(rows, s, tiles, rbf, ldg, C, r0, c0, n, racc, cacc); break;
    case 4: launch_pair<T, 4>(rows, s, tiles, rbf, ldg, C, r0, c0, n, racc, cacc); break;
    case 5: launch_pair<T, 5>(rows, s, tiles, rbf, ldg, C, r0, c0, n, racc, cacc); break;
    case 6: launch_pair<T, 6>(rows, s, tiles, rbf, ldg, C, r0, c0, n, racc, cacc); break;
    case 7: launch_pair<T, 7>(rows, s, tiles, rbf, ldg, C, r0, c0, n, racc, cacc); break;
    default: launch_pair<T, 8>(rows, s, tiles, rbf, ldg, C, r0, c0, n, racc, cacc); break;
  }
}

template <class T>
__device__ __forceinline__ T fma_dev(T a, T b, T c);
template <>
__device__ __forceinline__ float fma_dev<float>(float a, float b, float c) { return __fmaf_rn(a, b, c); }
template <>
__device__ __forceinline__ double fma_dev<double>(double a, double b, double c) { return __fma_rn(a, b, c); }

// thr[i*k + t] = 2·<y_i, y_j> − (n_i + n_j), j = targets[i*k + t]: bitwise the tile's score.
template <class T>
__global__ void threshold_kernel(DevMat<T> y, const T* norms, const int64_t* targets, int64_t k,
                                 T* thr) {
  const int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (e >= y.rows * k) return;
  const int64_t i = e / k, j = targets[e];
  T ip = T(0);
  for (int64_t c = 0; c < y.cols; ++c) ip = fma_dev<T>(y.at(i, c), y.at(j, c), ip);
  thr[e] = ip * T(2) - (norms[i] + norms[j]);
}

// Targets compared per pass over a tile row: each score is read once per kRankQ targets
// (registers hold their thresholds and counts), not once per target.
constexpr int kRankQ = 8;

template <class T>
__global__ void __launch_bounds__(kRowThreads)
rank_kernel(const T* g, int64_t ldg, int64_t C, int64_t r0, int64_t c0, const T* norms,
            const T* thr, const int64_t* targets, int64_t k, long long* counts) {
  using Reduce = cub::BlockReduce<long long, kRowThreads>;
  __shared__ typename Reduce::TempStorage tmp;
  const int64_t r = blockIdx.x, i = r0 + r;
  const T ni = norms[i];
  for (int64_t q0 = 0; q0 < k; q0 += kRankQ) {
    const int64_t nq = k - q0 < kRankQ ? k - q0 : kRankQ;  // uniform across the block
    T th[kRankQ];
    int64_t tj[kRankQ];
    long long cnt[kRankQ];
#pragma unroll
    for (int q = 0; q < kRankQ; ++q) {
      th[q] = q < nq ? thr[i * k + q0 + q] : T(0);
      tj[q] = q < nq ? targets[i * k + q0 + q] : 0;
      cnt[q] = 0;
    }
    for (int64_t jj = threadIdx.x; jj < C; jj += kRowThreads) {
      const int64_t l = c0 + jj;
      if (l == i) continue;
      const T s = g[r * ldg + jj] * T(2) - (ni + norms[l]);
#pragma unroll
      for (int q = 0; q < kRankQ; ++q) cnt[q] += (s > th[q]) || (s == th[q] && l < tj[q]);
    }
#pragma unroll
    for (int q = 0; q < kRankQ; ++q) {
      if (q < nq) {
        const long long v = Reduce(tmp).Sum(cnt[q]);
        if (threadIdx.x == 0) counts[i * k + q0 + q] += v;
        __syncthreads();
      }
    }
  }
}

// Row tile: as given, else from half of the free memory (plan::pair_tile_rows); only the row
// count of a tile depends on it, never a row's summation order.
int64_t pick_rows(int64_t given, int64_t n, int64_t bytes_per_row) {
  const int64_t budget = given > 0 ? 0 : detail::free_bytes() / 2;
  return plan::pair_tile_rows(given, n, bytes_per_row, budget);
}

}  // namespace

template <class T>
void pair_sums(const std::vector<Matrix<T>>& spaces, PairFn fn, const std::vector<double>& gamma,
               double* rowsums, double* cross, const Launch& l) {
  static const char* fn_name = "pair_sums (cuda)";
  detail::check_launch(l, fn_name);
  detail::CallScope scope(l);
  const int64_t M = static_cast<int64_t>(spaces.size());
  MATALIGN_CHECK(M >= 1 && M <= kMaxSpaces, fn_name, ": need 1..", kMaxSpaces, " spaces, got ", M);
  const int64_t n = spaces[0].rows;
  for (int64_t m = 0; m < M; ++m) {
    detail::check_matrix(spaces[m], l, fn_name, "space");
    MATALIGN_CHECK(spaces[m].rows == n, fn_name, ": space ", m, " has ", spaces[m].rows,
                   " rows, space 0 has ", n);
  }
  MATALIGN_CHECK(n >= 2, fn_name, ": need at least 2 rows, got ", n);
  const bool rbf = fn == PairFn::rbf;
  if (rbf) MATALIGN_CHECK(static_cast<int64_t>(gamma.size()) == M, fn_name, ": need one gamma per space");
  const cudaStream_t s = detail::stream_of(l);

  std::vector<Buffer<T>> store(static_cast<size_t>(M)), norms(static_cast<size_t>(M));
  std::vector<Buffer<T>> centred_store(static_cast<size_t>(M));
  std::vector<Buffer<double>> mus(static_cast<size_t>(M));
  std::vector<DevMat<T>> dev;
  SpaceTiles<T> tiles{};
  for (int64_t m = 0; m < M; ++m) {
    // each space centred on its column mean (translation invariant; as the CPU engine)
    const DevMat<T> staged = detail::stage(spaces[m], store[m], l, "pair_sums input");
    dev.push_back(detail::centred(staged, staged.data == store[m].get(), store[m],
                                  centred_store[m], mus[m], s));
    norms[m].allocate(n, "squared norms");
    detail::squared_norms(dev[m], norms[m].get(), s);
    tiles.norms[m] = norms[m].get();
    tiles.gamma[m] = rbf ? gamma[m] : 0.0;
  }
  const int64_t C = std::min(plan::kPairCols, n);
  const int64_t P = pick_rows(l.tile_rows, n, M * C * int64_t(sizeof(T)));
  std::vector<Buffer<T>> g(static_cast<size_t>(M));
  for (int64_t m = 0; m < M; ++m) {
    g[m].allocate(mul_checked(P, C, "tile"), "pair_sums tile");
    tiles.g[m] = g[m].get();
  }
  const int64_t pairs = M * (M + 1) / 2;
  Buffer<double> racc(mul_checked(M, n, "row sums"), "row sums");
  Buffer<double> cacc(mul_checked(n, pairs, "cross sums"), "per-row cross sums");
  MATALIGN_CUDA_CHECK(cudaMemsetAsync(racc.get(), 0, M * n * sizeof(double), s));
  MATALIGN_CUDA_CHECK(cudaMemsetAsync(cacc.get(), 0, n * pairs * sizeof(double), s));

  const int64_t nb = detail::ceil_div(n, P), nc = detail::ceil_div(n, C), total = nb * nc;
  detail::poll(l, 0, total);
  for (int64_t rt = 0; rt < nb; ++rt) {
    const int64_t r0 = rt * P, rows = std::min(P, n - r0);
    for (int64_t ct = 0; ct < nc; ++ct) {
      const int64_t c0 = ct * C, cols = std::min(C, n - c0);
      for (int64_t m = 0; m < M; ++m) detail::gemm_tile(dev[m], r0, rows, dev[m], c0, cols, g[m].get(), C, s);
      launch_pair<T>(static_cast<int>(M), static_cast<unsigned>(rows), s, tiles, rbf, C, cols,
                     r0, c0, n, racc.get(), cacc.get());
      MATALIGN_CUDA_LAUNCHED("pair_kernel");
      if ((ct & 7) == 7 || ct + 1 == nc) {
        MATALIGN_CUDA_CHECK(cudaStreamSynchronize(s));
        detail::poll(l, rt * nc + ct + 1, total);
      }
    }
  }
  std::vector<double> per_row(static_cast<size_t>(n * pairs));
  MATALIGN_CUDA_CHECK(cudaMemcpyAsync(rowsums, racc.get(), M * n * sizeof(double), cudaMemcpyDeviceToHost, s));
  MATALIGN_CUDA_CHECK(cudaMemcpyAsync(per_row.data(), cacc.get(), n * pairs * sizeof(double),
                                      cudaMemcpyDeviceToHost, s));
  MATALIGN_CUDA_CHECK(cudaStreamSynchronize(s));
  std::vector<double> sum(static_cast<size_t>(pairs), 0.0);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t p = 0; p < pairs; ++p) sum[p] += per_row[static_cast<size_t>(i * pairs + p)];
  int64_t p = 0;
  for (int64_t a = 0; a < M; ++a)
    for (int64_t b = a; b < M; ++b, ++p) cross[a * M + b] = cross[b * M + a] = sum[p];
}

template <class T>
void rank_count(const Matrix<T>& y, const int64_t* targets, int64_t k, int64_t* counts,
                const Launch& l) {
  static const char* fn = "rank_count (cuda)";
  detail::check_launch(l, fn);
  detail::CallScope scope(l);
  detail::check_matrix(y, l, fn, "y");
  const int64_t n = y.rows;
  MATALIGN_CHECK(n >= 2, fn, ": need n >= 2 rows, got ", n);
  MATALIGN_CHECK(k >= 1 && k <= n - 1, fn, ": k must be in 1..", n - 1, ", got ", k);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t t = 0; t < k; ++t) {
      const int64_t j = targets[i * k + t];
      MATALIGN_CHECK(j >= 0 && j < n && j != i, fn, ": target ", t, " of row ", i, " is ", j,
                     " (must be in [0, ", n, ") and != ", i, ")");
    }
  const int64_t nk = mul_checked(n, k, "counts");
  const cudaStream_t s = detail::stream_of(l);
  Buffer<T> store, centred_store;
  Buffer<double> mu;
  const DevMat<T> staged = detail::stage(y, store, l, "rank_count input");
  // centred on the column mean, as the CPU engine (distance ranks are translation invariant)
  const DevMat<T> dy = detail::centred(staged, staged.data == store.get(), store, centred_store, mu, s);
  Buffer<T> norms(n, "squared norms");
  detail::squared_norms(dy, norms.get(), s);
  Buffer<int64_t> tg(nk, "targets");
  MATALIGN_CUDA_CHECK(cudaMemcpyAsync(tg.get(), targets, nk * sizeof(int64_t), cudaMemcpyHostToDevice, s));
  Buffer<T> thr(nk, "thresholds");
  threshold_kernel<T><<<detail::grid_for(nk, 256), 256, 0, s>>>(dy, norms.get(), tg.get(), k, thr.get());
  MATALIGN_CUDA_LAUNCHED("threshold_kernel");
  Buffer<long long> cnt(nk, "counts");
  MATALIGN_CUDA_CHECK(cudaMemsetAsync(cnt.get(), 0, nk * sizeof(long long), s));

  const int64_t C = std::min(plan::kPairCols, n);
  const int64_t P = pick_rows(l.tile_rows, n, C * int64_t(sizeof(T)));
  Buffer<T> g(mul_checked(P, C, "tile"), "rank_count tile");
  const int64_t nb = detail::ceil_div(n, P), nc = detail::ceil_div(n, C), total = nb * nc;
  detail::poll(l, 0, total);
  for (int64_t rt = 0; rt < nb; ++rt) {
    const int64_t r0 = rt * P, rows = std::min(P, n - r0);
    for (int64_t ct = 0; ct < nc; ++ct) {
      const int64_t c0 = ct * C, cols = std::min(C, n - c0);
      detail::gemm_tile(dy, r0, rows, dy, c0, cols, g.get(), C, s);
      rank_kernel<T><<<static_cast<unsigned>(rows), kRowThreads, 0, s>>>(
          g.get(), C, cols, r0, c0, norms.get(), thr.get(), tg.get(), k, cnt.get());
      MATALIGN_CUDA_LAUNCHED("rank_kernel");
      if ((ct & 7) == 7 || ct + 1 == nc) {
        MATALIGN_CUDA_CHECK(cudaStreamSynchronize(s));
        detail::poll(l, rt * nc + ct + 1, total);
      }
    }
  }
  static_assert(sizeof(long long) == sizeof(int64_t), "64-bit counts");
  MATALIGN_CUDA_CHECK(cudaMemcpyAsync(counts, cnt.get(), nk * sizeof(int64_t), cudaMemcpyDeviceToHost, s));
  MATALIGN_CUDA_CHECK(cudaStreamSynchronize(s));
}

template void pair_sums<float>(const std::vector<Matrix<float>>&, PairFn, const std::vector<double>&,
                               double*, double*, const Launch&);
template void pair_sums<double>(const std::vector<Matrix<double>>&, PairFn, const std::vector<double>&,
                                double*, double*, const Launch&);
template void rank_count<float>(const Matrix<float>&, const int64_t*, int64_t, int64_t*, const Launch&);
template void rank_count<double>(const Matrix<double>&, const int64_t*, int64_t, int64_t*, const Launch&);

}  // namespace cuda
}  // namespace matalign
