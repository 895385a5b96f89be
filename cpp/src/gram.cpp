// Feature-space Gram for linear CKA (gram.h). Each row block is converted to float64 and
// shifted, packed transposed (features become the GEMM's rows, the block's rows its reduction
// axis), and multiplied with the float64 micro-kernel, upper triangle only. Block partials are
// added to the result in block order inside an ordered section, which costs D² adds per block
// against D²·rows multiply-adds and makes the sum independent of the thread count.
#include "matalign/gram.h"

#include <algorithm>
#include <atomic>
#include <exception>
#include <mutex>
#include <vector>

#include "kernels.h"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace matalign {

namespace {
using detail::round_up;

// Rows per block: long enough for the micro-kernel to run at speed (the reduction axis), short
// enough that the packed block (D × rows doubles, twice) stays in L2/L3.
int64_t auto_block_rows(int64_t D) {
  const int64_t budget = 4 * 1024 * 1024 / 8;  // doubles of the two packed copies
  int64_t b = budget / std::max<int64_t>(1, 2 * D);
  b = std::max<int64_t>(64, std::min<int64_t>(1024, b));
  return b / 16 * 16;
}

// Doubles of one thread's scratch: the converted block (B × D), its two packings, the block
// Gram and the block column sums.
int64_t gram_per_thread(int64_t B, int64_t D, int mr, int nr) {
  const int64_t pa_elems = mul_checked(round_up(D, mr), B, "pack");
  const int64_t pb_elems = mul_checked(round_up(D, nr), B, "pack");
  return mul_checked(B, D, "block") + pa_elems + pb_elems + mul_checked(D, D, "gram") + D;
}
}  // namespace

int64_t gram_workspace_bytes(int64_t n, const std::vector<int64_t>& dims, int n_threads) {
  MATALIGN_CHECK(n >= 1, "gram_workspace_bytes: n must be >= 1, got ", n);
  MATALIGN_CHECK(!dims.empty(), "gram_workspace_bytes: need at least one space");
  MATALIGN_CHECK(n_threads >= 0 && n_threads <= kMaxThreads,
                 "gram_workspace_bytes: n_threads must be in 0..", kMaxThreads);
  int64_t D = 0;
  for (int64_t d : dims) {
    MATALIGN_CHECK(d >= 1, "gram_workspace_bytes: every dimension must be >= 1");
    D += d;
  }
  const int nt = std::max(1, n_threads);
  const detail::Kernels<double> K = detail::kernels_for<double>(simd_best());
  const int64_t B = std::min(auto_block_rows(D), n);
  const int64_t outputs = D * D * 8 + D * 8 + D;
  const int64_t offsets = (static_cast<int64_t>(dims.size()) + 1) * 8;
  // per thread: the scratch above and the running min/max (float64 at most)
  return outputs + offsets + nt * (gram_per_thread(B, D, K.mr, K.nr) * 8 + 2 * D * 8 + 1);
}

template <class T>
void shifted_gram(const std::vector<MatrixView<T>>& spaces, const double* shift, double* gram,
                  double* colsum, uint8_t* constant, const GramOptions& opt) {
  const int64_t M = static_cast<int64_t>(spaces.size());
  MATALIGN_CHECK(M >= 1, "shifted_gram: need at least one space");
  const int64_t n = spaces[0].rows;
  MATALIGN_CHECK(n >= 1, "shifted_gram: need at least one row");
  std::vector<int64_t> off(static_cast<size_t>(M + 1), 0);
  for (int64_t m = 0; m < M; ++m) {
    MATALIGN_CHECK(spaces[m].rows == n, "shifted_gram: space ", m, " has ", spaces[m].rows,
                   " rows, space 0 has ", n);
    MATALIGN_CHECK(spaces[m].cols > 0, "shifted_gram: space ", m, " has no columns");
    off[m + 1] = off[m] + spaces[m].cols;
  }
  const int64_t D = off[M];
  MATALIGN_CHECK(D <= (int64_t(1) << 16), "shifted_gram: ", D, " columns in all is too many");
  MATALIGN_CHECK(opt.block_rows >= 0 && opt.block_rows <= (int64_t(1) << 20),
                 "shifted_gram: block_rows must be in 0..2^20");
  const Simd simd = simd_resolve(opt.simd);
  MATALIGN_CHECK(simd_supported(simd), "shifted_gram: SIMD level ", simd_name(simd), " unavailable");
  const detail::Kernels<double> K = detail::kernels_for<double>(simd);
  const int nt = resolve_threads(opt.n_threads, double(n) * double(D) * double(D));
  const int64_t B = std::min(opt.block_rows > 0 ? opt.block_rows : auto_block_rows(D), n);
  const int64_t nblocks = (n + B - 1) / B;
  // Row chunk of the output per gemm call: a multiple of both micro-panel sizes.
  const int64_t R = K.mr * std::max<int64_t>(1, 96 / K.mr);
  const int64_t DD = mul_checked(D, D, "gram");

  // Per-thread scratch: the converted block (B × D), its two packings, the block Gram, the
  // block column sums, and running per-column min/max (exact constancy test in T).
  const int64_t pa_elems = mul_checked(round_up(D, K.mr), B, "pack");
  const int64_t pb_elems = mul_checked(round_up(D, K.nr), B, "pack");
  const int64_t per_thread = gram_per_thread(B, D, K.mr, K.nr);
  std::vector<double> scratch(static_cast<size_t>(mul_checked(nt, per_thread, "gram scratch")));
  std::vector<T> lo(static_cast<size_t>(nt * D)), hi(static_cast<size_t>(nt * D));
  std::vector<uint8_t> seen(static_cast<size_t>(nt), 0);

  std::fill(gram, gram + DD, 0.0);
  std::fill(colsum, colsum + D, 0.0);

  std::exception_ptr error;
  std::mutex error_mutex;
  std::atomic<bool> stop{false};
  std::atomic<int64_t> done_blocks{0};
  const auto fail = [&](std::exception_ptr e) {
    std::lock_guard<std::mutex> lock(error_mutex);
    if (!error) error = e;
    stop = true;
  };

#pragma omp parallel num_threads(nt)
  {
    int tid = 0;
#ifdef _OPENMP
    tid = omp_get_thread_num();
#endif
    double* base = scratch.data() + static_cast<size_t>(tid) * per_thread;
    double* zb = base;                    // B × D, row-major
    double* pa = zb + B * D;
    double* pb = pa + pa_elems;
    double* g = pb + pb_elems;            // D × D block Gram (upper part valid)
    double* cs = g + DD;                  // D
    T* tlo = lo.data() + static_cast<size_t>(tid) * D;
    T* thi = hi.data() + static_cast<size_t>(tid) * D;

#pragma omp for ordered schedule(static, 1)
    for (int64_t blk = 0; blk < nblocks; ++blk) {
      const bool active = !stop.load(std::memory_order_relaxed);
      const int64_t r0 = blk * B, r1 = std::min(n, r0 + B), rows = r1 - r0;
      if (active) {
        try {
          // Convert and shift; column sums and min/max on the raw values.
          for (int64_t i = 0; i < rows; ++i) {
            double* zrow = zb + i * D;
            for (int64_t m = 0; m < M; ++m) {
              const MatrixView<T>& x = spaces[m];
              const T* src = x.data + (r0 + i) * x.row_stride;
              const int64_t o = off[m];
              for (int64_t j = 0; j < x.cols; ++j) {
                const T v = src[j * x.col_stride];
                zrow[o + j] = static_cast<double>(v) - shift[o + j];
                if (!seen[tid]) {
                  tlo[o + j] = thi[o + j] = v;
                } else {
                  tlo[o + j] = std::min(tlo[o + j], v);
                  thi[o + j] = std::max(thi[o + j], v);
                }
              }
            }
            seen[tid] = 1;
          }
          std::fill(cs, cs + D, 0.0);
          for (int64_t i = 0; i < rows; ++i) {
            const double* zrow = zb + i * D;
            for (int64_t a = 0; a < D; ++a) cs[a] += zrow[a];
          }
          // Zᵀ as a D × rows matrix: row stride 1, column stride D.
          K.pack(zb, 1, D, rows, 0, D, K.mr, pa, nullptr);
          K.pack(zb, 1, D, rows, 0, D, K.nr, pb, nullptr);
          for (int64_t i0 = 0; i0 < D; i0 += R) {
            const int64_t ri = std::min(R, D - i0);
            const int64_t j0 = i0 / K.nr * K.nr;  // ≤ i0: covers the upper triangle
            K.gemm_tile(pa + (i0 / K.mr) * K.mr * rows, pb + (j0 / K.nr) * K.nr * rows, rows,
                        ri, D - j0, g + i0 * D + j0, D);
          }
        } catch (...) {
          fail(std::current_exception());
        }
      }
#pragma omp ordered
      {
        if (active && !stop.load()) {
          for (int64_t a = 0; a < D; ++a) {
            const double* src = g + a * D;
            double* dst = gram + a * D;
            for (int64_t b = a; b < D; ++b) dst[b] += src[b];
            colsum[a] += cs[a];
          }
          // Progress and cancellation: polled once per block, one thread at a time.
          const int64_t done = ++done_blocks;
          if (opt.progress) {
            try {
              if (!opt.progress(done * B < n ? done * B : n, n)) {
                fail(std::make_exception_ptr(Cancelled()));
              }
            } catch (...) {
              fail(std::current_exception());
            }
          }
        }
      }
    }
  }
  if (error) std::rethrow_exception(error);

  for (int64_t a = 0; a < D; ++a)
    for (int64_t b = 0; b < a; ++b) gram[a * D + b] = gram[b * D + a];
  for (int64_t a = 0; a < D; ++a) {
    bool first = true;
    T l = T(0), h = T(0);
    for (int t = 0; t < nt; ++t) {
      if (!seen[t]) continue;
      const T tl = lo[static_cast<size_t>(t) * D + a], th = hi[static_cast<size_t>(t) * D + a];
      if (first) { l = tl; h = th; first = false; }
      else { l = std::min(l, tl); h = std::max(h, th); }
    }
    constant[a] = (l == h) ? 1 : 0;
  }
}

template void shifted_gram<float>(const std::vector<MatrixView<float>>&, const double*, double*,
                                  double*, uint8_t*, const GramOptions&);
template void shifted_gram<double>(const std::vector<MatrixView<double>>&, const double*, double*,
                                   double*, uint8_t*, const GramOptions&);

}  // namespace matalign
