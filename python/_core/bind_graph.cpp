// mutual_knn, local_agreement, cknna_f32 / cknna_f64: check shapes, allocate outputs, release
// the GIL, call the core. No algorithm here.
#include <string>

#include "bindings.h"
#include "matalign/graph.h"

namespace matalign_py {

namespace {

using Index = py::array_t<int64_t, py::array::c_style>;
template <class T>
using Values = py::array_t<T, py::array::c_style>;

std::string shape_str(const py::array& a) {
  std::string s = "(";
  for (py::ssize_t d = 0; d < a.ndim(); ++d) {
    if (d) s += ", ";
    s += std::to_string(a.shape(d));
  }
  return s + (a.ndim() == 1 ? ",)" : ")");
}

/// All arrays must be 2-D with the shape of the first; returns (n, k).
std::pair<int64_t, int64_t> common_shape(
    const char* fn, std::initializer_list<std::pair<const char*, const py::array*>> arrays) {
  const auto& first = *arrays.begin();
  for (const auto& [name, a] : arrays) {
    if (a->ndim() != 2)
      throw py::value_error(std::string(fn) + ": " + name + " must be 2-D (n, k), got shape " +
                            shape_str(*a));
    if (a->shape(0) != first.second->shape(0) || a->shape(1) != first.second->shape(1))
      throw py::value_error(std::string(fn) + ": " + name + " has shape " + shape_str(*a) +
                            " but " + first.first + " has shape " + shape_str(*first.second) +
                            "; both graphs must have the same (n, k)");
  }
  return {first.second->shape(0), first.second->shape(1)};
}

double mutual_knn(const Index& idx_x, const Index& idx_y, int n_threads) {
  const auto [n, k] = common_shape("mutual_knn", {{"idx_x", &idx_x}, {"idx_y", &idx_y}});
  const int64_t* px = idx_x.data();
  const int64_t* py_ = idx_y.data();
  double r = 0;
  {
    py::gil_scoped_release release;
    r = matalign::mutual_knn(px, py_, n, k, nullptr, n_threads);
  }
  return r;
}

py::array_t<double> local_agreement(const Index& idx_x, const Index& idx_y, int n_threads) {
  const auto [n, k] = common_shape("local_agreement", {{"idx_x", &idx_x}, {"idx_y", &idx_y}});
  py::array_t<double> per_row(static_cast<py::ssize_t>(n));
  double* out = per_row.mutable_data();
  const int64_t* px = idx_x.data();
  const int64_t* py_ = idx_y.data();
  {
    py::gil_scoped_release release;
    matalign::mutual_knn(px, py_, n, k, out, n_threads);
  }
  return per_row;
}

template <class T>
py::tuple cknna(const Index& idx_x, const Values<T>& val_x, const Index& idx_y,
                const Values<T>& val_y, double eps, int n_threads) {
  const char* fn = sizeof(T) == 4 ? "cknna_f32" : "cknna_f64";
  const auto [n, k] = common_shape(
      fn, {{"idx_x", &idx_x}, {"val_x", &val_x}, {"idx_y", &idx_y}, {"val_y", &val_y}});
  py::array_t<double> per_row(static_cast<py::ssize_t>(n));
  double* out = per_row.mutable_data();
  const int64_t* ix = idx_x.data();
  const int64_t* iy = idx_y.data();
  const T* vx = val_x.data();
  const T* vy = val_y.data();
  matalign::CknnaResult r{};
  {
    py::gil_scoped_release release;
    r = matalign::cknna<T>(ix, vx, iy, vy, n, k, eps, out, n_threads);
  }
  return py::make_tuple(r.value, per_row, r.hsic_xy, r.hsic_xx, r.hsic_yy);
}

const char* kMutualDoc =
    "Mean over rows of |idx_x[i] ∩ idx_y[i]| / k (docs/METRICS.md).\n\n"
    "idx_x, idx_y: int64 (n, k), C-contiguous, self never listed, no repeats within a row.\n"
    "ValueError for mismatched shapes or an index outside [0, n), equal to its row or\n"
    "repeated (the message names the graph and the row). Releases the GIL.";

const char* kLocalDoc =
    "Per-structure |idx_x[i] ∩ idx_y[i]| / k as float64 (n,); its mean is mutual_knn.\n\n"
    "Same inputs and errors as mutual_knn. Releases the GIL.";

const char* kCknnaDoc =
    "CKNNA from two inner-product kNN graphs in O(n·k) (docs/METRICS.md, reference-code compatible).\n\n"
    "idx_*: int64 (n, k), C-contiguous, best first, self never listed. val_*: (n, k) of this\n"
    "function's dtype, C-contiguous, val_x[i, t] = <x_i, x_idx_x[i, t]> (likewise for y).\n"
    "eps: added to the denominator (0 = exact; 1e-6 = the reference code).\n\n"
    "Returns (value, per_row, hsic_xy, hsic_xx, hsic_yy): the float value; per_row float64\n"
    "(n,), row i's share of the numerator over the denominator, sum(per_row) == value; the\n"
    "three unbiased HSIC values. Accumulates in float64; results do not depend on n_threads.\n"
    "ValueError for mismatched shapes, bad indices, n < 4, eps < 0, or an undefined ratio\n"
    "(HSIC(K,K)·HSIC(L,L) < 0, or == 0 with eps == 0). Releases the GIL.";

}  // namespace

void bind_graph(py::module_& m) {
  m.def("mutual_knn", &mutual_knn, kMutualDoc, py::arg("idx_x").noconvert(),
        py::arg("idx_y").noconvert(), py::arg("n_threads") = 0);
  m.def("local_agreement", &local_agreement, kLocalDoc, py::arg("idx_x").noconvert(),
        py::arg("idx_y").noconvert(), py::arg("n_threads") = 0);
  m.def("cknna_f32", &cknna<float>, kCknnaDoc, py::arg("idx_x").noconvert(),
        py::arg("val_x").noconvert(), py::arg("idx_y").noconvert(),
        py::arg("val_y").noconvert(), py::arg("eps") = 0.0, py::arg("n_threads") = 0);
  m.def("cknna_f64", &cknna<double>, kCknnaDoc, py::arg("idx_x").noconvert(),
        py::arg("val_x").noconvert(), py::arg("idx_y").noconvert(),
        py::arg("val_y").noconvert(), py::arg("eps") = 0.0, py::arg("n_threads") = 0);
  m.def("cknna_workspace_bytes", &matalign::cknna_workspace_bytes,
        "Peak bytes cknna_* allocates for n rows and k neighbours (per-row output included).",
        py::arg("n"), py::arg("k"));
}

}  // namespace matalign_py
