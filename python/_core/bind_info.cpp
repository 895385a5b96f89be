// build_info() and device queries.
#include "bindings.h"
#include "matalign/build_info.h"

#ifdef MATALIGN_HAS_CUDA
#include "matalign/cuda/device.h"
#endif

namespace matalign_py {

void bind_info(py::module_& m) {
  m.def(
      "build_info",
      []() {
        const matalign::BuildInfo b = matalign::build_info();
        py::dict d;
        d["version"] = b.version;
        d["compiler"] = b.compiler;
        d["openmp"] = b.openmp;
        d["openmp_version"] = b.openmp ? py::object(py::str(b.openmp_version)) : py::none();
        d["blas"] = py::none();  // the engine uses its own micro-kernels, no BLAS
        d["simd_compiled"] = b.simd_compiled;
        d["simd_available"] = b.simd_available;
        d["simd_selected"] = b.simd_selected;
        d["max_threads"] = b.max_threads;
        d["knn_screen"] = b.knn_screen;
#ifdef MATALIGN_HAS_CUDA
        d["cuda"] = true;
        d["cuda_version"] = matalign::cuda::compiled_cuda_version();
        d["cuda_architectures"] = matalign::cuda::compiled_architectures();
        d["cuda_runtime_error"] = matalign::cuda::device_query_error();
#else
        d["cuda"] = false;
        d["cuda_version"] = py::none();
        d["cuda_architectures"] = std::vector<std::string>{};
        d["cuda_runtime_error"] = py::none();
#endif
        return d;
      },
      "Build facts: version, compiler, OpenMP, SIMD levels compiled/available/selected, CUDA.");
  m.def(
      "cuda_device_count",
      []() -> int {
#ifdef MATALIGN_HAS_CUDA
        return matalign::cuda::device_count();
#else
        return 0;
#endif
      },
      "Number of visible CUDA devices (0 when built without CUDA or none is visible).");
}

}  // namespace matalign_py
