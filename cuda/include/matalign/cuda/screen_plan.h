/// @file screen_plan.h
/// Planning and per-pair logic of the CUDA int8 screen (docs/ARCHITECTURE.md, "GPU int8
/// screen"): the tile list (self graphs: only tiles J >= I, each pair feeding both its row and
/// its column), the survivor lines of one tile (per line at most `slots` indices; the epilogue
/// writes survivors' column indices only, never a tile of scores), the fallback when a line's
/// survivors overflow (that line is re-scored against all of the tile's columns), and the
/// rank merge of re-scored candidates into a row's sorted top-k list. Plain C++ (no
/// <cuda_runtime.h>); the MATALIGN_SCREEN_HD functions are compiled as host and device code,
/// so the kernels in cuda/src/knn_screen.cu and the host emulation in
/// tests/cpp/test_cuda_screen.cpp run the same code.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "matalign/common.h"
#include "matalign/detail/screen_bound.h"

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

/// Columns [0, S) of the database are searched exactly (the dense path) for every row before
/// the screen runs, which fills every row's top-k list and gives it a finite threshold; the
/// screen covers the rest. S = min(n, max(k + 1, 1024)); the self graph's rows [0, S) are
/// searched exactly against all columns (they are the rows whose pairs with [S, n) the
/// screen's self tiles over [S, n) do not contain).
/// (`floor` is 1024 in the kernel; the host emulation passes smaller ones so that its small
/// inputs are screened.)
inline int64_t seed_columns(int64_t n, int64_t k, int64_t floor = 1024) {
  return std::min<int64_t>(n, std::max<int64_t>(k + 1, floor));
}

/// (f, j) ranks before (g, l): larger score first, then lower index (the engine's tie rule).
template <class T, class I, class J>
MATALIGN_SCREEN_HD inline bool ranks_before(T f, I j, T g, J l) {
  return f > g || (f == g && static_cast<int64_t>(j) < static_cast<int64_t>(l));
}

/// Whether pair (i, j) of tile t (i a row of the tile, j a column) is offered to row i, and to
/// row j (the mirror). Diagonal tiles hold the pairs j > i once, and (i, i) for row i only
/// when the row's own index is not excluded.
MATALIGN_SCREEN_HD inline bool offers_row(const Tile& t, int64_t i, int64_t j, bool exclude_self) {
  return !t.diagonal || j > i || (j == i && !exclude_self);
}
MATALIGN_SCREEN_HD inline bool offers_mirror(const Tile& t, int64_t i, int64_t j) {
  return t.mirror && (!t.diagonal || j > i);
}

/// Survivor lines of a tile: one per row, plus one per column of an off-diagonal mirrored
/// tile (a diagonal tile's columns are its rows: both directions share the row's line, so no
/// two lines of one launch touch the same row's list).
MATALIGN_SCREEN_HD inline int64_t tile_lines(const Tile& t) {
  return (t.r1 - t.r0) + (t.mirror && !t.diagonal ? t.c1 - t.c0 : 0);
}
MATALIGN_SCREEN_HD inline int64_t row_line(const Tile& t, int64_t i) { return i - t.r0; }
MATALIGN_SCREEN_HD inline int64_t mirror_line(const Tile& t, int64_t j) {
  return t.diagonal ? j - t.r0 : (t.r1 - t.r0) + (j - t.c0);
}
/// The global row of a line, and the columns [b, e) its pairs in this tile come from (the
/// overflow fallback re-scores all of them; a diagonal line skips its own index when
/// excluded, see offers_row).
MATALIGN_SCREEN_HD inline int64_t line_row(const Tile& t, int64_t line) {
  return line < t.r1 - t.r0 ? t.r0 + line : t.c0 + (line - (t.r1 - t.r0));
}
MATALIGN_SCREEN_HD inline void line_columns(const Tile& t, int64_t line, int64_t& b, int64_t& e) {
  if (line < t.r1 - t.r0) {
    b = t.c0;
    e = t.c1;
  } else {
    b = t.r0;
    e = t.r1;
  }
}

/// The epilogue's test: column j can still enter row i's top-k only if its widened upper
/// bound reaches the row's current k-th best exact score `kth` (compared in double: both
/// convert exactly). A list is always full while the screen runs (seed_columns).
template <class T>
MATALIGN_SCREEN_HD inline bool survives(float ub, T kth) {
  return static_cast<double>(ub) >= static_cast<double>(kth);
}

/// Entries of the sorted list (keys, idx)[0, n) that rank before (f, j): a binary search.
template <class T, class I, class J>
MATALIGN_SCREEN_HD inline int64_t count_before(const T* keys, const I* idx, int64_t n, T f, J j) {
  int64_t lo = 0, hi = n;
  while (lo < hi) {
    const int64_t mid = (lo + hi) / 2;
    if (ranks_before(keys[mid], idx[mid], f, j)) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/// The merge of one line, step 1: the rank of candidate t among the c candidates (all of
/// distinct indices), i.e. its position once they are sorted.
template <class T, class I>
MATALIGN_SCREEN_HD inline int64_t rank_among(const T* keys, const I* idx, int64_t c, int64_t t) {
  int64_t r = 0;
  for (int64_t u = 0; u < c; ++u) r += ranks_before(keys[u], idx[u], keys[t], idx[t]) ? 1 : 0;
  return r;
}

/// Step 2: positions in the merged list of the k list entries (lk, li) and of the c sorted
/// candidates (ck, ci): list entry q goes to q + (candidates before it), candidate p to
/// p + (list entries before it); positions >= k fall out. Indices are distinct between the
/// list and the candidates (every pair is offered to a line once), so the order is total.
template <class T, class I, class J>
MATALIGN_SCREEN_HD inline int64_t merged_pos_list(const T* lk, const I* li, int64_t q, const T* ck,
                                                  const J* ci, int64_t c) {
  return q + count_before(ck, ci, c, lk[q], li[q]);
}
template <class T, class I, class J>
MATALIGN_SCREEN_HD inline int64_t merged_pos_cand(const T* ck, const J* ci, int64_t p, const T* lk,
                                                  const I* li, int64_t k) {
  return p + count_before(lk, li, k, ck[p], ci[p]);
}

}  // namespace screen_plan
}  // namespace cuda
}  // namespace matalign
