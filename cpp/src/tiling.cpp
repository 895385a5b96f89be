// The engine's one tile loop: schedule, threads, cancellation, progress, exception capture.
#include "matalign/tiling.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <utility>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace matalign {

int tile_loop_threads(const TileLoopOptions& options) { return resolve_threads(options.n_threads); }

namespace {

// Conflict-free rounds for the upper triangle (J >= I) of a B×B block grid, by the circle
// method of round-robin tournaments: within a round every block index appears in at most one
// tile, so a tile may update the state of its rows AND its columns without locks. With B odd
// a dummy block makes the count even, and each round's block paired with the dummy does its
// diagonal tile in that round; with B even the diagonal tiles form one extra round.
std::vector<std::vector<std::pair<int64_t, int64_t>>> symmetric_rounds(int64_t B) {
  std::vector<std::vector<std::pair<int64_t, int64_t>>> rounds;
  if (B == 1) {
    rounds.push_back({{0, 0}});
    return rounds;
  }
  const int64_t P = (B % 2 == 0) ? B : B + 1;  // players incl. dummy
  const int64_t dummy = (B % 2 == 0) ? -1 : B;
  rounds.reserve(static_cast<size_t>(P));  // (exact sizes: tile_loop_workspace_bytes)
  for (int64_t r = 0; r < P - 1; ++r) {
    std::vector<std::pair<int64_t, int64_t>> round;
    round.reserve(static_cast<size_t>(P / 2));
    auto add = [&](int64_t a, int64_t b) {
      if (a == dummy) round.emplace_back(b, b);
      else if (b == dummy) round.emplace_back(a, a);
      else round.emplace_back(std::min(a, b), std::max(a, b));
    };
    add(P - 1, r);
    for (int64_t t = 1; t < P / 2; ++t) add((r + t) % (P - 1), (r - t + (P - 1)) % (P - 1));
    rounds.push_back(std::move(round));
  }
  if (B % 2 == 0) {
    std::vector<std::pair<int64_t, int64_t>> diag;
    diag.reserve(static_cast<size_t>(B));
    for (int64_t b = 0; b < B; ++b) diag.emplace_back(b, b);
    rounds.push_back(std::move(diag));
  }
  return rounds;
}

}  // namespace

int64_t tile_loop_workspace_bytes(int64_t n_rows, int64_t tile_rows, bool symmetric,
                                  bool any_order) {
  const int64_t RB = (std::max<int64_t>(n_rows, 1) + tile_rows - 1) / std::max<int64_t>(tile_rows, 1);
  const int64_t P = RB + 1;  // rounds of the circle method (with a dummy block)
  // the rounds' pairs (symmetric: P - 1 rounds of P / 2 and the diagonal round)
  const int64_t items = symmetric ? P * (P / 2) + RB : RB;
  const int64_t pair = static_cast<int64_t>(sizeof(std::pair<int64_t, int64_t>));
  const int64_t vec = static_cast<int64_t>(sizeof(std::vector<char>));
  const int64_t greedy = symmetric && any_order ? RB * (RB + 1) / 2 * (pair + 1) + RB : 0;
  // + 1 KB for the closures and progress callbacks behind std::function
  return (P + 1) * vec + items * pair + greedy + 1024;
}

void for_each_tile(int64_t n_rows, int64_t n_cols, int64_t tile_rows, int64_t tile_cols,
                   bool symmetric, const std::function<void(const Tile&, int)>& body,
                   const TileLoopOptions& options) {
  MATALIGN_INTERNAL(tile_rows > 0 && tile_cols > 0 && n_rows >= 0 && n_cols >= 0);
  if (n_rows == 0 || n_cols == 0) return;
  if (symmetric) MATALIGN_INTERNAL(n_rows == n_cols);
  const int nt = resolve_threads(options.n_threads);

  // Work list as rounds of independent tiles (non-symmetric: one round, one item per row
  // block, the item runs all column blocks in order).
  const int64_t RB = (n_rows + tile_rows - 1) / tile_rows;
  const int64_t CB = symmetric ? RB : (n_cols + tile_cols - 1) / tile_cols;
  std::vector<std::vector<std::pair<int64_t, int64_t>>> rounds;
  int64_t total = 0;
  if (symmetric) {
    rounds = symmetric_rounds(RB);
    total = RB * (RB + 1) / 2;
  } else {
    std::vector<std::pair<int64_t, int64_t>> one;
    one.reserve(static_cast<size_t>(RB));
    for (int64_t b = 0; b < RB; ++b) one.emplace_back(b, -1);
    rounds.push_back(std::move(one));
    total = mul_checked(RB, CB, "number of tiles");
  }

  std::atomic<bool> stop{false};
  std::atomic<int64_t> done{0};
  std::exception_ptr error;
  std::mutex error_mutex;
  bool cancelled = false;
  using clock = std::chrono::steady_clock;
  auto last_poll = clock::now();

  auto capture = [&](std::exception_ptr e) {
    std::lock_guard<std::mutex> lock(error_mutex);
    if (!error) error = e;
    stop.store(true);
  };
  // Only thread 0 calls the progress hook (it may need the GIL); it polls at most every 50 ms.
  auto poll = [&](int tid, bool force) {
    if (tid != 0 || !options.progress) return;
    auto now = clock::now();
    if (!force && now - last_poll < std::chrono::milliseconds(50)) return;
    last_poll = now;
    try {
      if (!options.progress(done.load(), total)) {
        cancelled = true;
        stop.store(true);
      }
    } catch (...) {
      capture(std::current_exception());
    }
  };
  auto run_tile = [&](int64_t rb, int64_t cb, int tid) {
    Tile t;
    t.row_block = rb;
    t.col_block = cb;
    t.r0 = rb * tile_rows;
    t.r1 = std::min(n_rows, t.r0 + tile_rows);
    const int64_t csz = symmetric ? tile_rows : tile_cols;
    t.c0 = cb * csz;
    t.c1 = std::min(n_cols, t.c0 + csz);
    t.diagonal = symmetric && rb == cb;
    body(t, tid);
    done.fetch_add(1);
  };

  // Progress starts at (0, total) so a bar appears at once and Ctrl-C is seen before work.
  if (options.progress && !options.progress(0, total)) throw Cancelled();

  // Rounds: every thread walks them in order, a barrier after each (the next round may touch
  // the same blocks).
  auto in_rounds = [&](int tid) {
    for (const auto& round : rounds) {
      const int64_t m = static_cast<int64_t>(round.size());
#pragma omp for schedule(dynamic, 1)
      for (int64_t i = 0; i < m; ++i) {
        if (stop.load(std::memory_order_relaxed)) continue;
        try {
          const auto& item = round[i];
          if (item.second >= 0) {
            run_tile(item.first, item.second, tid);
          } else {
            for (int64_t cb = 0; cb < CB && !stop.load(std::memory_order_relaxed); ++cb) {
              run_tile(item.first, cb, tid);
              poll(tid, false);
            }
          }
        } catch (...) {
          capture(std::current_exception());
        }
        poll(tid, false);
      }
    }
  };

  // Any order (symmetric, options.any_order): a thread takes the first tile, in round order,
  // whose two blocks no running tile holds, or waits for a running tile to release its blocks.
  const bool greedy = symmetric && options.any_order && nt > 1 && RB > 1;
  std::vector<std::pair<int64_t, int64_t>> order;
  if (greedy) order.reserve(static_cast<size_t>(total));
  if (greedy)
    for (const auto& round : rounds) order.insert(order.end(), round.begin(), round.end());
  std::vector<char> taken(order.size(), 0), busy(greedy ? static_cast<size_t>(RB) : 0, 0);
  size_t first = 0, left = order.size();
  std::mutex mu;
  std::condition_variable cv;
  auto any_order = [&](int tid) {
    for (;;) {
      size_t pick = order.size();
      {
        std::unique_lock<std::mutex> lock(mu);
        while (left > 0 && !stop.load()) {
          while (first < order.size() && taken[first]) ++first;
          for (size_t t = first; t < order.size() && pick == order.size(); ++t)
            if (!taken[t] && !busy[order[t].first] && !busy[order[t].second]) pick = t;
          if (pick < order.size()) break;
          cv.wait(lock);
        }
        if (pick == order.size()) break;
        taken[pick] = 1;
        --left;
        busy[order[pick].first] = busy[order[pick].second] = 1;
      }
      try {
        run_tile(order[pick].first, order[pick].second, tid);
      } catch (...) {
        capture(std::current_exception());
      }
      {
        std::lock_guard<std::mutex> lock(mu);
        busy[order[pick].first] = busy[order[pick].second] = 0;
      }
      cv.notify_all();
      poll(tid, false);  // (after the release: the hook may wait for the GIL)
    }
    cv.notify_all();  // (a thread leaving on stop wakes the others, which then leave too)
  };

#pragma omp parallel num_threads(nt)
  {
#ifdef _OPENMP
    const int tid = omp_get_thread_num();
#else
    const int tid = 0;
#endif
    if (greedy) any_order(tid);
    else in_rounds(tid);
  }
  if (error) std::rethrow_exception(error);
  if (cancelled) throw Cancelled();
  if (options.progress && !options.progress(total, total)) throw Cancelled();
}

}  // namespace matalign
