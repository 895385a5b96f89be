// matalign from C++, without Python: exact kNN graphs and CKNNA of two small embedding
// spaces generated here, printed with the kNN graph checked against a float64 brute force.
//
//   cmake -S examples/cpp -B build/example -DCMAKE_PREFIX_PATH=<where matalign is installed>
//   cmake --build build/example && build/example/matalign_example
//
// The data are reproducible anywhere (integer hashing, no random-number library):
// X[i][j] = u(i, j) - 0.5 and Y[i][j] = X[i][j] + 0.5 * (u'(i, j) - 0.5), u in [0, 1).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <vector>

#include <matalign/graph.h>
#include <matalign/knn.h>

namespace {

// A 32-bit integer hash (xorshift-multiply), mapped to [0, 1) with 24 bits: exact in float.
float uniform(uint32_t i, uint32_t j, uint32_t salt) {
  uint32_t h = i * 0x9E3779B1u ^ (j + 0x7F4A7C15u) * 0x85EBCA77u ^ salt * 0xC2B2AE3Du;
  h ^= h >> 16;
  h *= 0x7FEB352Du;
  h ^= h >> 15;
  h *= 0x846CA68Bu;
  h ^= h >> 16;
  return static_cast<float>(h >> 8) / 16777216.0f;
}

// True when every index of the engine's row that the float64 brute force does not list is
// a tie at the k-th value (within a float32 rounding bound), and no row lists itself.
bool check_graph(const std::vector<float>& x, int64_t n, int64_t d, int64_t k,
                 const std::vector<int64_t>& idx) {
  std::vector<double> s(n);
  std::vector<int64_t> order(n);
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      double acc = 0.0;
      for (int64_t c = 0; c < d; ++c) acc += double(x[i * d + c]) * double(x[j * d + c]);
      s[j] = acc;
    }
    s[i] = -INFINITY;  // a row is never its own neighbour
    for (int64_t j = 0; j < n; ++j) order[j] = j;
    std::partial_sort(order.begin(), order.begin() + k, order.end(),
                      [&](int64_t a, int64_t b) { return s[a] > s[b] || (s[a] == s[b] && a < b); });
    const double kth = s[order[k - 1]];
    for (int64_t t = 0; t < k; ++t) {
      const int64_t j = idx[i * k + t];
      if (j == i || j < 0 || j >= n) return false;
      const bool listed = std::find(order.begin(), order.begin() + k, j) != order.begin() + k;
      if (!listed && std::fabs(s[j] - kth) > 1e-5) return false;
    }
  }
  return true;
}

}  // namespace

int main() {
  const int64_t n = 400, d = 16, k = 10;
  std::vector<float> x(n * d), y(n * d);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < d; ++j) {
      x[i * d + j] = uniform(uint32_t(i), uint32_t(j), 1) - 0.5f;
      y[i * d + j] = x[i * d + j] + 0.5f * (uniform(uint32_t(i), uint32_t(j), 2) - 0.5f);
    }

  // Exact kNN graphs by inner product, self excluded (C order views: row stride d).
  const matalign::MatrixView<float> vx{x.data(), n, d, d, 1}, vy{y.data(), n, d, d, 1};
  std::vector<float> val_x(n * k), val_y(n * k);
  std::vector<int64_t> idx_x(n * k), idx_y(n * k);
  matalign::KnnOptions options;
  matalign::knn_exact<float>(vx, nullptr, k, matalign::Metric::ip, true, val_x.data(), idx_x.data(),
                      options);
  matalign::knn_exact<float>(vy, nullptr, k, matalign::Metric::ip, true, val_y.data(), idx_y.data(),
                      options);

  const double mknn = matalign::mutual_knn(idx_x.data(), idx_y.data(), n, k, nullptr);
  const matalign::CknnaResult r = matalign::cknna(idx_x.data(), val_x.data(), idx_y.data(),
                                                  val_y.data(), n, k, 0.0, nullptr);

  std::printf("matalign C++ example: N = %lld, D = %lld, k = %lld, inner product, float32\n",
              (long long)n, (long long)d, (long long)k);
  std::printf("kNN of X, row 0: ");
  for (int64_t t = 0; t < k; ++t) std::printf("%lld ", (long long)idx_x[t]);
  std::printf("\nkNN check against float64 brute force: %s\n",
              check_graph(x, n, d, k, idx_x) && check_graph(y, n, d, k, idx_y) ? "ok" : "FAILED");
  std::printf("mutual_knn = %.6f\n", mknn);
  std::printf("cknna = %.6f (hsic_xy %.6g, hsic_xx %.6g, hsic_yy %.6g)\n", r.value, r.hsic_xy,
              r.hsic_xx, r.hsic_yy);
  return 0;
}
