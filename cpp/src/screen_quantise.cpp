// Quantisation of the kNN screen: see screen_quantise.h for the contract and screen.h for
// the bound it serves.
#include "screen_quantise.h"

#include <algorithm>
#include <cmath>

#include "matalign/common.h"

namespace matalign {
namespace detail {

namespace {

constexpr double kSlack = 4e-6;      // rounding allowance, relative to |s q|² or |x|²
constexpr double kUp = 1.0 + 1e-6;   // rounds a float32 copy of a bound term safely up

}  // namespace

template <class T>
void quantise(const MatrixView<T>& x, const Kernels<T>& K, bool l2, int nt,
              const std::vector<double>& mu, int bits, SideData& out) {
  const int64_t n = x.rows, d = x.cols, pad = kSidePad;
  double mu2 = 0.0;
  for (int64_t k = 0; k < d; ++k) mu2 += mu[k] * mu[k];
  out.dp = round_up(d, 4);
  // int8: ±127. int16: the largest level whose dp products still sum exactly in int32.
  const long qmax = bits == 8 ? 127L
      : std::min(32767L, static_cast<long>(std::floor(std::sqrt(2147483647.0 / static_cast<double>(out.dp)))));
  if (bits == 8) out.q.assign(static_cast<size_t>(mul_checked(n, out.dp, "int8 copy")), 0);
  else out.q16.assign(static_cast<size_t>(mul_checked(n, out.dp, "int16 copy")), 0);
  for (auto* v : {&out.s, &out.n, &out.t, &out.e, &out.g, &out.nhi, &out.nlo, &out.c, &out.dc})
    v->assign(static_cast<size_t>(n + pad), 0.0f);
  out.qsum.assign(static_cast<size_t>(n + pad), 0);
  if (l2) out.norm2.assign(static_cast<size_t>(n), 0.0);
  int bad = 0;
#pragma omp parallel num_threads(nt) reduction(| : bad)
  {
    std::vector<double> row(static_cast<size_t>(d));
    // Sums run in kLanes interleaved partial sums (vectorised; a different order than one
    // chain changes them by ~d·1e-16 relative, far inside the allowances below).
    constexpr int64_t kLanes = 8;
#pragma omp for schedule(static)
    for (int64_t r = 0; r < n; ++r) {
      for (int64_t k = 0; k < d; ++k) row[k] = static_cast<double>(x(r, k));
      double lmax[kLanes] = {}, lcr[kLanes] = {};
      int64_t k0 = 0;
      for (; k0 + kLanes <= d; k0 += kLanes)
        for (int64_t l = 0; l < kLanes; ++l) {
          const double v = row[k0 + l], c = v - mu[k0 + l];
          row[k0 + l] = c;
          lmax[l] = std::max(lmax[l], std::fabs(c));
          lcr[l] += mu[k0 + l] * c;
        }
      for (int64_t k = k0; k < d; ++k) {
        const double v = row[k], c = v - mu[k];
        row[k] = c;
        lmax[0] = std::max(lmax[0], std::fabs(c));
        lcr[0] += mu[k] * c;
      }
      double amax = 0.0, cr = 0.0;
      for (int64_t l = 0; l < kLanes; ++l) {
        amax = std::max(amax, lmax[l]);
        cr += lcr[l];
      }
      if (!l2) {
        // c = <μ, x'> + |μ|²/2 and an allowance for its rounding (double, ~d·1e-16 relative)
        // and for the two float32 additions of c terms to the approximate product
        cr += 0.5 * mu2;
        const double bound = std::fabs(cr) + 1e-12 * (std::sqrt(mu2) * std::sqrt(d) * amax + mu2);
        out.c[r] = static_cast<float>(cr);
        out.dc[r] = static_cast<float>(kSlack * bound + 1e-30);
        if (!(std::fabs(cr) <= 1e24)) bad = 1;
      }
      if (amax == 0.0) continue;  // x = μ: q = 0 and every bound term 0 (exact)
      const float sf = static_cast<float>(amax / static_cast<double>(qmax));
      const double s = static_cast<double>(sf);
      int8_t* q8 = bits == 8 ? out.q.data() + r * out.dp : nullptr;
      int16_t* q16 = bits == 8 ? nullptr : out.q16.data() + r * out.dp;
      // q = the nearest integer to x'/s (ties to even: adding and subtracting 1.5·2^52 rounds
      // any |t| < 2^51), clamped to ±qmax; the bounds use the q actually chosen.
      const double inv = 1.0 / s, lim = static_cast<double>(qmax), magic = 6755399441055744.0;
      double le2[kLanes] = {}, lx2[kLanes] = {}, lq2[kLanes] = {};
      int32_t lqs[kLanes] = {};
      auto level = [&](int64_t k, int64_t l) {
        const double t = std::min(lim, std::max(-lim, (row[k] * inv + magic) - magic));
        const int32_t v = static_cast<int32_t>(t);
        if (q8) q8[k] = static_cast<int8_t>(v);
        else q16[k] = static_cast<int16_t>(v);
        lqs[l] += v;
        const double qv = static_cast<double>(v);  // (the stored level, whatever t's precision)
        const double diff = row[k] - s * qv;
        le2[l] += diff * diff;
        lx2[l] += row[k] * row[k];
        lq2[l] += qv * qv;
      };
      for (k0 = 0; k0 + kLanes <= d; k0 += kLanes)
        for (int64_t l = 0; l < kLanes; ++l) level(k0 + l, l);
      for (int64_t k = k0; k < d; ++k) level(k, 0);
      double e2 = 0.0, x2 = 0.0, q2 = 0.0;
      int32_t qs = 0;
      for (int64_t l = 0; l < kLanes; ++l) {
        e2 += le2[l];
        x2 += lx2[l];
        q2 += lq2[l];
        qs += lqs[l];
      }
      const double nn = std::sqrt(x2), tt = s * std::sqrt(q2), ee = std::sqrt(e2);
      // Outside this range float32 bound arithmetic could overflow or underflow: the caller
      // then uses the direct kernel instead.
      if (!(nn >= 1e-12 && nn <= 1e12)) bad = 1;
      out.s[r] = sf;
      out.n[r] = static_cast<float>(nn * kUp);
      out.t[r] = static_cast<float>(tt * kUp);
      out.e[r] = static_cast<float>(ee * kUp);
      out.g[r] = static_cast<float>((ee + kSlack * tt) * kUp);
      out.nhi[r] = static_cast<float>(x2 * (1.0 - kSlack));
      out.nlo[r] = static_cast<float>(x2 * (1.0 + kSlack));
      out.qsum[r] = qs;
    }
  }
  out.in_range = bad == 0;
  if (l2) {
#pragma omp parallel num_threads(nt)
    {
      std::vector<double> row(static_cast<size_t>(d));
#pragma omp for schedule(static)
      for (int64_t r = 0; r < n; ++r) {
        for (int64_t k = 0; k < d; ++k) row[k] = static_cast<double>(x(r, k)) - mu[k];
        const T* p = &x(r, 0);
        K.dots_f64(row.data(), &p, x.col_stride, d, 1, &out.norm2[r], mu.data());
      }
    }
  }
}

template void quantise<float>(const MatrixView<float>&, const Kernels<float>&, bool, int,
                              const std::vector<double>&, int, SideData&);
template void quantise<double>(const MatrixView<double>&, const Kernels<double>&, bool, int,
                               const std::vector<double>&, int, SideData&);

}  // namespace detail
}  // namespace matalign
