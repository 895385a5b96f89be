// Exact kNN through the int8 tensor-core screen (docs/ARCHITECTURE.md, "GPU int8 screen"):
// the GPU form of the CPU engine's integer screen, returning knn_exact's graph bit for bit.
//
// Plan (the pair/line/merge rules are screen_plan.h's host/device functions, which the host
// emulation in tests/cpp/test_cuda_screen.cpp runs too):
//  1. Seed. Every row's exact top-k against columns [0, S) (S = seed_columns(n, k)) by the
//     dense path (knn.cu); the self graph's rows [0, S) are searched against all columns
//     there. Every row's list (raw scores, sorted by score desc, index asc) is then full, so
//     its k-th entry is a finite threshold from the first screened tile on.
//  2. Screen. Tiles over the remaining pairs: self graphs the tiles J >= I of [S, n) (each
//     pair offered to both rows), query graphs all tiles of queries × [S, n). One kernel per
//     tile: int8 WMMA (m16n16k16, int32 accumulation: the exact code products <q_i, q_j>, as
//     VNNI on the CPU) on 64 × 64 output blocks, and in the epilogue the shared bounds of
//     screen_bound.h widened by the re-scoring slack; a pair survives for row i when its
//     upper bound reaches the k-th best exact score of row i's list as it stood before the
//     tile (screen_plan::survives). Survivors' indices go to the row's line (atomic slot
//     counter, at most `slots` stored); no tile of scores is written.
//  3. Merge (threshold update). One block per line: re-score each survivor with the exact
//     path's FMA chain (dimension order from +0, l2 as 2·ip − (n_i + n_j), the same code as
//     the dense path's GEMM + select), drop those that do not rank before the list's current
//     k-th entry, sort the rest by rank and merge them with the list by binary-search
//     positions. The list's k-th entry is the next tile's threshold for that row: it only
//     rises, and it is always the k-th best exact score among k distinct columns seen, so a
//     column of the final top-k (score >= that k-th score, ties included) is never filtered.
//     A line whose survivors overflowed its slots is re-scored against all of the tile's
//     columns for it, in chunks of `slots` (screen_plan::line_columns).
// Every pair of the graph is scored exactly once (seed or screen) per row it feeds, and the
// kept scores are the dense path's own numbers, so the result is knn_exact's graph.
#include <mma.h>

#include <cub/block/block_scan.cuh>

#include <cstring>
#include <limits>

#include "common.cuh"
#include "knn_dense.cuh"
#include "matalign/cuda/plan.h"
#include "matalign/cuda/screen_plan.h"
#include "matalign/detail/screen_bound.h"

namespace matalign {
namespace cuda {

namespace {

namespace sp = screen_plan;
using detail::Buffer;
using detail::DevMat;
using matalign::detail::ScreenTerms;

constexpr int kTerms = kScreenTerms;  // s, n, t, e, g, nhi, nlo, c, dc, w per row
constexpr int kBlk = 64;              // output block edge (rows and columns)
constexpr int kSlices = 4;            // 16-byte depth slices staged per step
constexpr int kDepthStep = 16 * kSlices;
constexpr int kScreenThreads = 128;   // 4 warps, each 32 × 32 outputs (2 × 2 fragments)
constexpr int kLdc = kBlk + 4;        // int32 accumulator staging stride (16-byte multiple)
constexpr int kMergeThreads = 256;

/// One side's quantised rows on the device: codes with a row pitch of `pitch` bytes (a
/// multiple of kDepthStep, zero-padded past dp) and kTerms floats per row.
struct SideDev {
  const int8_t* q;
  int64_t pitch;
  const float* terms;
};

__device__ __forceinline__ ScreenTerms terms_at(const float* p) {
  return ScreenTerms{p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7], p[8]};
}

template <class T>
__device__ __forceinline__ T fma_t(T a, T b, T c);
template <>
__device__ __forceinline__ float fma_t<float>(float a, float b, float c) { return __fmaf_rn(a, b, c); }
template <>
__device__ __forceinline__ double fma_t<double>(double a, double b, double c) { return __fma_rn(a, b, c); }

__device__ __forceinline__ void push(uint32_t* surv, int32_t* cnt, int64_t line, int64_t slots,
                                     int64_t index) {
  const int32_t pos = atomicAdd(cnt + line, 1);
  if (pos < slots) surv[line * slots + pos] = static_cast<uint32_t>(index);
}

// One 64 × 64 block of tile t: exact int32 code products by int8 WMMA, then the epilogue.
// Shared memory: the codes in 16-byte depth slices ([slice][row][16], so every fragment
// pointer is 256-bit aligned with a 16-byte leading dimension), the accumulators, and the
// block's row/column terms and thresholds.
template <class T>
__global__ void __launch_bounds__(kScreenThreads)
screen_kernel(SideDev rs, SideDev cs, sp::Tile t, const T* lkey, int64_t k, bool l2, bool excl,
              uint32_t* surv, int32_t* cnt, int64_t slots) {
  using namespace nvcuda;
  __shared__ __align__(32) signed char As[kSlices][kBlk][16];
  __shared__ __align__(32) signed char Bs[kSlices][kBlk][16];
  __shared__ __align__(32) int32_t Cs[kBlk][kLdc];
  __shared__ float Rt[kBlk][kTerms + 1], Ct[kBlk][kTerms + 1];
  __shared__ T Rthr[kBlk], Cthr[kBlk];
  const int64_t bi = t.r0 + int64_t(blockIdx.y) * kBlk, bj = t.c0 + int64_t(blockIdx.x) * kBlk;
  // Diagonal tiles: a block entirely below the diagonal holds no offered pair (uniform exit).
  if (t.diagonal && bj + kBlk - 1 < bi) return;
  const int warp = threadIdx.x / 32;
  const int wr = (warp / 2) * 32, wc = (warp % 2) * 32;
  wmma::fragment<wmma::accumulator, 16, 16, 16, int> acc[2][2];
#pragma unroll
  for (int a = 0; a < 2; ++a)
#pragma unroll
    for (int b = 0; b < 2; ++b) wmma::fill_fragment(acc[a][b], 0);
  for (int64_t k0 = 0; k0 < rs.pitch; k0 += kDepthStep) {
    for (int e = threadIdx.x; e < kBlk * kSlices; e += kScreenThreads) {
      const int r = e / kSlices, sl = e % kSlices;  // consecutive threads: one row's 64 bytes
      const int64_t gi = bi + r, gj = bj + r;
      int4 va = make_int4(0, 0, 0, 0), vb = make_int4(0, 0, 0, 0);
      if (gi < t.r1) va = *reinterpret_cast<const int4*>(rs.q + gi * rs.pitch + k0 + sl * 16);
      if (gj < t.c1) vb = *reinterpret_cast<const int4*>(cs.q + gj * cs.pitch + k0 + sl * 16);
      *reinterpret_cast<int4*>(&As[sl][r][0]) = va;
      *reinterpret_cast<int4*>(&Bs[sl][r][0]) = vb;
    }
    __syncthreads();
#pragma unroll
    for (int sl = 0; sl < kSlices; ++sl) {
      wmma::fragment<wmma::matrix_a, 16, 16, 16, signed char, wmma::row_major> fa[2];
      wmma::fragment<wmma::matrix_b, 16, 16, 16, signed char, wmma::col_major> fb[2];
#pragma unroll
      for (int a = 0; a < 2; ++a) wmma::load_matrix_sync(fa[a], &As[sl][wr + 16 * a][0], 16);
#pragma unroll
      for (int b = 0; b < 2; ++b) wmma::load_matrix_sync(fb[b], &Bs[sl][wc + 16 * b][0], 16);
#pragma unroll
      for (int a = 0; a < 2; ++a)
#pragma unroll
        for (int b = 0; b < 2; ++b) wmma::mma_sync(acc[a][b], fa[a], fb[b], acc[a][b]);
    }
    __syncthreads();
  }
#pragma unroll
  for (int a = 0; a < 2; ++a)
#pragma unroll
    for (int b = 0; b < 2; ++b)
      wmma::store_matrix_sync(&Cs[wr + 16 * a][wc + 16 * b], acc[a][b], kLdc, wmma::mem_row_major);
  for (int e = threadIdx.x; e < kBlk * kTerms; e += kScreenThreads) {
    const int r = e / kTerms, c = e % kTerms;
    const int64_t gi = bi + r, gj = bj + r;
    Rt[r][c] = gi < t.r1 ? rs.terms[gi * kTerms + c] : 0.0f;
    Ct[r][c] = gj < t.c1 ? cs.terms[gj * kTerms + c] : 0.0f;
  }
  for (int r = threadIdx.x; r < kBlk; r += kScreenThreads) {
    const int64_t gi = bi + r, gj = bj + r;
    Rthr[r] = gi < t.r1 ? lkey[gi * k + k - 1] : T(0);
    Cthr[r] = (t.mirror && gj < t.c1) ? lkey[gj * k + k - 1] : T(0);
  }
  __syncthreads();
  for (int e = threadIdx.x; e < kBlk * kBlk; e += kScreenThreads) {
    const int r = e / kBlk, c = e % kBlk;  // consecutive threads: consecutive columns
    const int64_t i = bi + r, j = bj + c;
    if (i >= t.r1 || j >= t.c1) continue;
    const bool to_row = sp::offers_row(t, i, j, excl), to_col = sp::offers_mirror(t, i, j);
    if (!to_row && !to_col) continue;
    const ScreenTerms R = terms_at(Rt[r]), C = terms_at(Ct[c]);
    const float approx = matalign::detail::screen_approx(Cs[r][c], C.s, R.s);
    float lb = 0.0f, ub = 0.0f;
    matalign::detail::screen_pair_bounds(R, C, approx, l2, lb, ub);
    matalign::detail::screen_widen(matalign::detail::screen_rescore_slack(Rt[r][9], Ct[c][9], l2), lb, ub);
    if (to_row && sp::survives(ub, Rthr[r])) push(surv, cnt, sp::row_line(t, i), slots, j);
    if (to_col && sp::survives(ub, Cthr[c])) push(surv, cnt, sp::mirror_line(t, j), slots, i);
  }
}

// The exact path's score of (row g of a, row j of b): the dense GEMM's chain and select's
// l2 form, so the number is bitwise the one knn_exact ranks.
template <class T>
__device__ T exact_score(const DevMat<T>& a, int64_t g, const DevMat<T>& b, int64_t j, const T* na,
                         const T* nb, bool l2) {
  T s = T(0);
  for (int64_t d = 0; d < a.cols; ++d) s = fma_t<T>(a.at(g, d), b.at(j, d), s);
  if (l2) s = s * T(2) - (na[g] + nb[j]);
  return s + T(0);
}

struct MergeScratch {
  void* cand_key;   // lines × slots T
  uint32_t* cand_idx;
  void* sort_key;   // lines × slots T
  uint32_t* sort_idx;
  void* out_key;    // lines × k T
  int64_t* out_idx;
  unsigned long long* stats;  // [survivors, overflowed lines, merged candidates]
};

// The merge of one line (see the file comment, step 3). Rows of the tile (lines below the
// tile's row count) are rows of `ra` (queries, or X for self graphs) scored against rows of
// `cx` (X); mirror lines are rows of X scored against rows of X.
template <class T>
__global__ void __launch_bounds__(kMergeThreads, 1)
merge_kernel(sp::Tile t, DevMat<T> ra, DevMat<T> cx, const T* norm_r, const T* norm_c, bool l2,
             bool excl, T* lkey, int64_t* lidx, int64_t k, const uint32_t* surv, const int32_t* cnt,
             int64_t slots, MergeScratch ms) {
  using Scan = cub::BlockScan<int, kMergeThreads>;
  __shared__ typename Scan::TempStorage scan_tmp;
  const int64_t line = blockIdx.x;
  const int32_t count = cnt[line];
  if (count == 0) return;  // uniform
  const bool is_row = line < t.r1 - t.r0;
  const int64_t g = sp::line_row(t, line);
  const DevMat<T> a = is_row ? ra : cx;
  const T* na = is_row ? norm_r : norm_c;
  // pairs of a row line are (row g, column j); of a mirror line (column g, row j): both
  // scored as (g, j), bitwise the same number (the chain is symmetric in its two rows)
  const DevMat<T> b = is_row ? cx : ra;
  const T* nb = is_row ? norm_c : norm_r;
  T* key = lkey + g * k;
  int64_t* idx = lidx + g * k;
  T* ck = static_cast<T*>(ms.cand_key) + line * slots;
  uint32_t* ci = ms.cand_idx + line * slots;
  T* sk = static_cast<T*>(ms.sort_key) + line * slots;
  uint32_t* si = ms.sort_idx + line * slots;
  T* ok = static_cast<T*>(ms.out_key) + line * k;
  int64_t* oi = ms.out_idx + line * k;
  const bool overflow = count > slots;
  int64_t cb = 0, ce = 0;
  sp::line_columns(t, line, cb, ce);
  if (threadIdx.x == 0) {
    atomicAdd(ms.stats, static_cast<unsigned long long>(count));
    if (overflow) atomicAdd(ms.stats + 1, 1ull);
  }
  const int64_t chunks = overflow ? (ce - cb + slots - 1) / slots : 1;
  for (int64_t ch = 0; ch < chunks; ++ch) {
    const int64_t rest = ce - cb - ch * slots;
    const int64_t nc = overflow ? (rest < slots ? rest : slots) : count;
    const T kth = key[k - 1];
    const int64_t kth_i = idx[k - 1];
    int base = 0;
    for (int64_t c = 0; c < nc; c += kMergeThreads) {
      const int64_t u = c + threadIdx.x;
      int take = 0;
      T f = T(0);
      int64_t j = 0;
      if (u < nc) {
        j = overflow ? cb + ch * slots + u : static_cast<int64_t>(surv[line * slots + u]);
        // the overflow range of a diagonal line holds the row itself (offers_row)
        if (!(overflow && excl && j == g)) {
          f = exact_score(a, g, b, j, na, nb, l2);
          take = sp::ranks_before(f, j, kth, kth_i) ? 1 : 0;
        }
      }
      int pos = 0, total = 0;
      Scan(scan_tmp).ExclusiveSum(take, pos, total);
      if (take) {
        ck[base + pos] = f;
        ci[base + pos] = static_cast<uint32_t>(j);
      }
      base += total;
      __syncthreads();  // scan_tmp is reused by the next chunk
    }
    const int64_t cn = base;  // uniform
    if (cn == 0) continue;
    for (int64_t u = threadIdx.x; u < cn; u += kMergeThreads) {
      const int64_t r = sp::rank_among(ck, ci, cn, u);
      sk[r] = ck[u];
      si[r] = ci[u];
    }
    __syncthreads();
    for (int64_t q = threadIdx.x; q < k; q += kMergeThreads) {
      const int64_t p = sp::merged_pos_list(key, idx, q, sk, si, cn);
      if (p < k) {
        ok[p] = key[q];
        oi[p] = idx[q];
      }
    }
    for (int64_t u = threadIdx.x; u < cn; u += kMergeThreads) {
      const int64_t p = sp::merged_pos_cand(sk, si, u, key, idx, k);
      if (p < k) {
        ok[p] = sk[u];
        oi[p] = si[u];
      }
    }
    if (threadIdx.x == 0) atomicAdd(ms.stats + 2, static_cast<unsigned long long>(cn));
    __syncthreads();
    for (int64_t q = threadIdx.x; q < k; q += kMergeThreads) {
      key[q] = ok[q];
      idx[q] = oi[q];
    }
    __syncthreads();
  }
}

template <class T>
__global__ void lists_out_kernel(const T* lkey, const int64_t* lidx, int64_t total, bool l2,
                                 T* values, int64_t* indices) {
  const int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (e >= total) return;
  const T s = lkey[e];
  values[e] = l2 ? (-s > T(0) ? -s : T(0)) : s;
  indices[e] = lidx[e];
}

/// A side's codes and terms on the device (codes re-pitched to a multiple of kDepthStep).
struct SideUpload {
  Buffer<int8_t> q;
  Buffer<float> terms;
  int64_t pitch = 0;
  SideDev dev() const { return SideDev{q.get(), pitch, terms.get()}; }
};

void upload_side(const ScreenSide& h, int64_t rows, int64_t d, SideUpload& out, cudaStream_t s,
                 const char* fn, const char* name) {
  MATALIGN_CHECK(h.q != nullptr && h.terms != nullptr && h.rows == rows && h.dp >= d &&
                     h.dp <= d + 64,
                 fn, ": ", name, " screen side has ", h.rows, " rows of depth ", h.dp,
                 "; expected ", rows, " rows of depth >= ", d);
  out.pitch = (h.dp + kDepthStep - 1) / kDepthStep * kDepthStep;
  out.q.allocate(mul_checked(rows, out.pitch, "screen codes"), "screen codes");
  out.terms.allocate(mul_checked(rows, int64_t(kTerms), "screen terms"), "screen terms");
  MATALIGN_CUDA_CHECK(cudaMemsetAsync(out.q.get(), 0, static_cast<size_t>(rows * out.pitch), s));
  MATALIGN_CUDA_CHECK(cudaMemcpy2DAsync(out.q.get(), static_cast<size_t>(out.pitch), h.q,
                                        static_cast<size_t>(h.dp), static_cast<size_t>(h.dp),
                                        static_cast<size_t>(rows), cudaMemcpyHostToDevice, s));
  MATALIGN_CUDA_CHECK(cudaMemcpyAsync(out.terms.get(), h.terms, static_cast<size_t>(rows * kTerms) * sizeof(float),
                                      cudaMemcpyHostToDevice, s));
  MATALIGN_CUDA_CHECK(cudaStreamSynchronize(s));  // the host arrays may go after the call
}

}  // namespace

template <class T>
void knn_screen(const Matrix<T>& x, const Matrix<T>* queries, int64_t k, bool ip, bool exclude_self,
                const ScreenSide& xs, const ScreenSide* qs, T* values, int64_t* indices,
                const Launch& l, ScreenStats* stats) {
  static const char* fn = "knn screen (cuda)";
  detail::check_launch(l, fn);
  plan::check_tiles(l.tile_rows, l.tile_cols, fn);
  detail::CallScope scope(l);
  MATALIGN_CHECK(values != nullptr && indices != nullptr, fn, ": null output buffer");
  MATALIGN_CHECK(queries == nullptr || qs != nullptr, fn, ": queries need their screen side");
  KnnInputs<T> p;
  prepare_knn(x, queries, k, ip, exclude_self, false, l, fn, p);
  const cudaStream_t s = detail::stream_of(l);
  const int64_t n = p.n, m = p.m, d = x.cols;
  MATALIGN_CHECK(n < int64_t(0xFFFFFFFF), fn, ": the screen's indices are 32-bit; N = ", n);
  const int64_t S = sp::seed_columns(n, k);
  if (stats) *stats = ScreenStats{};

  // 1. Seed: the dense path into the device lists.
  Buffer<T> lkey(mul_checked(m, k, "screen lists"), "screen lists");
  Buffer<int64_t> lidx(m * k, "screen lists");
  const int64_t TR = std::min<int64_t>(l.tile_rows > 0 ? l.tile_rows : 4096, p.self ? n : m);
  const int64_t TC = p.self ? TR : std::min<int64_t>(l.tile_cols > 0 ? l.tile_cols : 4096, n);
  std::vector<sp::Tile> tiles;
  if (S < n) {
    if (p.self) {
      tiles = sp::self_tiles(n - S, TR);
    } else {
      tiles = sp::query_tiles(m, n - S, TR, TC);
    }
    for (sp::Tile& t : tiles) {
      if (p.self) t.r0 += S, t.r1 += S;
      t.c0 += S, t.c1 += S;
    }
  }
  {
    const plan::KnnTiles dt = dense_tiles<T>(m, n, k, l, fn);
    DenseTopK<T> dense(dt, k, s);
    // rows searched against all columns (self rows [0, S); everything when S == n) and the
    // rows seeded with [0, S)
    const int64_t full_rows = (p.self || S == n) ? (S == n ? m : S) : 0;
    const int64_t rt_full = detail::ceil_div(full_rows, dt.rows);
    const int64_t rt_seed = detail::ceil_div(m - full_rows, dt.rows);
    const int64_t total = rt_full * detail::ceil_div(n, dt.cols) + rt_seed * detail::ceil_div(S, dt.cols) +
                          static_cast<int64_t>(tiles.size());
    int64_t done = 0;
    detail::poll(l, 0, total);
    for (int64_t r0 = 0; r0 < full_rows; r0 += dt.rows) {
      const int64_t rows = std::min(dt.rows, full_rows - r0);
      dense.run(p, r0, rows, n, l, done, total);
      dense.to_device(rows, lkey.get() + r0 * k, lidx.get() + r0 * k);
    }
    for (int64_t r0 = full_rows; r0 < m; r0 += dt.rows) {
      const int64_t rows = std::min(dt.rows, m - r0);
      dense.run(p, r0, rows, S, l, done, total);
      dense.to_device(rows, lkey.get() + r0 * k, lidx.get() + r0 * k);
    }
    if (!tiles.empty()) {
      // 2./3. the screened tiles
      SideUpload xu, qu;
      upload_side(xs, n, d, xu, s, fn, "X");
      if (!p.self) upload_side(*qs, m, d, qu, s, fn, "queries");
      const SideDev rdev = p.self ? xu.dev() : qu.dev(), cdev = xu.dev();
      const int64_t edge = std::max(TR, TC);
      const int64_t slots = sp::survivor_slots(k, edge);
      const int64_t max_lines = p.self ? 2 * TR : TR;
      Buffer<uint32_t> surv(mul_checked(max_lines, slots, "screen survivors"), "screen survivors");
      Buffer<int32_t> cnt(max_lines, "screen survivor counts");
      Buffer<T> ck(max_lines * slots, "screen candidates"), sk(max_lines * slots, "screen candidates");
      Buffer<uint32_t> ci(max_lines * slots, "screen candidates"), si(max_lines * slots, "screen candidates");
      Buffer<T> ok(mul_checked(max_lines, k, "screen merge"), "screen merge");
      Buffer<int64_t> oi(max_lines * k, "screen merge");
      Buffer<unsigned long long> st(3, "screen counters");
      MATALIGN_CUDA_CHECK(cudaMemsetAsync(st.get(), 0, 3 * sizeof(unsigned long long), s));
      const MergeScratch ms{ck.get(), ci.get(), sk.get(), si.get(), ok.get(), oi.get(), st.get()};
      for (size_t ti = 0; ti < tiles.size(); ++ti) {
        const sp::Tile& t = tiles[ti];
        const int64_t lines = sp::tile_lines(t);
        MATALIGN_CUDA_CHECK(cudaMemsetAsync(cnt.get(), 0, static_cast<size_t>(lines) * sizeof(int32_t), s));
        const dim3 grid(static_cast<unsigned>(detail::ceil_div(t.c1 - t.c0, kBlk)),
                        static_cast<unsigned>(detail::ceil_div(t.r1 - t.r0, kBlk)));
        screen_kernel<T><<<grid, kScreenThreads, 0, s>>>(rdev, cdev, t, lkey.get(), k, p.l2, p.excl,
                                                          surv.get(), cnt.get(), slots);
        MATALIGN_CUDA_LAUNCHED("screen_kernel");
        merge_kernel<T><<<static_cast<unsigned>(lines), kMergeThreads, 0, s>>>(
            t, p.dq, p.dx, p.norm_r, p.norm_c, p.l2, p.excl, lkey.get(), lidx.get(), k, surv.get(),
            cnt.get(), slots, ms);
        MATALIGN_CUDA_LAUNCHED("merge_kernel");
        ++done;
        if ((ti & 3) == 3 || ti + 1 == tiles.size()) {
          MATALIGN_CUDA_CHECK(cudaStreamSynchronize(s));  // keeps Ctrl-C and progress live
          detail::poll(l, done, total);
        }
      }
      unsigned long long counters[3] = {0, 0, 0};
      MATALIGN_CUDA_CHECK(cudaMemcpyAsync(counters, st.get(), sizeof(counters), cudaMemcpyDeviceToHost, s));
      MATALIGN_CUDA_CHECK(cudaStreamSynchronize(s));
      if (stats) {
        stats->tiles = static_cast<int64_t>(tiles.size());
        stats->survivors = static_cast<int64_t>(counters[0]);
        stats->overflow_lines = static_cast<int64_t>(counters[1]);
        stats->merged = static_cast<int64_t>(counters[2]);
      }
    }
  }
  if (stats) stats->seed_columns = S;

  // 4. The lists as the graph (values as knn_exact returns them).
  Buffer<T> out_v(m * k, "kNN values");
  Buffer<int64_t> out_i(m * k, "kNN indices");
  lists_out_kernel<T><<<detail::grid_for(m * k, 256), 256, 0, s>>>(lkey.get(), lidx.get(), m * k, p.l2,
                                                                   out_v.get(), out_i.get());
  MATALIGN_CUDA_LAUNCHED("lists_out_kernel");
  MATALIGN_CUDA_CHECK(cudaMemcpyAsync(values, out_v.get(), static_cast<size_t>(m * k) * sizeof(T),
                                      cudaMemcpyDeviceToHost, s));
  MATALIGN_CUDA_CHECK(cudaMemcpyAsync(indices, out_i.get(), static_cast<size_t>(m * k) * sizeof(int64_t),
                                      cudaMemcpyDeviceToHost, s));
  MATALIGN_CUDA_CHECK(cudaStreamSynchronize(s));
}

template void knn_screen<float>(const Matrix<float>&, const Matrix<float>*, int64_t, bool, bool,
                                const ScreenSide&, const ScreenSide*, float*, int64_t*,
                                const Launch&, ScreenStats*);
template void knn_screen<double>(const Matrix<double>&, const Matrix<double>*, int64_t, bool, bool,
                                 const ScreenSide&, const ScreenSide*, double*, int64_t*,
                                 const Launch&, ScreenStats*);

}  // namespace cuda
}  // namespace matalign
