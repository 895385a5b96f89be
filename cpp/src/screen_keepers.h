// Threshold keepers of the kNN screen (screen_keepers.cpp). Per row, the state of screen.h's
// ScreenState keeps a lower bound thr on the row's k-th largest exact score and the candidate
// columns whose upper bound reaches it. Three keepers maintain thr: a binary min-heap of the k
// largest lower bounds (portable), the same k values sorted in 16-lane vectors (AVX-512 CPUs,
// screen_sorted_avx512.cpp) and, for rows seeded by a batch (k >= 48), a histogram of lower
// bounds. Contract: thr never exceeds the row's true k-th largest score, and no column whose
// upper bound reaches thr is dropped; a row whose candidates outgrow their budget is marked
// for the float64 search (overflow = 1, thr = +inf).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "screen.h"

namespace matalign {
namespace detail {

// Rows whose candidates outgrow the inline list continue in a growable one, up to a per-row
// limit and a shared byte budget; past either, the row is searched by the float64 kernel.
struct ScreenSpill {
  std::vector<std::vector<ScreenCand>> rows;
  int64_t row_limit = 0;            // entries
  std::atomic<int64_t> budget{0};  // bytes left
};

// Histogram thresholds (rows seeded by a batch, k >= 48). Past its first tile a row only
// needs *a* lower bound on its k-th largest score, not the k-th largest lower bound itself:
// the lower bounds above the seed's threshold x are counted in kHistBins bins of equal width
// between x and the seed's largest lower bound, and the threshold is the (rounded-down) lower
// edge of the highest bin with at least k counts at or above it. A push is then one counter
// increment (one cache line per row; the other fields are dense per-row arrays) instead of a
// sorted insertion into k values, whose rows are rarely cached (bench/README.md, "Engine
// design measurements"); the price is a threshold up to one bin low, i.e. a few more candidates for the
// exact re-scoring. Counters saturate: an undercount only lowers the threshold (still valid).
constexpr int64_t kHistBins = 32;  // uint16 counters: one 64-byte line per row
struct ScreenHist {
  std::vector<float> e0, width, inv;
  std::vector<int32_t> tb, above;
  std::vector<uint16_t> counts;  // rows × kHistBins, the base aligned to 64 bytes
  uint16_t* cnt = nullptr;
  explicit ScreenHist(int64_t rows)
      : e0(static_cast<size_t>(rows)), width(static_cast<size_t>(rows)), inv(static_cast<size_t>(rows)),
        tb(static_cast<size_t>(rows)), above(static_cast<size_t>(rows)),
        counts(static_cast<size_t>(rows * kHistBins + 32), 0) {
    const auto addr = reinterpret_cast<uintptr_t>(counts.data());
    cnt = counts.data() + ((64 - addr % 64) % 64) / sizeof(uint16_t);
  }
};

/// Bytes of one ScreenHist of `rows` rows.
inline int64_t screen_hist_bytes(int64_t rows) {
  return rows * (5 * 4) + (rows * kHistBins + 32) * 2;
}

}  // namespace detail
}  // namespace matalign
