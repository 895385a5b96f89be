// Shared helpers for the pybind11 binding files of matalign._core.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "matalign/common.h"

namespace matalign_py {
namespace py = pybind11;

void bind_info(py::module_& m);
void bind_knn(py::module_& m);
void bind_graph(py::module_& m);
void bind_pairwise(py::module_& m);

/// A strided view of a 2-D NumPy array of exactly dtype T (no conversion; the Python layer
/// has validated dtype and finiteness). Any strides are accepted: the engine packs tiles.
template <class T>
matalign::MatrixView<T> view2d(const py::handle& obj, const char* name) {
  if (!py::isinstance<py::array>(obj))
    throw std::invalid_argument(std::string(name) + " must be a NumPy array");
  const py::array a = py::reinterpret_borrow<py::array>(obj);
  if (a.ndim() != 2) throw std::invalid_argument(std::string(name) + " must be 2-D");
  if (!py::isinstance<py::array_t<T>>(a) || a.dtype().itemsize() != sizeof(T))
    throw std::invalid_argument(std::string(name) + " has the wrong dtype for this binding");
  matalign::MatrixView<T> v;
  v.data = static_cast<const T*>(a.data());
  v.rows = a.shape(0);
  v.cols = a.shape(1);
  if (a.strides(0) % static_cast<py::ssize_t>(sizeof(T)) || a.strides(1) % static_cast<py::ssize_t>(sizeof(T)))
    throw std::invalid_argument(std::string(name) + " has strides that are not a multiple of its item size");
  v.row_stride = a.strides(0) / static_cast<py::ssize_t>(sizeof(T));
  v.col_stride = a.strides(1) / static_cast<py::ssize_t>(sizeof(T));
  if (v.row_stride < 0 || v.col_stride < 0)
    throw std::invalid_argument(std::string(name) + " has negative strides; pass a copy (np.ascontiguousarray)");
  return v;
}

/// A ProgressFn that, between tiles, takes the GIL, checks for Ctrl-C (PyErr_CheckSignals)
/// and calls the optional Python callback(done, total). A pending Python exception stops the
/// computation; the caller then rethrows it with py::error_already_set.
inline matalign::ProgressFn make_progress(py::object callback) {
  return [callback](int64_t done, int64_t total) -> bool {
    py::gil_scoped_acquire gil;
    if (PyErr_CheckSignals() != 0) return false;
    if (!callback.is_none()) {
      try {
        callback(done, total);
      } catch (py::error_already_set& e) {
        e.restore();
        return false;
      }
    }
    return true;
  };
}

/// Run f() with the GIL released; translate a cancellation caused by a Python exception
/// (Ctrl-C, an exception in the progress callback) back into that exception.
template <class F>
void run_released(F&& f) {
  bool cancelled = false;
  {
    py::gil_scoped_release release;
    try {
      f();
    } catch (const matalign::Cancelled&) {
      cancelled = true;
    }
  }
  if (cancelled) {
    if (PyErr_Occurred()) throw py::error_already_set();
    throw py::value_error("computation cancelled");
  }
}

}  // namespace matalign_py
