// Run-time choice of the SIMD kernel level and thread-count resolution.
#include <pthread.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <string>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "matalign/common.h"

namespace matalign {

bool simd_supported(Simd s) {
  switch (s) {
    case Simd::automatic:
    case Simd::scalar:
      return true;
#if defined(MATALIGN_HAVE_X86_KERNELS)
    case Simd::avx2:
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case Simd::avx512:
      // libgcc's feature detection also checks that the OS saves the AVX-512 state (XCR0).
      return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
             __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
             __builtin_cpu_supports("fma");
#endif
    default:
      return false;
  }
}

Simd simd_best() {
  if (simd_supported(Simd::avx512)) return Simd::avx512;
  if (simd_supported(Simd::avx2)) return Simd::avx2;
  return Simd::scalar;
}

Simd simd_resolve(Simd s) { return s == Simd::automatic ? simd_best() : s; }

const char* simd_name(Simd s) {
  switch (s) {
    case Simd::avx512: return "avx512";
    case Simd::avx2: return "avx2";
    case Simd::automatic: return "auto";
    default: return "scalar";
  }
}

Simd simd_parse(const std::string& name) {
  if (name == "auto") return Simd::automatic;
  Simd s;
  if (name == "scalar") s = Simd::scalar;
  else if (name == "avx2") s = Simd::avx2;
  else if (name == "avx512") s = Simd::avx512;
  else
    throw std::invalid_argument("simd must be one of 'auto', 'scalar', 'avx2', 'avx512'; got '" +
                                name + "'");
  if (!simd_supported(s))
    throw std::invalid_argument(std::string("simd='") + name +
                                "' is not available on this CPU/build; available: see "
                                "matalign.build_info()['simd_available']");
  return s;
}

namespace {
// GNU libgomp's thread pool does not survive fork(): the first parallel region in a forked
// child (multiprocessing's default start method on Linux, DataLoader workers) would wait
// forever for threads that do not exist there. After a fork every call runs on one thread.
std::atomic<bool> g_forked{false};
void mark_forked() { g_forked.store(true); }
const bool g_atfork_registered = [] {
  pthread_atfork(nullptr, nullptr, &mark_forked);
  return true;
}();
}  // namespace

int resolve_threads(int n_threads) {
  (void)g_atfork_registered;
  MATALIGN_CHECK(n_threads >= 0, "n_threads must be >= 0 (0 = all cores); got ", n_threads);
  MATALIGN_CHECK(n_threads <= kMaxThreads, "n_threads must be <= ", kMaxThreads, "; got ",
                 n_threads);
  if (g_forked.load()) return 1;
#ifdef _OPENMP
  if (n_threads == 0) return omp_get_max_threads();
  return std::min(n_threads, std::max(1, omp_get_thread_limit()));
#else
  return 1;
#endif
}

int resolve_threads(int n_threads, double work) {
  const int nt = resolve_threads(n_threads);
  return (n_threads == 0 && work < kSerialWork) ? 1 : nt;
}

}  // namespace matalign
