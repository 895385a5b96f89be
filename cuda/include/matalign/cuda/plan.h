/// @file plan.h
/// Host-side planning of the CUDA engine: tile sizes, launch limits, and the splits that keep
/// 32-bit counts of library calls in range. Plain C++ (no <cuda_runtime.h>): the rules are
/// pure functions of sizes, so they are tested without a GPU (tests/cpp/test_cuda_plan.cpp)
/// and the CUDA sources call exactly these.
#pragma once

#include <algorithm>
#include <cstdint>
#include <functional>
#include <limits>
#include <utility>
#include <vector>

#include "matalign/common.h"

namespace matalign {
namespace cuda {
namespace plan {

/// Rows of one GEMM output block; the GEMM's grid has ceil(R / kGemmBlockRows) blocks in y,
/// which CUDA limits to 65 535.
constexpr int64_t kGemmBlockRows = 64;
constexpr int64_t kMaxGridY = 65535;
/// The largest tile_rows / tile_cols a call accepts (65 535 · 64 = 4 194 240).
constexpr int64_t kMaxTile = kMaxGridY * kGemmBlockRows;

/// The largest item count a library sort is handed in one call. CUB before CCCL 3 (CUDA 12)
/// takes `int num_items`; CCCL 3 takes int64. The engine splits at 2^31 − 1 either way, so one
/// source is correct with both.
constexpr int64_t kMaxSortItems = std::numeric_limits<int32_t>::max();

/// PairSums column tiles are always this wide (the last one ragged). A row's sum over a
/// column tile is a fixed reduction over these columns, and tiles are added in column order,
/// so rowsums and cross sums do not depend on the row tile (free memory, tile_rows).
constexpr int64_t kPairCols = 2048;

/// tile_rows / tile_cols as given by the caller: 0 (automatic) or 1..kMaxTile.
/// @throws std::invalid_argument naming the argument and the range
inline void check_tiles(int64_t tile_rows, int64_t tile_cols, const char* fn) {
  MATALIGN_CHECK(tile_rows >= 0 && tile_rows <= kMaxTile, fn, ": tile_rows must be in 0..",
                 kMaxTile, " (0 = automatic), got ", tile_rows);
  MATALIGN_CHECK(tile_cols >= 0 && tile_cols <= kMaxTile, fn, ": tile_cols must be in 0..",
                 kMaxTile, " (0 = automatic), got ", tile_cols);
}

/// Tiles of the kNN search: R query rows × C database columns.
struct KnnTiles {
  int64_t rows = 0;  ///< R
  int64_t cols = 0;  ///< C
  int64_t cap = 0;   ///< per-row segment capacity k + C
};

/// The kNN tile plan. Given tiles are used as they are (capped at m and n); automatic ones
/// start at 8192 and halve (rows first while R >= C) down to 64 until bytes(R, C) fits the
/// budget (when nothing fits, the smallest plan is returned and the allocation reports the
/// size it asked for). Then R is capped so that R · (k + C) <= kMaxSortItems (one segmented
/// sort per column tile). Throws when k + C alone exceeds that count.
/// @param bytes  device bytes of a plan (R, C), everything except the inputs
inline KnnTiles knn_tiles(int64_t m, int64_t n, int64_t k, int64_t tile_rows, int64_t tile_cols,
                          int64_t budget, const std::function<int64_t(int64_t, int64_t)>& bytes,
                          const char* fn) {
  check_tiles(tile_rows, tile_cols, fn);
  MATALIGN_CHECK(m >= 1 && n >= 1 && k >= 1, fn, ": empty problem (m=", m, ", n=", n, ", k=", k, ")");
  const bool auto_r = tile_rows == 0, auto_c = tile_cols == 0;
  int64_t R = std::min<int64_t>(auto_r ? 8192 : tile_rows, m);
  int64_t C = std::min<int64_t>(auto_c ? 8192 : tile_cols, n);
  if (auto_r || auto_c) {
    while (bytes(R, C) > budget) {
      if (auto_r && R > 64 && (R >= C || !auto_c || C <= 64)) R = (R + 1) / 2;
      else if (auto_c && C > 64) C = (C + 1) / 2;
      else break;
    }
  }
  const int64_t cap = k + C;
  MATALIGN_CHECK(cap <= kMaxSortItems, fn, ": k + tile_cols = ", cap, " exceeds ", kMaxSortItems,
                 "; pass a smaller k or tile_cols");
  R = std::max<int64_t>(1, std::min(R, kMaxSortItems / cap));
  return KnnTiles{R, C, cap};
}

/// PairSums / RankCount row tile: as given (capped at n), else the largest power of two
/// <= 4096 (at least 64, or n) whose per-tile bytes (rows · bytes_per_row) fit the budget.
inline int64_t pair_tile_rows(int64_t given, int64_t n, int64_t bytes_per_row, int64_t budget) {
  if (given > 0) return std::min(given, n);
  int64_t p = std::min<int64_t>(4096, n);
  while (p > 64 && p * bytes_per_row > budget) p = (p + 1) / 2;
  return p;
}

/// Consecutive row groups [first, second) of at most max_items / per_row rows each (at least
/// one row), covering [0, n): the split of a per-row segmented sort of n · per_row items.
inline std::vector<std::pair<int64_t, int64_t>> row_groups(int64_t n, int64_t per_row,
                                                           int64_t max_items = kMaxSortItems) {
  MATALIGN_CHECK(per_row >= 1 && per_row <= max_items, "row_groups: ", per_row,
                 " items per row exceed ", max_items);
  const int64_t g = std::max<int64_t>(1, max_items / per_row);
  std::vector<std::pair<int64_t, int64_t>> out;
  for (int64_t r0 = 0; r0 < n; r0 += g) out.emplace_back(r0, std::min(n, r0 + g));
  return out;
}

}  // namespace plan
}  // namespace cuda
}  // namespace matalign
