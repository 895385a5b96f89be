/// @file screen_plan.h
/// Host-side planning of the CUDA int8 screen (docs/ARCHITECTURE.md, "GPU int8 screen"): the
/// tile list (self graphs: only tiles J >= I, each pair feeding both its row and its column),
/// the survivor buffer of one tile (per row at most `slots` indices; the epilogue writes
/// survivors' column indices only, never a tile of scores), and the fallback when a row's
/// survivors overflow: that row block × column block is rerun by the exact path. Plain C++ (no
/// <cuda_runtime.h>), tested without a GPU (tests/cpp/test_cuda_screen.cpp).
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "matalign/common.h"

namespace matalign {
namespace cuda {
namespace screen_plan {

/// One tile of the screen: rows [r0, r1) × columns [c0, c1); `diagonal` for I == J of a self
/// graph (only pairs j >= i there), `mirror` when the tile's pairs also feed the columns' rows.
struct Tile {
  int64_t r0, r1, c0, c1;
  bool diagonal, mirror;
};

/// Self graph over n rows in square tiles of edge t: the tiles J >= I, row block by row block.
/// Every unordered pair {i, j} (i != j) is in exactly one tile, which feeds row i with j and
/// row j with i. Count: b (b + 1) / 2 with b = ceil(n / t).
inline std::vector<Tile> self_tiles(int64_t n, int64_t t) {
  MATALIGN_CHECK(n >= 1 && t >= 1, "screen_plan::self_tiles: n and t must be >= 1, got n=", n, ", t=", t);
  std::vector<Tile> out;
  for (int64_t r0 = 0; r0 < n; r0 += t)
    for (int64_t c0 = r0; c0 < n; c0 += t)
      out.push_back(Tile{r0, std::min(n, r0 + t), c0, std::min(n, c0 + t), c0 == r0, true});
  return out;
}

/// Query graph: m query rows × n database columns, tiles R × C, no mirror.
inline std::vector<Tile> query_tiles(int64_t m, int64_t n, int64_t R, int64_t C) {
  MATALIGN_CHECK(m >= 1 && n >= 1 && R >= 1 && C >= 1, "screen_plan::query_tiles: sizes must be >= 1");
  std::vector<Tile> out;
  for (int64_t r0 = 0; r0 < m; r0 += R)
    for (int64_t c0 = 0; c0 < n; c0 += C)
      out.push_back(Tile{r0, std::min(m, r0 + R), c0, std::min(n, c0 + C), false, false});
  return out;
}

/// Survivor slots per row and tile: 4k + 64, the CPU screen's inline candidate list
/// (knn_screen.cpp), capped at the tile's columns (a row cannot have more survivors).
inline int64_t survivor_slots(int64_t k, int64_t tile_cols) {
  return std::min<int64_t>(4 * k + 64, tile_cols);
}

/// Device bytes of one tile's survivor buffer: indices (uint32) and a count per row, for the
/// rows of the tile and, when mirrored, its columns.
inline int64_t survivor_bytes(int64_t tile_rows, int64_t tile_cols, int64_t k, bool mirror) {
  const int64_t lines = tile_rows + (mirror ? tile_cols : 0);
  const int64_t per_line = survivor_slots(k, std::max(tile_rows, tile_cols)) * 4 + 4;
  return mul_checked(lines, per_line, "screen survivor buffer");
}

/// What the host does with one row of a tile after the epilogue counted `survivors` of them
/// against `slots` slots: merge them (re-score and rank), or, on overflow (the epilogue then
/// stored only the first `slots`), rerun that row against the tile's columns with the exact
/// path. Overflow is not an error; it only costs the exact work for that row block.
enum class RowOutcome { merge, rerun_exact };
inline RowOutcome row_outcome(int64_t survivors, int64_t slots) {
  return survivors <= slots ? RowOutcome::merge : RowOutcome::rerun_exact;
}

}  // namespace screen_plan
}  // namespace cuda
}  // namespace matalign
