// matalign_core_test: the C++-only check that the engine builds and runs without Python.
// Each engine result is compared with a dense, readable float64 reference written here from
// the definitions in docs/METRICS.md. No test framework: CHECK counts failures, main returns 1
// if any. The global operator new/delete are replaced by a byte counter, so that the
// engine's *_workspace_bytes estimates can be checked against what the calls really allocate.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <memory>
#include <thread>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <new>
#include <functional>
#include <numeric>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "matalign/common.h"
#include "matalign/graph.h"
#include "matalign/gram.h"
#include "matalign/knn.h"
#include "matalign/pairwise.h"
#include "matalign/tiling.h"

// ------------------------------------------------------------------------------------------
// Test-only byte counter: every operator new of the process (the engine's std::vectors and
// new[] included) goes through here, with its size in a 16-byte header.
namespace {
std::atomic<int64_t> g_live{0};
std::atomic<int64_t> g_peak{0};
void* counted_alloc(std::size_t n) {
  void* p = std::malloc(n + 16);
  if (!p) throw std::bad_alloc();
  *static_cast<std::size_t*>(p) = n;
  const int64_t now = g_live.fetch_add(static_cast<int64_t>(n)) + static_cast<int64_t>(n);
  int64_t peak = g_peak.load();
  while (now > peak && !g_peak.compare_exchange_weak(peak, now)) {
  }
  return static_cast<char*>(p) + 16;
}
void counted_free(void* p) noexcept {
  if (!p) return;
  char* base = static_cast<char*>(p) - 16;
  g_live.fetch_sub(static_cast<int64_t>(*reinterpret_cast<std::size_t*>(base)));
  std::free(base);
}
}  // namespace

void* operator new(std::size_t n) { return counted_alloc(n); }
void* operator new[](std::size_t n) { return counted_alloc(n); }
void* operator new(std::size_t n, const std::nothrow_t&) noexcept {
  try {
    return counted_alloc(n);
  } catch (...) {
    return nullptr;
  }
}
void* operator new[](std::size_t n, const std::nothrow_t&) noexcept {
  try {
    return counted_alloc(n);
  } catch (...) {
    return nullptr;
  }
}
void operator delete(void* p) noexcept { counted_free(p); }
void operator delete[](void* p) noexcept { counted_free(p); }
void operator delete(void* p, std::size_t) noexcept { counted_free(p); }
void operator delete[](void* p, std::size_t) noexcept { counted_free(p); }

namespace {

/// Bytes allocated at the peak of f() above what was live when it started.
int64_t peak_bytes(const std::function<void()>& f) {
  const int64_t base = g_live.load();
  g_peak.store(base);
  f();
  return g_peak.load() - base;
}

int g_failures = 0;
int g_checks = 0;

#define CHECK(cond)                                                        \
  do {                                                                     \
    ++g_checks;                                                            \
    if (!(cond)) {                                                         \
      ++g_failures;                                                        \
      std::fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
    }                                                                      \
  } while (0)

#define CHECK_NEAR(a, b, tol)                                                          \
  do {                                                                                 \
    ++g_checks;                                                                        \
    const double a_ = (a), b_ = (b), t_ = (tol);                                       \
    if (!(std::fabs(a_ - b_) <= t_)) {                                                 \
      ++g_failures;                                                                    \
      std::fprintf(stderr, "%s:%d: CHECK_NEAR failed: %s = %.17g, %s = %.17g, tol %.3g\n", \
                   __FILE__, __LINE__, #a, a_, #b, b_, t_);                            \
    }                                                                                  \
  } while (0)

/// Expect `f` to throw std::invalid_argument whose message contains every string in `parts`.
void check_throws(const char* what, const std::function<void()>& f,
                  const std::vector<std::string>& parts) {
  ++g_checks;
  try {
    f();
  } catch (const std::invalid_argument& e) {
    const std::string msg = e.what();
    for (const std::string& p : parts) {
      if (msg.find(p) == std::string::npos) {
        ++g_failures;
        std::fprintf(stderr, "%s: message \"%s\" lacks \"%s\"\n", what, msg.c_str(), p.c_str());
        return;
      }
    }
    return;
  } catch (const std::exception& e) {
    ++g_failures;
    std::fprintf(stderr, "%s: wrong exception type: %s\n", what, e.what());
    return;
  }
  ++g_failures;
  std::fprintf(stderr, "%s: no exception thrown\n", what);
}

using Mat = std::vector<double>;  // row-major

Mat gaussian(int64_t n, int64_t d, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> g(0.0, 1.0);
  Mat x(static_cast<size_t>(n * d));
  for (double& v : x) v = g(rng);
  return x;
}

Mat gram(const Mat& x, int64_t n, int64_t d) {
  Mat k(static_cast<size_t>(n * n));
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < n; ++j) {
      double s = 0;
      for (int64_t t = 0; t < d; ++t) s += x[i * d + t] * x[j * d + t];
      k[i * n + j] = s;
    }
  return k;
}

/// Self-excluded kNN by largest kernel value, ties by lower index (docs/METRICS.md).
void knn_from_gram(const Mat& K, int64_t n, int64_t k, std::vector<int64_t>& idx,
                   std::vector<double>& val) {
  idx.assign(static_cast<size_t>(n * k), 0);
  val.assign(static_cast<size_t>(n * k), 0);
  std::vector<int64_t> order;
  for (int64_t i = 0; i < n; ++i) {
    order.clear();
    for (int64_t j = 0; j < n; ++j)
      if (j != i) order.push_back(j);
    std::sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
      const double va = K[i * n + a], vb = K[i * n + b];
      return va != vb ? va > vb : a < b;
    });
    for (int64_t t = 0; t < k; ++t) {
      idx[i * k + t] = order[t];
      val[i * k + t] = K[i * n + order[t]];
    }
  }
}

Mat row_mask(const std::vector<int64_t>& idx, int64_t n, int64_t k) {
  Mat m(static_cast<size_t>(n * n), 0.0);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t t = 0; t < k; ++t) m[i * n + idx[i * k + t]] = 1.0;
  return m;
}

/// HSIC₁ exactly as defined in docs/METRICS.md, on dense n × n matrices (diagonal zeroed).
double hsic1_dense(Mat A, Mat B, int64_t n) {
  for (int64_t i = 0; i < n; ++i) A[i * n + i] = 0, B[i * n + i] = 0;
  double trace = 0, sa = 0, sb = 0;
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < n; ++j) {
      trace += A[i * n + j] * B[j * n + i];
      sa += A[i * n + j];
      sb += B[i * n + j];
    }
  double sab = 0;  // 1ᵀ A B 1: the full product when small, else (1ᵀA)(B1)
  if (n <= 100) {
    for (int64_t i = 0; i < n; ++i)
      for (int64_t l = 0; l < n; ++l) {
        double ab = 0;
        for (int64_t j = 0; j < n; ++j) ab += A[i * n + j] * B[j * n + l];
        sab += ab;
      }
  } else {
    for (int64_t j = 0; j < n; ++j) {
      double col = 0, row = 0;
      for (int64_t i = 0; i < n; ++i) col += A[i * n + j], row += B[j * n + i];
      sab += col * row;
    }
  }
  const double N = static_cast<double>(n);
  return (trace + sa * sb / ((N - 1) * (N - 2)) - 2 * sab / (N - 2)) / (N * (N - 3));
}

struct DenseCknna {
  double value, hsic_xy, hsic_xx, hsic_yy;
};

DenseCknna cknna_dense(const Mat& K, const Mat& L, const std::vector<int64_t>& ix,
                       const std::vector<int64_t>& iy, int64_t n, int64_t k, double eps) {
  const Mat mk = row_mask(ix, n, k), ml = row_mask(iy, n, k);
  Mat A(K.size()), B(K.size()), AK(K.size()), BL(K.size());
  for (size_t e = 0; e < K.size(); ++e) {
    A[e] = mk[e] * ml[e] * K[e];
    B[e] = mk[e] * ml[e] * L[e];
    AK[e] = mk[e] * K[e];
    BL[e] = ml[e] * L[e];
  }
  DenseCknna r;
  r.hsic_xy = hsic1_dense(A, B, n);
  r.hsic_xx = hsic1_dense(AK, AK, n);
  r.hsic_yy = hsic1_dense(BL, BL, n);
  r.value = r.hsic_xy / (std::sqrt(r.hsic_xx * r.hsic_yy) + eps);
  return r;
}

// ------------------------------------------------------------------------------------------
void test_mutual_knn_hand() {
  const int64_t n = 6, k = 2;
  const std::vector<int64_t> x = {1, 2, 0, 3, 3, 4, 4, 5, 5, 0, 0, 1};
  const std::vector<int64_t> y = {2, 3, 3, 0, 5, 1, 5, 4, 1, 2, 1, 0};
  // Brute count through dense masks.
  const Mat mx = row_mask(x, n, k), my = row_mask(y, n, k);
  std::vector<double> expect_row(n, 0.0);
  double expect = 0;
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = 0; j < n; ++j) expect_row[i] += mx[i * n + j] * my[i * n + j];
    expect_row[i] /= k;
    expect += expect_row[i] / n;
  }
  CHECK_NEAR(expect, 7.0 / 12.0, 1e-15);  // rows share 1, 2, 0, 2, 0, 2 neighbours
  std::vector<double> per_row(n, -1.0);
  const double m = matalign::mutual_knn(x.data(), y.data(), n, k, per_row.data(), 1);
  CHECK_NEAR(m, expect, 1e-15);
  for (int64_t i = 0; i < n; ++i) CHECK_NEAR(per_row[i], expect_row[i], 0.0);
  CHECK_NEAR(matalign::mutual_knn(x.data(), y.data(), n, k, nullptr, 3), expect, 1e-15);
  CHECK_NEAR(matalign::mutual_knn(x.data(), x.data(), n, k, nullptr, 0), 1.0, 0.0);

  std::vector<int64_t> bad = x;
  bad[2 * k + 1] = 6;
  check_throws("mutual_knn out of range",
               [&] { matalign::mutual_knn(bad.data(), y.data(), n, k, nullptr, 2); },
               {"graph x", "row 2", "6"});
  bad = y;
  bad[3 * k] = 3;
  check_throws("mutual_knn self", [&] { matalign::mutual_knn(x.data(), bad.data(), n, k, nullptr, 2); },
               {"graph y", "row 3"});
  bad = y;
  bad[4 * k] = bad[4 * k + 1];
  check_throws("mutual_knn repeat", [&] { matalign::mutual_knn(x.data(), bad.data(), n, k, nullptr, 2); },
               {"graph y", "row 4", "more than once"});
  check_throws("mutual_knn k", [&] { matalign::mutual_knn(x.data(), y.data(), n, 0, nullptr, 1); },
               {"k must be"});
}

void test_mutual_knn_random() {
  // Graphs of two correlated spaces, brute count through dense masks.
  const int64_t n = 700, d = 5, k = 8;
  const Mat x = gaussian(n, d, 11);
  Mat y = gaussian(n, d, 12);
  for (size_t e = 0; e < y.size(); ++e) y[e] = x[e] + 0.5 * y[e];
  std::vector<int64_t> ix, iy;
  std::vector<double> vx, vy;
  knn_from_gram(gram(x, n, d), n, k, ix, vx);
  knn_from_gram(gram(y, n, d), n, k, iy, vy);
  const Mat mx = row_mask(ix, n, k), my = row_mask(iy, n, k);
  int64_t common = 0;
  for (size_t e = 0; e < mx.size(); ++e) common += static_cast<int64_t>(mx[e] * my[e]);
  const double expect = static_cast<double>(common) / (n * k);
  CHECK(common > 0);
  CHECK_NEAR(matalign::mutual_knn(ix.data(), iy.data(), n, k, nullptr, 1), expect, 1e-15);
  CHECK_NEAR(matalign::mutual_knn(ix.data(), iy.data(), n, k, nullptr, 3), expect, 1e-15);
}

// ------------------------------------------------------------------------------------------
/// One CKNNA case: X ~ N(0,1)^{n×d}, Y = mix·X + noise, both graphs from the dense Gram by
/// sorting; engine (double and float) against the dense reference. With `asym` the kernels
/// get a non-symmetric perturbation: the definitions hold for any matrices, and this pins
/// which stored value each term reads (A_ij from row i of X's graph, B_ji from row j of Y's).
void cknna_case(int64_t n, int64_t d, int64_t k, double mix, uint64_t seed, bool asym = false) {
  const Mat x = gaussian(n, d, seed);
  Mat y = gaussian(n, d, seed + 1);
  for (size_t e = 0; e < y.size(); ++e) y[e] = mix * x[e] + y[e];
  Mat K = gram(x, n, d), L = gram(y, n, d);
  if (asym) {
    const Mat rk = gaussian(n, n, seed + 2), rl = gaussian(n, n, seed + 3);
    for (size_t e = 0; e < K.size(); ++e) K[e] += 0.3 * rk[e], L[e] += 0.3 * rl[e];
  }
  std::vector<int64_t> ix, iy;
  std::vector<double> vx, vy;
  knn_from_gram(K, n, k, ix, vx);
  knn_from_gram(L, n, k, iy, vy);

  for (double eps : {0.0, 1e-6}) {
    const DenseCknna ref = cknna_dense(K, L, ix, iy, n, k, eps);
    std::vector<double> per_row(static_cast<size_t>(n), 0.0);
    const matalign::CknnaResult r =
        matalign::cknna<double>(ix.data(), vx.data(), iy.data(), vy.data(), n, k, eps,
                                per_row.data(), 2);
    const double tol = 1e-12 * (1.0 + std::fabs(ref.hsic_xx) + std::fabs(ref.hsic_yy));
    CHECK_NEAR(r.hsic_xy, ref.hsic_xy, tol);
    CHECK_NEAR(r.hsic_xx, ref.hsic_xx, tol);
    CHECK_NEAR(r.hsic_yy, ref.hsic_yy, tol);
    CHECK_NEAR(r.value, ref.value, 1e-10 * (1.0 + std::fabs(ref.value)));
    const double sum = std::accumulate(per_row.begin(), per_row.end(), 0.0);
    CHECK_NEAR(sum, r.value, 1e-10 * (1.0 + std::fabs(r.value)));

    // Thread count must not change a single bit.
    std::vector<double> per_row1(static_cast<size_t>(n), 0.0);
    const matalign::CknnaResult r1 = matalign::cknna<double>(
        ix.data(), vx.data(), iy.data(), vy.data(), n, k, eps, per_row1.data(), 1);
    CHECK(r1.value == r.value && r1.hsic_xy == r.hsic_xy && r1.hsic_xx == r.hsic_xx &&
          r1.hsic_yy == r.hsic_yy);
    CHECK(per_row1 == per_row);

    // float values: the reference on the float-rounded kernels upcast to double.
    std::vector<float> fx(vx.begin(), vx.end()), fy(vy.begin(), vy.end());
    Mat Kf(K), Lf(L);
    for (double& v : Kf) v = static_cast<float>(v);
    for (double& v : Lf) v = static_cast<float>(v);
    const DenseCknna reff = cknna_dense(Kf, Lf, ix, iy, n, k, eps);
    const matalign::CknnaResult rf =
        matalign::cknna<float>(ix.data(), fx.data(), iy.data(), fy.data(), n, k, eps, nullptr, 3);
    CHECK_NEAR(rf.hsic_xy, reff.hsic_xy, tol);
    CHECK_NEAR(rf.value, reff.value, 1e-10 * (1.0 + std::fabs(reff.value)));
  }
}

void test_cknna() {
  cknna_case(40, 6, 5, 0.0, 101);   // independent spaces
  cknna_case(40, 6, 5, 2.0, 202);   // strongly aligned: many mutual, two-way edges
  cknna_case(41, 3, 7, 1.0, 303);
  cknna_case(10, 4, 9, 1.0, 404);   // k = n-1: full masks, CKNNA = unbiased linear CKA
  cknna_case(5, 2, 4, 1.5, 505);
  cknna_case(1100, 4, 6, 1.0, 606); // several row chunks: thread invariance across chunks
  cknna_case(40, 6, 5, 2.0, 707, true);
  cknna_case(30, 2, 8, 3.0, 808, true);

  // Errors.
  const int64_t n = 12, k = 3, d = 4;
  const Mat x = gaussian(n, d, 7), K = gram(x, n, d);
  std::vector<int64_t> ix;
  std::vector<double> vx;
  knn_from_gram(K, n, k, ix, vx);
  std::vector<int64_t> bad = ix;
  bad[5 * k + 2] = -1;
  check_throws("cknna out of range", [&] {
    matalign::cknna<double>(ix.data(), vx.data(), bad.data(), vx.data(), n, k, 0.0, nullptr, 2);
  }, {"graph y", "row 5", "-1"});
  bad = ix;
  bad[7 * k] = 7;
  check_throws("cknna self", [&] {
    matalign::cknna<double>(bad.data(), vx.data(), ix.data(), vx.data(), n, k, 0.0, nullptr, 2);
  }, {"graph x", "row 7"});
  check_throws("cknna n < 4", [&] {
    matalign::cknna<double>(ix.data(), vx.data(), ix.data(), vx.data(), 3, 2, 0.0, nullptr, 1);
  }, {"at least 4"});
  const std::vector<double> zeros(vx.size(), 0.0);
  check_throws("cknna undefined", [&] {
    matalign::cknna<double>(ix.data(), zeros.data(), ix.data(), zeros.data(), n, k, 0.0,
                            nullptr, 1);
  }, {"undefined"});
  check_throws("cknna eps", [&] {
    matalign::cknna<double>(ix.data(), vx.data(), ix.data(), vx.data(), n, k, -1.0, nullptr, 1);
  }, {"eps"});
  // Identical spaces: CKNNA = 1.
  const matalign::CknnaResult same =
      matalign::cknna<double>(ix.data(), vx.data(), ix.data(), vx.data(), n, k, 0.0, nullptr, 1);
  CHECK_NEAR(same.value, 1.0, 1e-12);
}

// ------------------------------------------------------------------------------------------
/// knn_exact<float> against brute force in double on the float inputs. Sorted value lists
/// must agree within a float32 tolerance; each returned index must be valid and carry the
/// value reported for it (ties make index lists legitimately differ).
void check_knn(const std::vector<float>& db, int64_t n, const std::vector<float>* q, int64_t m,
               int64_t d, int64_t k, matalign::Metric metric, int64_t tile_rows, const char* what,
               matalign::Screen screen = matalign::Screen::automatic) {
  const bool self = (q == nullptr);
  const std::vector<float>& qs = self ? db : *q;
  const int64_t rows = self ? n : m;
  matalign::MatrixView<float> xv{db.data(), n, d, d, 1};
  matalign::MatrixView<float> qv{qs.data(), rows, d, d, 1};
  std::vector<float> values(static_cast<size_t>(rows * k));
  std::vector<int64_t> indices(static_cast<size_t>(rows * k), -7);
  matalign::KnnOptions opt;
  opt.tile_rows = tile_rows;
  opt.n_threads = 2;
  opt.screen = screen;
  try {
    matalign::knn_exact<float>(xv, self ? nullptr : &qv, k, metric, self, values.data(),
                               indices.data(), opt);
  } catch (const std::exception& e) {
    ++g_failures;
    std::fprintf(stderr, "%s: knn_exact threw: %s\n", what, e.what());
    return;
  }
  const bool ip = metric == matalign::Metric::ip;
  auto score = [&](int64_t i, int64_t j) {
    double s = 0;
    for (int64_t t = 0; t < d; ++t) {
      const double a = qs[i * d + t], b = db[j * d + t];
      s += ip ? a * b : (a - b) * (a - b);
    }
    return s;
  };
  int bad = 0;
  for (int64_t i = 0; i < rows; ++i) {
    std::vector<double> all;
    double scale = 1.0;
    for (int64_t j = 0; j < n; ++j) {
      if (self && j == i) continue;
      all.push_back(score(i, j));
      scale = std::max(scale, std::fabs(all.back()));
    }
    std::sort(all.begin(), all.end());
    if (ip) std::reverse(all.begin(), all.end());
    const double tol = 1e-5 * scale * static_cast<double>(d);
    std::vector<int64_t> seen;
    for (int64_t t = 0; t < k; ++t) {
      const int64_t j = indices[i * k + t];
      const double v = values[i * k + t];
      bool ok = std::fabs(v - all[t]) <= tol;  // value lists agree (both sorted best first)
      ok = ok && j >= 0 && j < n && !(self && j == i);
      ok = ok && std::find(seen.begin(), seen.end(), j) == seen.end();
      ok = ok && std::fabs(score(i, j) - v) <= tol;  // the index carries its value
      if (t > 0) {
        const double prev = values[i * k + t - 1];
        ok = ok && (ip ? prev >= v : prev <= v);  // best first
      }
      seen.push_back(j);
      if (!ok && bad++ < 5)
        std::fprintf(stderr, "%s: row %lld pos %lld: got (%lld, %.9g), brute value %.9g\n", what,
                     static_cast<long long>(i), static_cast<long long>(t),
                     static_cast<long long>(j), v, all[t]);
    }
  }
  ++g_checks;
  if (bad) ++g_failures;
}

void test_knn_exact() {
  const int64_t n = 53, d = 13, k = 6, m = 19;
  const Mat x64 = gaussian(n, d, 31), q64 = gaussian(m, d, 32);
  std::vector<float> x(x64.begin(), x64.end()), q(q64.begin(), q64.end());
  // A duplicate row: self is excluded by index, so rows 3 and 5 are each other's nearest.
  std::copy(x.begin() + 3 * d, x.begin() + 4 * d, x.begin() + 5 * d);
  // every screen setting (int8/int16 run the portable kernels where there is no VNNI)
  for (matalign::Screen screen : {matalign::Screen::automatic, matalign::Screen::off,
                                  matalign::Screen::int8, matalign::Screen::int16})
    for (matalign::Metric metric : {matalign::Metric::ip, matalign::Metric::l2}) {
      const bool ip = metric == matalign::Metric::ip;
      check_knn(x, n, nullptr, 0, d, k, metric, 7, ip ? "self ip tile 7" : "self l2 tile 7", screen);
      check_knn(x, n, nullptr, 0, d, k, metric, 0, ip ? "self ip auto" : "self l2 auto", screen);
      check_knn(x, n, nullptr, 0, d, n - 1, metric, 7, ip ? "self ip k=n-1" : "self l2 k=n-1", screen);
      check_knn(x, n, &q, m, d, k, metric, 7, ip ? "query ip tile 7" : "query l2 tile 7", screen);
      check_knn(x, n, &q, m, d, 1, metric, 0, ip ? "query ip k=1" : "query l2 k=1", screen);
    }
}

}  // namespace

// shifted_gram against a direct float64 sum, with ragged blocks and 1..3 threads (results
// must be identical across thread counts: block partials are added in block order).
void test_shifted_gram() {
  std::mt19937_64 rng(7);
  std::normal_distribution<double> nd(3.0, 1.0);
  const int64_t n = 203, d1 = 5, d2 = 3, D = d1 + d2;
  std::vector<float> x(n * d1), y(n * d2);
  for (auto& v : x) v = static_cast<float>(nd(rng));
  for (auto& v : y) v = static_cast<float>(nd(rng));
  std::vector<matalign::MatrixView<float>> spaces = {{x.data(), n, d1, d1, 1}, {y.data(), n, d2, d2, 1}};
  std::vector<double> shift(D, 3.0), ref(D * D, 0.0), first;
  for (int64_t i = 0; i < n; ++i)
    for (int64_t a = 0; a < D; ++a)
      for (int64_t b = 0; b < D; ++b) {
        const double za = (a < d1 ? x[i * d1 + a] : y[i * d2 + a - d1]) - 3.0;
        const double zb = (b < d1 ? x[i * d1 + b] : y[i * d2 + b - d1]) - 3.0;
        ref[a * D + b] += za * zb;
      }
  for (int nt = 1; nt <= 3; ++nt) {
    std::vector<double> gram(D * D), colsum(D);
    std::vector<uint8_t> constant(D);
    matalign::GramOptions o;
    o.block_rows = 17;
    o.n_threads = nt;
    matalign::shifted_gram<float>(spaces, shift.data(), gram.data(), colsum.data(), constant.data(), o);
    for (int64_t e = 0; e < D * D; ++e) CHECK(std::fabs(gram[e] - ref[e]) <= 1e-9 * (1.0 + std::fabs(ref[e])));
    for (int64_t a = 0; a < D; ++a) CHECK(constant[a] == 0);
    if (first.empty()) first = gram;
    else CHECK(first == gram);
  }
  check_throws("shifted_gram with no spaces", [&] {
    std::vector<matalign::MatrixView<float>> none;
    std::vector<double> g(1), c(1);
    std::vector<uint8_t> k(1);
    matalign::shifted_gram<float>(none, shift.data(), g.data(), c.data(), k.data(), matalign::GramOptions{});
  }, {"shifted_gram", "at least one space"});
}

// The symmetric tile loop, in rounds and in any order: every tile with col_block >= row_block
// exactly once, and no two tiles that share a block (row or column) running at once (each
// body holds its blocks for a moment so overlaps would be seen); an exception thrown by one
// tile stops the loop and comes back to the caller.
void test_tile_loop() {
  for (bool any_order : {false, true})
    for (int nt : {1, 2, 3, 4})
      for (int64_t n : {int64_t(1), int64_t(7), int64_t(40), int64_t(53)})
        for (int64_t tile : {int64_t(1), int64_t(5), int64_t(8), int64_t(64)}) {
          const int64_t B = (n + tile - 1) / tile;
          if (B > 16) continue;  // (the busy-wait below makes large grids slow)
          std::unique_ptr<std::atomic<int>[]> held(new std::atomic<int>[B]), seen(new std::atomic<int>[B * B]);
          for (int64_t b = 0; b < B; ++b) held[b] = 0;
          for (int64_t b = 0; b < B * B; ++b) seen[b] = 0;
          std::atomic<int> overlaps{0}, bad_tid{0}, bad_geometry{0};
          matalign::TileLoopOptions o;
          o.n_threads = nt;
          o.any_order = any_order;
          matalign::for_each_tile(n, n, tile, tile, true, [&](const matalign::Tile& t, int tid) {
            if (tid < 0 || tid >= nt) ++bad_tid;
            const int64_t I = t.row_block, J = t.col_block;
            if (held[I]++ != 0) ++overlaps;
            if (J != I && held[J]++ != 0) ++overlaps;
            ++seen[I * B + J];
            std::this_thread::sleep_for(std::chrono::microseconds(50));
            --held[I];
            if (J != I) --held[J];
            if (t.r0 != I * tile || t.c0 != J * tile || t.r1 != std::min(n, t.r0 + tile) ||
                t.c1 != std::min(n, t.c0 + tile) || t.diagonal != (I == J))
              ++bad_geometry;
          }, o);
          CHECK(overlaps == 0);
          CHECK(bad_tid == 0);
          CHECK(bad_geometry == 0);
          for (int64_t I = 0; I < B; ++I)
            for (int64_t J = 0; J < B; ++J) CHECK(seen[I * B + J] == (J >= I ? 1 : 0));
          // an exception in one tile reaches the caller, and the loop stops
          std::atomic<int> ran{0};
          check_throws("tile loop body", [&] {
            matalign::for_each_tile(n, n, tile, tile, true, [&](const matalign::Tile& t, int) {
              ++ran;
              if (t.row_block == 0 && t.col_block == B - 1) throw std::invalid_argument("tile body failed");
            }, o);
          }, {"tile body failed"});
          CHECK(ran >= 1 && ran <= B * (B + 1) / 2);
          // a progress hook that says stop (it is polled every 50 ms: tiles of 4 ms, 66 of
          // them): Cancelled, and no tile starts after it said so but those already picked
          if (B == 11 && nt >= 2) {
            std::atomic<int> after{0};
            std::atomic<bool> said{false};
            matalign::TileLoopOptions oc = o;
            oc.progress = [&](int64_t done, int64_t) {
              if (done == 0) return true;
              said = true;
              return false;
            };
            bool cancelled = false;
            try {
              matalign::for_each_tile(n, n, tile, tile, true, [&](const matalign::Tile&, int) {
                if (said) ++after;
                std::this_thread::sleep_for(std::chrono::milliseconds(4));
              }, oc);
            } catch (const matalign::Cancelled&) {
              cancelled = true;
            }
            CHECK(cancelled);
            CHECK(after <= nt);  // (tiles already started, or picked before the flag was seen)
            CHECK(said);
          }
        }
}


// ------------------------------------------------------------------------------------------
// *_workspace_bytes against the bytes the calls allocate (the counter above), for several
// shapes: the estimate must cover the peak, and (float GEMM paths) not overshoot it by more
// than a small margin.
void check_covers(const char* what, int64_t estimate, int64_t measured, bool tight) {
  ++g_checks;
  const bool ok = measured <= estimate && (!tight || estimate <= 2 * measured + (64 << 10));
  if (!ok) {
    ++g_failures;
    std::fprintf(stderr, "%s: estimate %lld bytes, measured peak %lld bytes\n", what,
                 static_cast<long long>(estimate), static_cast<long long>(measured));
  }
}

template <class T>
void workspace_knn_case(int64_t n, int64_t m, int64_t d, int64_t k, matalign::Metric metric,
                        bool self, bool rescore, int64_t tile, matalign::Screen screen) {
  const Mat x64 = gaussian(n, d, 101 + n), q64 = gaussian(m, d, 202 + m);
  const std::vector<T> x(x64.begin(), x64.end()), q(q64.begin(), q64.end());
  const int64_t rows = self ? n : m;
  const matalign::MatrixView<T> xv{x.data(), n, d, d, 1}, qv{q.data(), m, d, d, 1};
  matalign::KnnOptions opt;
  opt.n_threads = 2;
  opt.rescore = rescore;
  opt.tile_rows = tile;
  opt.tile_cols = tile;
  opt.screen = screen;
  const int64_t measured = peak_bytes([&] {
    std::vector<T> values(static_cast<size_t>(rows * k));
    std::vector<int64_t> indices(static_cast<size_t>(rows * k));
    matalign::knn_exact<T>(xv, self ? nullptr : &qv, k, metric, self, values.data(),
                           indices.data(), opt);
  });
  const bool l2 = metric == matalign::Metric::l2;
  const int nt = matalign::resolve_threads(2);
  const int64_t est = matalign::knn_workspace_bytes(n, rows, d, k, sizeof(T), l2, rescore, nt,
                                                    tile, tile, screen, self);
  char what[160];
  std::snprintf(what, sizeof what, "knn_workspace_bytes(n=%lld, m=%lld, d=%lld, k=%lld, %s, %s%s, screen=%s, T=%s)",
                static_cast<long long>(n), static_cast<long long>(rows), static_cast<long long>(d),
                static_cast<long long>(k), l2 ? "l2" : "ip", self ? "self" : "queries",
                rescore ? ", rescore" : "", matalign::screen_name(screen), sizeof(T) == 4 ? "f32" : "f64");
  const bool screened = screen == matalign::Screen::int8 || screen == matalign::Screen::int16;
  // (a screened estimate holds 64 MB for float64 blocks of rows the bound cannot separate;
  // Gaussian rows never need them, so the rest of the estimate must cover the peak)
  check_covers(what, screened ? est - (int64_t(64) << 20) : est, measured, !screened);
}

void test_workspace_bytes() {
  using matalign::Metric;
  using matalign::Screen;
  for (Screen sc : {Screen::off, Screen::int8, Screen::int16})
    for (Metric mt : {Metric::ip, Metric::l2}) {
      workspace_knn_case<float>(700, 0, 40, 10, mt, true, false, 0, sc);
      workspace_knn_case<float>(500, 130, 33, 60, mt, false, false, 0, sc);
      workspace_knn_case<double>(300, 0, 17, 5, mt, true, false, 64, sc);
    }
  workspace_knn_case<float>(400, 0, 24, 12, Metric::l2, true, true, 0, Screen::off);
  workspace_knn_case<double>(350, 90, 24, 7, Metric::ip, false, true, 0, Screen::off);
  workspace_knn_case<float>(3000, 0, 8, 3, Metric::ip, true, false, 0, Screen::off);

  const int nt = matalign::resolve_threads(2);
  // pair_sums over 1..3 spaces of different widths
  for (int64_t M = 1; M <= 3; ++M)
    for (int64_t n : {97, 1500}) {
      std::vector<Mat> data;
      std::vector<matalign::MatrixView<double>> views;
      std::vector<int64_t> dims;
      for (int64_t s = 0; s < M; ++s) dims.push_back(5 + 7 * s);
      for (int64_t s = 0; s < M; ++s) data.push_back(gaussian(n, dims[s], 300 + s));
      for (int64_t s = 0; s < M; ++s) views.push_back({data[s].data(), n, dims[s], dims[s], 1});
      matalign::PairwiseOptions po;
      po.n_threads = 2;
      const int64_t measured = peak_bytes([&] {
        std::vector<double> rowsums(static_cast<size_t>(M * n)), cross(static_cast<size_t>(M * M));
        matalign::pair_sums<double>(views, matalign::PairFn::distance, {}, rowsums.data(),
                                    cross.data(), po);
      });
      char what[96];
      std::snprintf(what, sizeof what, "pair_sums_workspace_bytes(n=%lld, M=%lld)",
                    static_cast<long long>(n), static_cast<long long>(M));
      check_covers(what, matalign::pair_sums_workspace_bytes(n, dims, 8, nt), measured, true);
    }
  // rank_count: float32 rows, float64 rows (the float32 prefilter) and float64 without it
  for (int64_t k : {1, 4})
    for (int variant = 0; variant < 3; ++variant) {
      const int64_t n = 800, d = 21;
      const Mat y64 = gaussian(n, d, 400 + k);
      const std::vector<float> y32(y64.begin(), y64.end());
      std::vector<int64_t> targets(static_cast<size_t>(n * k));
      for (int64_t i = 0; i < n; ++i)
        for (int64_t t = 0; t < k; ++t) targets[i * k + t] = (i + 1 + 37 * t) % n;
      matalign::PairwiseOptions po;
      po.n_threads = 2;
      po.prefilter = variant != 2;
      const int64_t measured = peak_bytes([&] {
        std::vector<int64_t> counts(static_cast<size_t>(n * k));
        std::vector<int64_t> tg(targets);  // the binding's int64 copy of the targets
        if (variant == 0)
          matalign::rank_count<float>({y32.data(), n, d, d, 1}, tg.data(), k, counts.data(), po);
        else
          matalign::rank_count<double>({y64.data(), n, d, d, 1}, tg.data(), k, counts.data(), po);
      });
      char what[96];
      std::snprintf(what, sizeof what, "rank_count_workspace_bytes(k=%lld, %s)",
                    static_cast<long long>(k), variant == 0 ? "f32" : variant == 1 ? "f64" : "f64 no prefilter");
      // (tight only where the estimate is of the path that ran: without the prefilter the
      // float64 estimate is the larger prefilter path)
      check_covers(what, matalign::rank_count_workspace_bytes(n, d, k, variant == 0 ? 4 : 8, nt),
                   measured, variant != 2);
    }
  // shifted_gram
  for (int64_t n : {50, 3000}) {
    const std::vector<int64_t> dims{9, 30};
    const Mat a = gaussian(n, dims[0], 500), b = gaussian(n, dims[1], 501);
    std::vector<matalign::MatrixView<double>> views{{a.data(), n, dims[0], dims[0], 1},
                                                    {b.data(), n, dims[1], dims[1], 1}};
    const int64_t D = dims[0] + dims[1];
    std::vector<double> shift(static_cast<size_t>(D), 0.0);
    matalign::GramOptions go;
    go.n_threads = 2;
    const int64_t measured = peak_bytes([&] {
      std::vector<double> gram(static_cast<size_t>(D * D)), colsum(static_cast<size_t>(D));
      std::vector<uint8_t> constant(static_cast<size_t>(D));
      matalign::shifted_gram<double>(views, shift.data(), gram.data(), colsum.data(),
                                     constant.data(), go);
    });
    check_covers(n == 50 ? "gram_workspace_bytes(n=50)" : "gram_workspace_bytes(n=3000)",
                 matalign::gram_workspace_bytes(n, dims, nt), measured, true);
  }
  // cknna on two kNN graphs
  for (int64_t n : {40, 2000}) {
    const int64_t k = 7;
    std::vector<int64_t> ix, iy;
    std::vector<double> vx(static_cast<size_t>(n * k)), vy(static_cast<size_t>(n * k));
    knn_from_gram(gram(gaussian(n, 6, 600 + n), n, 6), n, k, ix, vx);
    knn_from_gram(gram(gaussian(n, 6, 700 + n), n, 6), n, k, iy, vy);
    const int64_t measured = peak_bytes([&] {
      std::vector<double> per_row(static_cast<size_t>(n));
      matalign::cknna<double>(ix.data(), vx.data(), iy.data(), vy.data(), n, k, 0.0,
                              per_row.data(), 2);
    });
    check_covers(n == 40 ? "cknna_workspace_bytes(n=40)" : "cknna_workspace_bytes(n=2000)",
                 matalign::cknna_workspace_bytes(n, k), measured, true);
  }
}

void run(const char* name, void (*test)()) {
  try {
    test();
  } catch (const std::exception& e) {
    ++g_failures;
    std::fprintf(stderr, "%s: unexpected exception: %s\n", name, e.what());
  }
}

// resolve_threads(n_threads, work): "all cores" (0) gives one thread for a call below
// kSerialWork, all cores above it; an explicit count is honoured whatever the work.
void test_resolve_threads_work() {
  const int all = matalign::resolve_threads(0);
  CHECK(matalign::resolve_threads(0, 1.0) == 1);
  CHECK(matalign::resolve_threads(0, matalign::kSerialWork * 0.5) == 1);
  CHECK(matalign::resolve_threads(0, matalign::kSerialWork) == all);
  CHECK(matalign::resolve_threads(0, 1e15) == all);
  CHECK(matalign::resolve_threads(1, 1e15) == 1);
  CHECK(matalign::resolve_threads(2, 1.0) == matalign::resolve_threads(2));
}

int main() {
  run("resolve_threads_work", test_resolve_threads_work);
  run("mutual_knn_hand", test_mutual_knn_hand);
  run("mutual_knn_random", test_mutual_knn_random);
  run("cknna", test_cknna);
  run("knn_exact", test_knn_exact);
  run("shifted_gram", test_shifted_gram);
  run("tile_loop", test_tile_loop);
  run("workspace_bytes", test_workspace_bytes);
  std::printf("matalign_core_test: %d checks, %d failed\n", g_checks, g_failures);
  return g_failures == 0 ? 0 : 1;
}
