// Threshold keepers of the kNN screen: see screen_keepers.h for the contract, screen.h for
// the bound. screen_offer and screen_merge_rows are the two entry points of the tile kernels.
#include "screen_keepers.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <utility>
#include <vector>

#include "matalign/common.h"
#include "matalign/detail/screen_bound.h"

namespace matalign {
namespace detail {

namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();

// Appends column idx (upper bound ub >= the row's threshold) to row r's candidates; a full
// list drops what can no longer reach the threshold, and a list that stays full moves to a
// growable one (or, past the budget, the row is left to the float64 kernel).
void append(ScreenState& st, int64_t r, float ub, uint32_t idx) {
  int32_t& cnt = st.count[r];
  const float thr0 = st.thr[r];
  auto reachable = [&](const ScreenCand& x) { return x.ub >= thr0; };
  if (st.overflow[r] == 2) {  // spilled: cnt is the list's current limit
    std::vector<ScreenCand>& v = st.spill->rows[r];
    v.push_back(ScreenCand{ub, idx});
    if (static_cast<int64_t>(v.size()) < cnt) return;
    v.erase(std::partition(v.begin(), v.end(), reachable), v.end());
    if (static_cast<int64_t>(v.size()) > cnt - cnt / 4) {
      const int64_t more = int64_t(cnt) * int64_t(sizeof(ScreenCand));
      if (2 * int64_t(cnt) > st.spill->row_limit ||
          st.spill->budget.fetch_sub(more, std::memory_order_relaxed) < more) {
        st.overflow[r] = 1;  // the bound cannot separate this row: float64 search later
        st.thr[r] = kInf;
        std::vector<ScreenCand>().swap(v);
        cnt = 0;
        return;
      }
      cnt *= 2;
      v.reserve(static_cast<size_t>(cnt));
    }
    return;
  }
  ScreenCand* c = st.cand + r * st.cap;
  c[cnt++] = ScreenCand{ub, idx};
  if (cnt < st.cap) return;
  // Full: drop what can no longer reach the threshold.
  ScreenCand* end = std::partition(c, c + st.cap, reachable);
  cnt = static_cast<int32_t>(end - c);
  if (cnt > st.cap - st.cap / 4) {
    // Too many undecided candidates: continue in a growable list (or, past the budget,
    // search this row with the float64 kernel later).
    const int64_t bytes = 4 * st.cap * int64_t(sizeof(ScreenCand));
    if (st.spill->budget.fetch_sub(bytes, std::memory_order_relaxed) < bytes) {
      st.overflow[r] = 1;
      st.thr[r] = kInf;
      cnt = 0;
      return;
    }
    std::vector<ScreenCand>& v = st.spill->rows[r];
    v.reserve(static_cast<size_t>(4 * st.cap));
    v.assign(c, c + cnt);
    st.overflow[r] = 2;
    cnt = static_cast<int32_t>(4 * st.cap);
  }
}


}  // namespace

namespace {

// The lower edge of bin b, rounded down by far more than the float error of binning a value.
inline float hist_edge(const ScreenHist& H, int64_t r, int64_t b) {
  const double w = static_cast<double>(H.width[r]), e0 = static_cast<double>(H.e0[r]);
  const double e = e0 + static_cast<double>(b) * w;
  return static_cast<float>(e - 1e-5 * (std::fabs(e0) + static_cast<double>(b) * w) - 1e-30);
}

inline void hist_count(ScreenState& st, int64_t r, float lb) {
  ScreenHist& H = *st.hist;
  const float f = (lb - H.e0[r]) * H.inv[r];
  if (!(f >= 0.0f)) return;  // below the seed's threshold (within the edge's rounding)
  const int64_t b = f >= static_cast<float>(kHistBins - 1) ? kHistBins - 1 : static_cast<int64_t>(f);
  int32_t& tb = H.tb[r];
  if (b < tb) return;  // below the current bin (only within the rounding of its edge)
  uint16_t* c = H.cnt + r * kHistBins;
  if (c[b] == 0xFFFF) return;  // saturated: undercounting is safe
  ++c[b];
  int32_t& above = H.above[r];
  ++above;
  bool moved = false;
  while (tb < kHistBins - 1 && above - static_cast<int32_t>(c[tb]) >= st.k) {
    above -= c[tb];
    ++tb;
    moved = true;
  }
  if (moved) st.thr[r] = std::max(st.thr[r], hist_edge(H, r, tb));
}

void push(ScreenState& st, int64_t r, float lb, float ub, uint32_t idx) {
  if (!(ub >= st.thr[r])) return;
  // The threshold: the k-th largest lower bound, kept by the k largest.
  float* h = st.heap + r * st.hs;
  int32_t& hn = st.heap_n[r];
  const int64_t k = st.k;
  if (hn > k) {  // histogram mode (see ScreenHist)
    if (lb > st.thr[r]) hist_count(st, r, lb);
    if (!(ub >= st.thr[r])) return;
    append(st, r, ub, idx);
    return;
  }
  if (st.sorted) {
    if (hn < k) {
      st.sorted->insert(h, hn++, lb);
      if (hn == k) st.thr[r] = h[0];
    } else if (lb > h[0]) {
      st.sorted->replace_min(h, k, lb);
      st.thr[r] = h[0];
    }
  } else if (hn < k) {
    int64_t c = hn++;
    h[c] = lb;
    while (c > 0) {  // sift up
      const int64_t p = (c - 1) / 2;
      if (!(h[c] < h[p])) break;
      std::swap(h[c], h[p]);
      c = p;
    }
    if (hn == k) st.thr[r] = h[0];
  } else if (lb > h[0]) {
    // Replace the minimum (Floyd's bottom-up variant): walk the hole down to a leaf along the
    // smaller children with branch-free selects, then sift the new value up from there (it
    // rarely moves: new values are large, and large values live near the leaves).
    int64_t c = 0;
    for (;;) {
      const int64_t l = 2 * c + 1;
      if (l >= k) break;
      const int64_t rr = l + 1;
      const int64_t m = (rr < k && h[rr] < h[l]) ? rr : l;
      h[c] = h[m];
      c = m;
    }
    while (c > 0) {
      const int64_t p = (c - 1) / 2;
      if (!(lb < h[p])) break;
      h[c] = h[p];
      c = p;
    }
    h[c] = lb;
    st.thr[r] = h[0];
  }
  if (!(ub >= st.thr[r])) return;  // its own lower bound may have raised the threshold
  append(st, r, ub, idx);
}

}  // namespace

void screen_bounds(const ScreenTileArgs& a, int64_t i, int64_t j, float approx, float& lb,
                   float& ub) {
  // (the arithmetic lives in matalign/detail/screen_bound.h, shared with the CUDA screen)
  const ScreenSide& R = a.rows;
  const ScreenSide& C = a.cols;
  const ScreenTerms ri{R.s[i], R.n[i], R.t[i], R.e[i], R.g[i], R.nhi[i], R.nlo[i], R.c[i], R.dc[i]};
  const ScreenTerms cj{C.s[j], C.n[j], C.t[j], C.e[j], C.g[j], C.nhi[j], C.nlo[j], C.c[j], C.dc[j]};
  screen_pair_bounds(ri, cj, approx, a.l2, lb, ub);
}

namespace {

// Appends the batch's columns whose upper bound reaches the row's threshold (never the
// excluded self, whose bounds are -inf), and stops once the row is left to the float64 kernel.
void append_batch(ScreenState& st, int64_t i, const float* u, int64_t nc, int64_t c0, uint32_t* pos) {
  const float thr = std::max(st.thr[i], -std::numeric_limits<float>::max());
  int64_t np = 0;
  if (st.sorted) np = st.sorted->positions_at_least(u, nc, thr, pos);
  else
    for (int64_t t = 0; t < nc; ++t)
      if (u[t] >= thr) pos[np++] = static_cast<uint32_t>(t);
  for (int64_t p = 0; p < np && st.overflow[i] != 1; ++p)
    append(st, i, u[pos[p]], static_cast<uint32_t>(c0 + pos[p]));
}

}  // namespace

void screen_offer(const ScreenTileArgs& a, int64_t i, int64_t j, float approx, bool to_row,
                  bool to_col) {
  float lb, ub;
  screen_bounds(a, i, j, approx, lb, ub);
  if (to_row) push(*a.rs, i, lb, ub, static_cast<uint32_t>(j));
  if (to_col) push(*a.cs, j, lb, ub, static_cast<uint32_t>(i));
}

void screen_merge_rows(const ScreenTileArgs& a, int64_t i0, int64_t nrows, float* lb, float* ub,
                       int64_t ld) {
  ScreenState& st = *a.rs;
  const int64_t k = st.k, nc = a.c1 - a.c0;
  thread_local std::vector<float> vals;
  thread_local std::vector<uint32_t> pos;
  vals.resize(static_cast<size_t>(nc + k + 16));
  pos.resize(static_cast<size_t>(nc + 16));
  for (int64_t ii = 0; ii < nrows; ++ii) {
    const int64_t i = i0 + ii;
    if (st.overflow[i] == 1) continue;  // left to the float64 kernel
    float* l = lb + ii * ld;
    float* u = ub + ii * ld;
    if (a.exclude_self && i >= a.c0 && i < a.c1) l[i - a.c0] = u[i - a.c0] = -kInf;
    // The k largest of the held lower bounds and the batch's (only those above the
    // threshold can be among them), sorted ascending: a valid binary min-heap as well.
    float* h = st.heap + i * st.hs;
    int32_t& hn = st.heap_n[i];
    int64_t keep = 0;
    if (st.sorted && hn == 0 && st.sorted->kth_largest_applies(l, nc, k)) {
      // (a row's first tile: its heap is empty) the k-th largest, then everything above it
      // and as many copies of it as make k (equal values are distinct columns' bounds)
      const float x = st.sorted->kth_largest(l, nc, k);
      keep = st.sorted->collect_above(l, nc, x, vals.data());
      const float top = keep > 0 ? *std::max_element(vals.begin(), vals.begin() + keep) : x;
      const float width = (top - x) / static_cast<float>(kHistBins);
      if (st.hist && std::isfinite(x) && std::isfinite(top) && top > x &&
          (top - x) > 1e-4f * (std::fabs(x) + std::fabs(top)) && std::isfinite(width) &&
          width > 0.0f && std::isfinite(1.0f / width)) {
        // histogram mode: every value >= x counted in its bin (x's own copies in bin 0)
        ScreenHist& H = *st.hist;
        H.e0[i] = x;
        H.width[i] = width;
        H.inv[i] = 1.0f / H.width[i];
        H.tb[i] = 0;
        const int64_t nx = static_cast<int64_t>(std::count(l, l + nc, x));
        H.cnt[i * kHistBins] = static_cast<uint16_t>(std::min<int64_t>(nx, 0xFFFF));
        H.above[i] = H.cnt[i * kHistBins];
        st.thr[i] = hist_edge(H, i, 0);
        hn = static_cast<int32_t>(k + 1);
        for (int64_t t = 0; t < keep; ++t) hist_count(st, i, vals[t]);
        append_batch(st, i, u, nc, a.c0, pos.data());
        continue;
      }
      std::fill(vals.begin() + keep, vals.begin() + k, x);
      keep = k;
    } else {
      MATALIGN_INTERNAL(hn <= k);  // (batches come first: never a histogram row)
      std::copy(h, h + hn, vals.begin());
      keep = hn;
      const float thr = st.thr[i];
      for (int64_t t = 0; t < nc; ++t)
        if (l[t] > thr) vals[keep++] = l[t];
      if (keep > k) {
        std::nth_element(vals.begin(), vals.begin() + (k - 1), vals.begin() + keep, std::greater<float>());
        keep = k;
      }
    }
    std::sort(vals.begin(), vals.begin() + keep);
    std::copy(vals.begin(), vals.begin() + keep, h);
    if (st.sorted) std::fill(h + keep, h + st.hs, kInf);  // (batches leave `heap` uninitialised)
    hn = static_cast<int32_t>(keep);
    if (keep == k) st.thr[i] = h[0];
    append_batch(st, i, u, nc, a.c0, pos.data());
  }
}

}  // namespace detail
}  // namespace matalign
