/// @file common.h
/// Shared vocabulary of the matalign engine: checked sizes, strided matrix views, errors,
/// progress/cancellation callbacks. Plain C++17; no Python, no CUDA types.
#pragma once

#include <cstdint>
#include <functional>
#include <limits>
#include <sstream>
#include <stdexcept>
#include <string>

namespace matalign {

/// Progress and cancellation hook polled between tiles, from one thread only.
/// @param done  units of work finished so far
/// @param total units of work in this call
/// @return false to stop the computation (the call then throws matalign::Cancelled)
using ProgressFn = std::function<bool(int64_t done, int64_t total)>;

/// Thrown when a ProgressFn asked to stop.
struct Cancelled : std::runtime_error {
  Cancelled() : std::runtime_error("matalign: computation cancelled") {}
};

namespace detail {
template <class... Args>
std::string format(Args&&... args) {
  std::ostringstream s;
  (s << ... << args);
  return s.str();
}
}  // namespace detail

/// User error (bad value or shape) -> std::invalid_argument (ValueError in Python).
#define MATALIGN_CHECK(cond, ...)                                                        \
  do {                                                                                   \
    if (!(cond)) throw std::invalid_argument(::matalign::detail::format(__VA_ARGS__)); \
  } while (0)

/// Broken internal invariant -> std::logic_error (RuntimeError in Python). Never abort().
#define MATALIGN_INTERNAL(cond)                                                                 \
  do {                                                                                          \
    if (!(cond))                                                                                \
      throw std::logic_error(::matalign::detail::format("matalign internal error (", #cond,    \
                                                        ") at ", __FILE__, ":", __LINE__,      \
                                                        "; please report"));                    \
  } while (0)

/// a*b for sizes, throwing std::overflow_error instead of wrapping (N reaches millions).
inline int64_t mul_checked(int64_t a, int64_t b, const char* what) {
  int64_t r;
  if (a < 0 || b < 0 || __builtin_mul_overflow(a, b, &r))
    throw std::overflow_error(detail::format("matalign: size overflow computing ", what));
  return r;
}

/// A read-only strided view of a rows x cols matrix. Element (i, j) is
/// data[i * row_stride + j * col_stride] (strides in elements, may be any positive value),
/// so C order, F order, memory maps and slices are all read without a copy.
template <class T>
struct MatrixView {
  const T* data = nullptr;
  int64_t rows = 0;
  int64_t cols = 0;
  int64_t row_stride = 0;
  int64_t col_stride = 1;
  const T& operator()(int64_t i, int64_t j) const { return data[i * row_stride + j * col_stride]; }
};

/// SIMD kernel levels, chosen at run time from the CPU's features (see cpp/src/kernels.h for
/// the dispatch). `automatic` stands for simd_best() and is resolved once per call.
enum class Simd { automatic = -1, scalar = 0, avx2 = 1, avx512 = 2 };

/// Best level this CPU and this build support.
Simd simd_best();
/// The level a call runs: simd_best() for Simd::automatic, else s itself.
Simd simd_resolve(Simd s);
/// Whether a level is compiled in and supported by this CPU (automatic: always).
bool simd_supported(Simd s);
/// "auto" | "scalar" | "avx2" | "avx512"
const char* simd_name(Simd s);
/// Parse "auto" | "scalar" | "avx2" | "avx512" ("auto" -> Simd::automatic); throws
/// std::invalid_argument for other names or for a level this CPU/build cannot run.
Simd simd_parse(const std::string& name);

/// Upper bound accepted for n_threads (a typo such as 100000 must not abort the process).
constexpr int kMaxThreads = 1024;

/// Number of threads a call with n_threads uses (0 = all cores, OMP_NUM_THREADS respected;
/// 1 in a process forked after OpenMP started, where libgomp's pool would deadlock).
/// @throws std::invalid_argument outside 0..kMaxThreads
int resolve_threads(int n_threads);

/// Work (multiply-adds or comparable element operations) below which n_threads = 0 runs on
/// one thread: a parallel region's fork and join cost more than such a call, and far more
/// when the cores are shared (a descheduled team member holds the join for a time slice).
/// About a millisecond of one core's work.
constexpr double kSerialWork = double(1 << 22);

/// resolve_threads for a call of about `work` operations: n_threads = 0 ("all cores") gives
/// one thread below kSerialWork; an explicit n_threads is always honoured. Results never depend
/// on the thread count (every engine reduction has a fixed order), only the time does.
int resolve_threads(int n_threads, double work);

}  // namespace matalign
