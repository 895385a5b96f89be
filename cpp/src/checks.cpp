// Cheap input checks the Python layer calls before heavy work (no N×D temporaries).
#include <algorithm>
#include <atomic>
#include <cmath>

#include "matalign/knn.h"

namespace matalign {

template <class T>
int64_t first_nonfinite_row(const MatrixView<T>& x, int n_threads) {
  std::atomic<int64_t> first{-1};
  const int64_t n = x.rows, d = x.cols;
  const int nt = resolve_threads(n_threads, double(n) * double(d));
  // Rows are scanned in chunks; the smallest bad row index wins, whatever the thread count.
  const int64_t chunk = 4096;
  const int64_t nchunks = (n + chunk - 1) / chunk;
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1)
  for (int64_t c = 0; c < nchunks; ++c) {
    const int64_t f = first.load(std::memory_order_relaxed);
    if (f >= 0 && f < c * chunk) continue;
    const int64_t r1 = std::min(n, (c + 1) * chunk);
    for (int64_t i = c * chunk; i < r1; ++i) {
      const T* row = x.data + i * x.row_stride;
      bool bad = false;
      if (x.col_stride == 1) {
        // Summing x*0 propagates NaN/Inf without a branch per element.
        T acc = 0;
        for (int64_t j = 0; j < d; ++j) acc += row[j] * T(0);
        bad = !(acc == T(0));
      } else {
        for (int64_t j = 0; j < d && !bad; ++j) bad = !std::isfinite(row[j * x.col_stride]);
      }
      if (bad) {
        int64_t cur = first.load();
        while ((cur < 0 || i < cur) && !first.compare_exchange_weak(cur, i)) {
        }
        break;
      }
    }
  }
  return first.load();
}

template int64_t first_nonfinite_row<float>(const MatrixView<float>&, int);
template int64_t first_nonfinite_row<double>(const MatrixView<double>&, int);

}  // namespace matalign
