/// @file tiling.h
/// The one tile loop of the engine. Every pairwise metric is a reduction
/// over the N×M pairs of a quantity computed tile by tile and never stored whole. This file
/// owns the schedule, the threads, cancellation/progress and exception capture; a metric
/// supplies the tile body (a GEMM-shaped producer plus its reducer: TopK, PairSums, RankCount).
#pragma once

#include <cstdint>
#include <functional>

#include "matalign/common.h"

namespace matalign {

/// One tile: rows [r0, r1) × columns [c0, c1). In a symmetric loop `diagonal` is true for
/// the tiles whose row block and column block are the same block.
struct Tile {
  int64_t r0, r1, c0, c1;
  bool diagonal;
  int64_t row_block, col_block;
};

struct TileLoopOptions {
  int n_threads = 0;     ///< 0 = all cores
  ProgressFn progress;   ///< polled by thread 0 between tiles (~every 50 ms); may be empty
  /// Symmetric loops only: run tiles in any order that keeps the no-shared-block rule (a
  /// thread takes the next tile whose row and column blocks no running tile holds) instead of
  /// rounds with a barrier after each. For bodies whose result does not depend on the order in
  /// which a block's tiles arrive (the exact kNN screen); the barriers idled a thread for about
  /// half a tile per round.
  bool any_order = false;
};

/// Reducer contract: `body(tile, thread_id)` computes the tile and folds it into reducer
/// state. Guarantees the loop gives a body:
///  - non-symmetric (rows = queries, cols = database): all tiles of a row block run on one
///    thread, in increasing column order, so per-row state needs no lock;
///  - symmetric (n_rows == n_cols, the same partition in both directions): only tiles with
///    col_block >= row_block are visited, and no two concurrent tiles share a block (as a row
///    or a column block), so a body may update the state of BOTH its rows and its columns
///    without locks (half the pairwise work for self-kNN and the symmetric PairSums). By
///    default in fixed rounds, so each block receives its tiles in the same order whatever
///    the thread count; with any_order, in an order that varies from run to run;
///  - thread_id in [0, n_threads); scratch can be indexed by it;
///  - an exception thrown by a body stops the loop and is rethrown after the parallel region;
///  - reductions that must not depend on the thread count accumulate per tile and are
///    combined by the caller in tile order (tiles are numbered by (row_block, col_block)).
/// Throws matalign::Cancelled if progress returned false.
void for_each_tile(int64_t n_rows, int64_t n_cols, int64_t tile_rows, int64_t tile_cols,
                   bool symmetric, const std::function<void(const Tile&, int)>& body,
                   const TileLoopOptions& options);

/// Upper bound on the bytes for_each_tile allocates for its schedule (the rounds, the
/// any-order list and its flags) and the type-erased callbacks of one call.
int64_t tile_loop_workspace_bytes(int64_t n_rows, int64_t tile_rows, bool symmetric,
                                  bool any_order = false);

/// Number of threads for_each_tile will use for these options.
int tile_loop_threads(const TileLoopOptions& options);

}  // namespace matalign
