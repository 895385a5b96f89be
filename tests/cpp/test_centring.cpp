// matalign_centring_test: the translation-invariant computations of the engine (kNN with
// Metric::l2, pair_sums, rank_count) on float32 rows far from the origin. The engine centres
// rows on their column mean while packing them, so the ‖x‖² + ‖y‖² − 2⟨x, y⟩ cancellation
// scales with the spread of the rows, not with the offset; without that, float32 at an offset
// of 1e3 or 1e6 returns wrong neighbours and sums.
//
// Data: pairs of rows, a lattice point b_p (spacing 8, distinct) and its partner b_p + 0.5·e,
// plus a common offset. Every row's nearest neighbour is its partner at squared distance 0.25
// with the next one at >= 7.5² (no near-ties: the check cannot pass by luck or fail by a tie),
// and every value is exact in float32 up to 1e6 (multiples of 1/16). The references are
// float64 sums over explicit differences. No test framework: CHECK counts failures, main
// returns 1 if any.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <random>
#include <set>
#include <vector>

#include "matalign/common.h"
#include "matalign/knn.h"
#include "matalign/pairwise.h"

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

#define CHECK_NEAR(a, b, tol)                                                                  \
  do {                                                                                         \
    ++g_checks;                                                                                \
    const double a_ = (a), b_ = (b), t_ = (tol);                                               \
    if (!(std::fabs(a_ - b_) <= t_)) {                                                         \
      ++g_failures;                                                                            \
      std::fprintf(stderr, "%s:%d: CHECK_NEAR failed: %s = %.17g, %s = %.17g, tol %.3g\n",    \
                   __FILE__, __LINE__, #a, a_, #b, b_, t_);                                    \
    }                                                                                          \
  } while (0)

constexpr int64_t kD = 6;

/// 2·pairs rows of kD columns: row 2p = offset·o + 8·z_p (z_p distinct integer vectors in
/// [-3, 3]^kD), row 2p+1 = row 2p + 0.5·e_(p mod kD); o a per-column factor in {1, 1.25, 1.5}.
std::vector<float> pair_rows(int64_t pairs, double offset, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int> u(-3, 3);
  std::set<std::vector<int>> seen;
  std::vector<float> x(static_cast<size_t>(2 * pairs * kD));
  for (int64_t p = 0; p < pairs; ++p) {
    std::vector<int> z(kD);
    do {
      for (auto& v : z) v = u(rng);
    } while (!seen.insert(z).second);
    for (int64_t c = 0; c < kD; ++c) {
      const double base = offset * (1.0 + 0.25 * static_cast<double>(c % 3)) + 8.0 * z[c];
      x[static_cast<size_t>(2 * p * kD + c)] = static_cast<float>(base);
      x[static_cast<size_t>((2 * p + 1) * kD + c)] =
          static_cast<float>(base + (c == p % kD ? 0.5 : 0.0));
    }
  }
  return x;
}

double sq_dist(const std::vector<float>& x, int64_t i, int64_t j) {
  double s = 0.0;
  for (int64_t c = 0; c < kD; ++c) {
    const double t = static_cast<double>(x[i * kD + c]) - static_cast<double>(x[j * kD + c]);
    s += t * t;
  }
  return s;
}

double max_centred_norm2(const std::vector<float>& x, int64_t n) {
  std::vector<double> mu(kD, 0.0);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t c = 0; c < kD; ++c) mu[c] += static_cast<double>(x[i * kD + c]) / static_cast<double>(n);
  double m = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    double s = 0.0;
    for (int64_t c = 0; c < kD; ++c) s += (x[i * kD + c] - mu[c]) * (x[i * kD + c] - mu[c]);
    m = std::max(m, s);
  }
  return m;
}

// 0, 1, 2: the float GEMM, the int8 screen, the int16 screen.
matalign::Screen screen_of(int i) {
  return i == 0 ? matalign::Screen::off : i == 1 ? matalign::Screen::int8 : matalign::Screen::int16;
}

void test_knn(double offset) {
  const int64_t pairs = 150, n = 2 * pairs, k = 3;
  const std::vector<float> x = pair_rows(pairs, offset, 7);
  const matalign::MatrixView<float> xv{x.data(), n, kD, kD, 1};
  for (int screen : {0, 1, 2}) {
    matalign::KnnOptions opt;
    opt.screen = screen_of(screen);
    std::vector<float> val(static_cast<size_t>(n * k));
    std::vector<int64_t> idx(static_cast<size_t>(n * k));
    matalign::knn_exact<float>(xv, nullptr, k, matalign::Metric::l2, true, val.data(), idx.data(), opt);
    // Tolerance of a float32 squared distance from centred rows: a few D·eps·max ‖x − μ‖²
    // (~0.1 here); uncentred, the error grows with ‖x‖² (~1e7 at offset 1e3).
    const double tol = screen == 0 ? 32.0 * 0x1p-23 * (kD + 2) * max_centred_norm2(x, n) : 1e-12;
    int wrong = 0;
    double worst = 0.0;
    for (int64_t i = 0; i < n; ++i) {
      wrong += idx[i * k] != (i ^ 1);
      for (int64_t t = 0; t < k; ++t)
        worst = std::max(worst, std::fabs(static_cast<double>(val[i * k + t]) - sq_dist(x, i, idx[i * k + t])));
    }
    if (wrong || worst > tol)
      std::fprintf(stderr, "knn offset %g screen %d: %d wrong nearest neighbours, worst error %.3g (tol %.3g)\n",
                   offset, screen, wrong, worst, tol);
    CHECK(wrong == 0);
    CHECK(worst <= tol);
  }
  // queries (the database's centre applies to both sides)
  const std::vector<float> q = pair_rows(pairs, offset, 7);
  const matalign::MatrixView<float> qv{q.data() + kD, pairs, kD, 2 * kD, 1};  // the partners
  std::vector<float> val(static_cast<size_t>(pairs));
  std::vector<int64_t> idx(static_cast<size_t>(pairs));
  matalign::KnnOptions opt;
  opt.screen = matalign::Screen::off;
  matalign::knn_exact<float>(xv, &qv, 1, matalign::Metric::l2, false, val.data(), idx.data(), opt);
  int wrong = 0;
  for (int64_t p = 0; p < pairs; ++p) wrong += idx[p] != 2 * p + 1 || val[p] != 0.0f;
  CHECK(wrong == 0);
}

void test_screen_is_float64(double offset) {
  // The integer screen re-scores on the float64 kernel's centred rows: bit for bit its graph.
  const int64_t pairs = 120, n = 2 * pairs, k = 5;
  const std::vector<float> x = pair_rows(pairs, offset, 11);
  std::vector<double> x64(x.begin(), x.end());
  const matalign::MatrixView<float> xv{x.data(), n, kD, kD, 1};
  const matalign::MatrixView<double> xv64{x64.data(), n, kD, kD, 1};
  matalign::KnnOptions off;
  off.screen = matalign::Screen::off;
  std::vector<double> v64(static_cast<size_t>(n * k));
  std::vector<int64_t> i64(static_cast<size_t>(n * k));
  matalign::knn_exact<double>(xv64, nullptr, k, matalign::Metric::l2, true, v64.data(), i64.data(), off);
  for (int screen : {1, 2}) {
    matalign::KnnOptions opt;
    opt.screen = screen_of(screen);
    std::vector<float> v(static_cast<size_t>(n * k));
    std::vector<int64_t> ix(static_cast<size_t>(n * k));
    matalign::knn_exact<float>(xv, nullptr, k, matalign::Metric::l2, true, v.data(), ix.data(), opt);
    int diff = 0;
    for (int64_t e = 0; e < n * k; ++e) diff += ix[e] != i64[e] || v[e] != static_cast<float>(v64[e]);
    CHECK(diff == 0);
  }
  // an explicit centre gives the same graph (squared distances do not depend on it here)
  std::vector<double> centre(kD, offset);
  off.centre = centre.data();
  std::vector<double> vc(static_cast<size_t>(n * k));
  std::vector<int64_t> ic(static_cast<size_t>(n * k));
  matalign::knn_exact<double>(xv64, nullptr, k, matalign::Metric::l2, true, vc.data(), ic.data(), off);
  CHECK(ic == i64);
}

void test_pair_sums(double offset) {
  const int64_t pairs = 100, n = 2 * pairs;
  const std::vector<float> x = pair_rows(pairs, offset, 3);
  const matalign::MatrixView<float> xv{x.data(), n, kD, kD, 1};
  for (auto fn : {matalign::PairFn::distance, matalign::PairFn::rbf}) {
    const double gamma = 1.0 / 200.0;
    std::vector<double> rowsums(static_cast<size_t>(n)), cross(1);
    matalign::pair_sums<float>({xv}, fn, {gamma}, rowsums.data(), cross.data(), matalign::PairwiseOptions());
    double want_cross = 0.0, worst = 0.0;
    for (int64_t i = 0; i < n; ++i) {
      double rs = 0.0;
      for (int64_t j = 0; j < n; ++j) {
        if (j == i) continue;
        const double d2 = sq_dist(x, i, j);
        const double f = fn == matalign::PairFn::distance ? std::sqrt(d2) : std::exp(-gamma * d2);
        rs += f;
        want_cross += f * f;
      }
      worst = std::max(worst, std::fabs(rowsums[i] - rs) / rs);
    }
    if (worst > 1e-5) std::fprintf(stderr, "pair_sums offset %g: worst row sum error %.3g\n", offset, worst);
    CHECK(worst <= 1e-5);
    CHECK_NEAR(cross[0], want_cross, 1e-5 * want_cross);
  }
}

void test_rank_count(double offset) {
  // rank of the partner among row i's neighbours: 1 (count 0), in float32 and float64
  const int64_t pairs = 100, n = 2 * pairs;
  const std::vector<float> x = pair_rows(pairs, offset, 5);
  std::vector<double> x64(x.begin(), x.end());
  std::vector<int64_t> targets(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) targets[i] = i ^ 1;
  std::vector<int64_t> c32(static_cast<size_t>(n), -1), c64(static_cast<size_t>(n), -1);
  matalign::rank_count<float>({x.data(), n, kD, kD, 1}, targets.data(), 1, c32.data(), matalign::PairwiseOptions());
  matalign::rank_count<double>({x64.data(), n, kD, kD, 1}, targets.data(), 1, c64.data(), matalign::PairwiseOptions());
  int bad = 0;
  for (int64_t i = 0; i < n; ++i) bad += c32[i] != 0 || c64[i] != 0;
  CHECK(bad == 0);
}

void run(const char* name, void (*test)(double), double offset) {
  try {
    test(offset);
  } catch (const std::exception& e) {
    ++g_failures;
    std::fprintf(stderr, "%s (offset %g): unexpected exception: %s\n", name, offset, e.what());
  }
}

}  // namespace

int main() {
  for (double offset : {0.0, 1e3, 1e6}) {
    run("knn", test_knn, offset);
    run("screen_is_float64", test_screen_is_float64, offset);
    run("pair_sums", test_pair_sums, offset);
    run("rank_count", test_rank_count, offset);
  }
  std::printf("matalign_centring_test: %d checks, %d failed\n", g_checks, g_failures);
  return g_failures == 0 ? 0 : 1;
}
