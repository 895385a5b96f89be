// Quantisation of the kNN screen (knn_screen.cpp): each side (database rows, queries) is
// centred on the database mean and quantised once, row by row, to int8 or int16 with its own
// scale, together with the per-row terms of the error bound (screen.h). Contract: every bound
// term is rounded so that the bounds stay valid (norms and errors rounded up, |x|² bounds
// rounded outwards, allowances for the float32 evaluation of the bound itself); a side with a
// row norm outside [1e-12, 1e12] (or a centring term beyond 1e24) is reported as out of range
// and the caller does not screen.
#pragma once

#include <cstdint>
#include <vector>

#include "kernels.h"
#include "screen.h"

namespace matalign {
namespace detail {

/// Quantised copy and per-row bound terms of one side.
struct SideData {
  std::vector<int8_t> q;
  std::vector<int16_t> q16;
  std::vector<float> s, n, t, e, g, nhi, nlo, c, dc;
  std::vector<int32_t> qsum;
  std::vector<double> norm2;  ///< Σ x² with the float64 GEMM's FMA chain (l2 re-scoring)
  int64_t dp = 0;
  bool in_range = true;

  ScreenSide view() const {
    return ScreenSide{q16.empty() ? q.data() : nullptr, q16.empty() ? nullptr : q16.data(), dp, s.data(), n.data(), t.data(), e.data(), g.data(),
                      nhi.data(), nlo.data(), qsum.data(), c.data(), dc.data()};
  }
};

/// Padding (entries) after the per-row arrays of a side, for whole-vector loads.
constexpr int64_t kSidePad = 64;

/// Bytes quantise() allocates for one side of `rows` rows of depth d.
inline int64_t side_bytes(int64_t rows, int64_t d, bool int16, bool l2) {
  const int64_t dp = round_up(d, 4);
  return rows * dp * (int16 ? 2 : 1) + (rows + kSidePad) * (9 * 4 + 4) + (l2 ? rows * 8 : 0);
}

/// Centre x on mu (the database mean, d values), quantise it to int8 (bits = 8) or int16
/// (bits = 16) and fill `out` (its in_range says whether the screen applies). K: the float
/// kernels (their float64 dot chain gives the exact norms for l2).
template <class T>
void quantise(const MatrixView<T>& x, const Kernels<T>& K, bool l2, int nt,
              const std::vector<double>& mu, int bits, SideData& out);

}  // namespace detail
}  // namespace matalign
