#include "matalign/build_info.h"

#include <sstream>

#include "matalign/common.h"
#include "screen.h"

namespace matalign {

BuildInfo build_info() {
  BuildInfo b;
  b.version = MATALIGN_VERSION;
  b.compiler = MATALIGN_COMPILER;
#ifdef _OPENMP
  b.openmp = true;
#ifdef MATALIGN_OPENMP_VERSION
  b.openmp_version = MATALIGN_OPENMP_VERSION;
#else
  b.openmp_version = std::to_string(_OPENMP);
#endif
#endif
  std::stringstream ss(MATALIGN_SIMD_COMPILED);
  std::string item;
  while (std::getline(ss, item, ',')) b.simd_compiled.push_back(item);
  for (Simd s : {Simd::scalar, Simd::avx2, Simd::avx512})
    if (simd_supported(s)) b.simd_available.push_back(simd_name(s));
  b.simd_selected = simd_name(simd_best());
  b.max_threads = resolve_threads(0);
  b.knn_screen = (simd_best() == Simd::avx512 && detail::screen_vnni_supported() &&
                  detail::screen_vnni_kernel() != nullptr)
                     ? "vnni"
                     : "portable";
  return b;
}

}  // namespace matalign
