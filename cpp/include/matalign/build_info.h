/// @file build_info.h
/// Build facts queryable at run time (version, compiler, OpenMP, SIMD levels).
#pragma once

#include <string>
#include <vector>

namespace matalign {

struct BuildInfo {
  std::string version;
  std::string compiler;
  bool openmp = false;
  std::string openmp_version;           ///< e.g. "4.5"; empty without OpenMP
  std::vector<std::string> simd_compiled;   ///< kernel levels in this build
  std::vector<std::string> simd_available;  ///< levels this CPU can run
  std::string simd_selected;            ///< level chosen by "auto"
  int max_threads = 1;                  ///< threads n_threads=0 resolves to
  std::string knn_screen;               ///< int8 screen kernel: "vnni" or "portable"
};

BuildInfo build_info();

}  // namespace matalign
