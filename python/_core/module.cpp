// matalign._core: one pybind11 module; thin functions, no algorithms.
#include "bindings.h"

#ifdef MATALIGN_HAS_CUDA
namespace matalign_py {
void bind_cuda(py::module_& m);  // bind_cuda.cpp, built only with CUDA
}
#endif

PYBIND11_MODULE(_core, m) {
  m.doc() = "matalign compiled engine (C++/OpenMP, optional CUDA). Use the matalign package.";
  matalign_py::bind_info(m);
  matalign_py::bind_knn(m);
  matalign_py::bind_graph(m);
  matalign_py::bind_pairwise(m);
#ifdef MATALIGN_HAS_CUDA
  matalign_py::bind_cuda(m);
#endif
}
