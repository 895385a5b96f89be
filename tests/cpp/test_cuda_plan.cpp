// matalign_cuda_plan_test: the CUDA engine's host-side planning (cuda/include/matalign/cuda/
// plan.h), tested without a GPU and without the CUDA toolkit: launch limits of tile_rows /
// tile_cols, the kNN tile plan (fit to a memory budget; R·(k + C) within one segmented sort's
// 32-bit count), the PairSums row tile, and the row groups that split a segmented sort of
// n·k > 2^31 − 1 items. The kernels call exactly these functions. No test framework: CHECK
// counts failures, main returns 1 if any.
#include <cstdint>
#include <cstdio>
#include <stdexcept>
#include <string>

#include "matalign/cuda/plan.h"

namespace {

int g_failures = 0;
int g_checks = 0;

#define CHECK(cond)                                                                 \
  do {                                                                              \
    ++g_checks;                                                                     \
    if (!(cond)) {                                                                  \
      ++g_failures;                                                                 \
      std::fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
    }                                                                               \
  } while (0)

namespace plan = matalign::cuda::plan;

/// The message of the std::invalid_argument that f throws ("" when it does not throw it).
template <class F>
std::string invalid_argument_of(F f) {
  try {
    f();
  } catch (const std::invalid_argument& e) {
    return e.what();
  } catch (...) {
    return "<another exception>";
  }
  return "";
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

void test_tile_limits() {
  // The GEMM grid has ceil(R / 64) blocks in y, at most 65 535: 4 194 240 rows.
  CHECK(plan::kMaxTile == 4194240);
  CHECK(invalid_argument_of([] { plan::check_tiles(plan::kMaxTile, plan::kMaxTile, "knn"); }).empty());
  CHECK(invalid_argument_of([] { plan::check_tiles(0, 0, "knn"); }).empty());
  const std::string over = invalid_argument_of([] { plan::check_tiles(plan::kMaxTile + 1, 0, "knn (cuda)"); });
  CHECK(contains(over, "knn (cuda): tile_rows must be in 0..4194240 (0 = automatic), got 4194241"));
  // 2^22 passed the old check and then tripped the GEMM's internal assertion.
  const std::string pow22 = invalid_argument_of([] { plan::check_tiles(0, int64_t(1) << 22, "f"); });
  CHECK(contains(pow22, "tile_cols must be in 0..4194240"));
  CHECK(contains(invalid_argument_of([] { plan::check_tiles(-1, 0, "f"); }), "tile_rows must be in"));
  // knn_tiles applies the same check first.
  CHECK(contains(invalid_argument_of([] {
                   plan::knn_tiles(10, 10, 1, plan::kMaxTile + 1, 0, 1, [](int64_t, int64_t) { return 0; }, "g");
                 }),
                 "g: tile_rows must be in 0..4194240"));
}

// A plan's bytes as the kNN engine counts them (tile + two segment arrays per row), float32.
int64_t knn_bytes(int64_t R, int64_t C, int64_t k) { return R * C * 4 + 2 * R * (k + C) * 12; }

void test_knn_tiles() {
  // Explicit tiles are used as given (capped at m, n), whatever the budget.
  auto fixed = plan::knn_tiles(1000, 900, 5, 13, 7, 0, [](int64_t, int64_t) { return int64_t(1) << 60; }, "f");
  CHECK(fixed.rows == 13 && fixed.cols == 7 && fixed.cap == 12);
  auto capped = plan::knn_tiles(10, 20, 3, 500, 600, 0, [](int64_t, int64_t) { return 0; }, "f");
  CHECK(capped.rows == 10 && capped.cols == 20 && capped.cap == 23);
  // Automatic tiles: 8192² when they fit; halved until they fit; never below 64.
  const int64_t k = 10;
  auto big = plan::knn_tiles(1000000, 1000000, k, 0, 0, int64_t(1) << 40,
                             [&](int64_t r, int64_t c) { return knn_bytes(r, c, k); }, "f");
  CHECK(big.rows == 8192 && big.cols == 8192);
  const int64_t budget = int64_t(200) << 20;
  auto fit = plan::knn_tiles(1000000, 1000000, k, 0, 0, budget,
                             [&](int64_t r, int64_t c) { return knn_bytes(r, c, k); }, "f");
  CHECK(knn_bytes(fit.rows, fit.cols, k) <= budget);
  CHECK(knn_bytes(fit.rows * 2, fit.cols, k) > budget || knn_bytes(fit.rows, fit.cols * 2, k) > budget);
  auto tiny = plan::knn_tiles(1000000, 1000000, k, 0, 0, 1,
                              [&](int64_t r, int64_t c) { return knn_bytes(r, c, k); }, "f");
  CHECK(tiny.rows == 64 && tiny.cols == 64);
  // Large k: R·(k + C) never exceeds one sort's 32-bit count (CUB before CCCL 3 takes int).
  const int64_t kk = 200000;
  auto large = plan::knn_tiles(1000000, 1000000, kk, 0, 0, int64_t(1) << 50,
                               [](int64_t, int64_t) { return 0; }, "f");
  CHECK(large.cap == kk + large.cols);
  CHECK(large.rows * large.cap <= plan::kMaxSortItems);
  CHECK((large.rows + 1) * large.cap > plan::kMaxSortItems || large.rows == 8192);
  auto given = plan::knn_tiles(1000000, 1000000, kk, 8192, 8192, 0, [](int64_t, int64_t) { return 0; }, "f");
  CHECK(given.rows * given.cap <= plan::kMaxSortItems && given.rows >= 1);
  // k + C alone beyond the count: a ValueError naming the way out.
  const std::string msg = invalid_argument_of([] {
    plan::knn_tiles(10, int64_t(3) << 30, int64_t(1) << 31, 0, 0, 0, [](int64_t, int64_t) { return 0; },
                    "knn (cuda)");
  });
  CHECK(contains(msg, "knn (cuda): k + tile_cols = ") && contains(msg, "pass a smaller k or tile_cols"));
  CHECK(contains(invalid_argument_of([] {
                   plan::knn_tiles(0, 10, 1, 0, 0, 0, [](int64_t, int64_t) { return 0; }, "f");
                 }),
                 "empty problem"));
}

void test_pair_tiles() {
  // Column tiles are fixed: only rows follow the budget or tile_rows.
  CHECK(plan::kPairCols == 2048);
  CHECK(plan::pair_tile_rows(17, 5000, 1, 0) == 17);
  CHECK(plan::pair_tile_rows(9000, 5000, 1, 0) == 5000);
  CHECK(plan::pair_tile_rows(0, 100000, 8 * 2048, int64_t(1) << 40) == 4096);
  CHECK(plan::pair_tile_rows(0, 100, 8 * 2048, int64_t(1) << 40) == 100);
  const int64_t p = plan::pair_tile_rows(0, 100000, 8 * 2048, int64_t(3) << 20);
  CHECK(p * 8 * 2048 <= (int64_t(3) << 20) && p * 2 * 8 * 2048 > (int64_t(3) << 20));
  CHECK(plan::pair_tile_rows(0, 100000, 8 * 2048, 1) == 64);
}

void test_row_groups() {
  // Covering, in order, each group within the count.
  for (const int64_t n : {int64_t(1), int64_t(7), int64_t(1000)}) {
    for (const int64_t per : {int64_t(1), int64_t(3), int64_t(250)}) {
      const auto g = plan::row_groups(n, per, 1000);
      int64_t next = 0;
      bool ok = true;
      for (const auto& r : g) {
        ok = ok && r.first == next && r.second > r.first && (r.second - r.first) * per <= 1000;
        next = r.second;
      }
      CHECK(ok && next == n);
    }
  }
  // N·k beyond 2^31: a graph of 1M rows and k = 3000 is sorted in 2 groups of int-sized counts.
  const auto g = plan::row_groups(1000000, 3000);
  CHECK(g.size() == 2);
  CHECK((g[0].second - g[0].first) * 3000 <= plan::kMaxSortItems);
  CHECK(g.back().second == 1000000);
  CHECK(plan::row_groups(1000, 10).size() == 1);
  CHECK(contains(invalid_argument_of([] { plan::row_groups(10, 0); }), "items per row"));
}

}  // namespace

int main() {
  test_tile_limits();
  test_knn_tiles();
  test_pair_tiles();
  test_row_groups();
  std::printf("matalign_cuda_plan_test: %d checks, %d failures\n", g_checks, g_failures);
  return g_failures == 0 ? 0 : 1;
}
