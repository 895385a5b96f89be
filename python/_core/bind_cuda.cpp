// The CUDA engine's entries (compiled only with MATALIGN_HAS_CUDA): *_cuda_f32 / *_cuda_f64.
// Thin: convert, release the GIL, call matalign::cuda, return host arrays.
//
// A matrix argument is either a NumPy array (host memory; copied to the device in row blocks)
// or a device descriptor tuple (data_ptr, rows, cols, row_stride, col_stride) with strides
// in elements, which the Python layer builds from __cuda_array_interface__ after checking
// dtype, device id and finiteness. `device` is the CUDA device id, `stream` the cudaStream_t
// the call runs on as an integer (0 = legacy default stream), `wait_streams` the producer
// streams of the inputs, each waited for (an event) before the call reads anything.
#include <cmath>
#include <string>
#include <vector>

#include "bindings.h"
#include "kernels.h"          // cpp/src: the CPU engine's column centre and float kernels
#include "matalign/cuda/engine.h"
#include "matalign/cuda/errors.h"
#include "matalign/detail/screen_bound.h"
#include "screen_quantise.h"  // cpp/src: the CPU screen's quantisation (one function for both)

namespace matalign_py {

namespace {

namespace mc = matalign::cuda;

template <class T>
mc::Matrix<T> matrix_arg(const py::handle& obj, const char* name) {
  mc::Matrix<T> m;
  if (py::isinstance<py::tuple>(obj)) {
    const py::tuple t = py::reinterpret_borrow<py::tuple>(obj);
    if (t.size() != 5)
      throw std::invalid_argument(std::string(name) +
                                  ": a device matrix is (data_ptr, rows, cols, row_stride, col_stride)");
    m.data = reinterpret_cast<const T*>(t[0].cast<std::uintptr_t>());
    m.rows = t[1].cast<int64_t>();
    m.cols = t[2].cast<int64_t>();
    m.row_stride = t[3].cast<int64_t>();
    m.col_stride = t[4].cast<int64_t>();
    m.on_device = true;
    return m;
  }
  const matalign::MatrixView<T> v = view2d<T>(obj, name);
  m.data = v.data;
  m.rows = v.rows;
  m.cols = v.cols;
  m.row_stride = v.row_stride;
  m.col_stride = v.col_stride;
  m.on_device = false;
  return m;
}

using Streams = std::vector<std::uintptr_t>;

mc::Launch make_launch(int device, std::uintptr_t stream, const Streams& waits, int64_t tile_rows,
                       int64_t tile_cols, py::object progress) {
  mc::Launch l;
  l.device = device;
  l.stream = stream;
  l.wait_streams = waits;
  l.tile_rows = tile_rows;
  l.tile_cols = tile_cols;
  l.progress = make_progress(std::move(progress));
  return l;
}

template <class T>
py::tuple knn_exact(const py::object& x, const py::object& queries, int64_t k, const std::string& metric,
                    bool exclude_self, bool normalize, int device, std::uintptr_t stream,
                    const Streams& wait_streams, int64_t tile_rows, int64_t tile_cols,
                    py::object progress) {
  if (metric != "ip" && metric != "l2")
    throw std::invalid_argument("metric must be 'ip' or 'l2' at the engine level; got '" + metric + "'");
  const mc::Matrix<T> xm = matrix_arg<T>(x, "X");
  mc::Matrix<T> qm;
  const bool self = queries.is_none();
  if (!self) qm = matrix_arg<T>(queries, "queries");
  const int64_t rows = self ? xm.rows : qm.rows;
  if (k < 1) throw std::invalid_argument("k must be >= 1, got " + std::to_string(k));
  matalign::mul_checked(rows, k, "output size");
  py::array_t<T> values({static_cast<py::ssize_t>(rows), static_cast<py::ssize_t>(k)});
  py::array_t<int64_t> indices({static_cast<py::ssize_t>(rows), static_cast<py::ssize_t>(k)});
  T* vp = values.mutable_data();
  int64_t* ip = indices.mutable_data();
  const mc::Launch l =
      make_launch(device, stream, wait_streams, tile_rows, tile_cols, std::move(progress));
  run_released([&] {
    mc::knn_exact<T>(xm, self ? nullptr : &qm, k, metric == "ip", exclude_self, normalize, vp, ip, l);
  });
  return py::make_tuple(values, indices);
}

/// One side of the GPU screen, quantised on the host by the CPU screen's own function: int8
/// codes (rows × dp) and kScreenTerms floats per row (the bound terms and the re-scoring
/// term w of the GPU's exact chain in T).
struct HostSide {
  matalign::detail::SideData sd;
  std::vector<float> terms;
  mc::ScreenSide view() const {
    mc::ScreenSide v;
    v.q = sd.q.data();
    v.rows = static_cast<int64_t>(sd.s.size());
    v.dp = sd.dp;
    v.terms = terms.data();
    return v;
  }
};

/// Quantise x (centre mu, the database's) and fill its terms; false where the screen does not
/// apply (quantise's range check).
template <class T>
bool host_side(const matalign::MatrixView<T>& x, bool l2, const std::vector<double>& mu, int nt,
               HostSide& out) {
  namespace md = matalign::detail;
  const md::Kernels<T> K = md::kernels_for<T>(matalign::simd_best());
  md::quantise(x, K, l2, nt, mu, 8, out.sd);
  if (!out.sd.in_range) return false;
  const int64_t n = x.rows, d = x.cols;
  out.terms.assign(static_cast<size_t>(n * mc::kScreenTerms), 0.0f);
#pragma omp parallel for num_threads(nt) schedule(static)
  for (int64_t r = 0; r < n; ++r) {
    // |x|² of the row the GPU scores: raw (ip) or centred on mu (l2), in double
    double n2 = 0.0;
    for (int64_t c = 0; c < d; ++c) {
      const double v = static_cast<double>(x(r, c)) - (l2 ? mu[static_cast<size_t>(c)] : 0.0);
      n2 += v * v;
    }
    float* t = out.terms.data() + r * mc::kScreenTerms;
    const md::SideData& s = out.sd;
    const size_t i = static_cast<size_t>(r);
    t[0] = s.s[i], t[1] = s.n[i], t[2] = s.t[i], t[3] = s.e[i], t[4] = s.g[i];
    t[5] = s.nhi[i], t[6] = s.nlo[i], t[7] = s.c[i], t[8] = s.dc[i];
    t[9] = md::screen_rescore_term(n2, d, static_cast<int64_t>(sizeof(T)), l2);
  }
  return true;
}

template <class T>
py::tuple knn_screen(const py::object& x, const py::object& queries, const py::object& x_host,
                     const py::object& queries_host, int64_t k, const std::string& metric,
                     bool exclude_self, int device, std::uintptr_t stream,
                     const Streams& wait_streams, int64_t tile_rows, int64_t tile_cols,
                     py::object progress) {
  if (metric != "ip" && metric != "l2")
    throw std::invalid_argument("metric must be 'ip' or 'l2' at the engine level; got '" + metric + "'");
  const mc::Matrix<T> xm = matrix_arg<T>(x, "X");
  const bool self = queries.is_none();
  mc::Matrix<T> qm;
  if (!self) qm = matrix_arg<T>(queries, "queries");
  if (self != queries_host.is_none())
    throw std::invalid_argument("queries_host must be given exactly when queries is");
  const matalign::MatrixView<T> xv = view2d<T>(x_host, "x_host");
  matalign::MatrixView<T> qv{};
  if (!self) qv = view2d<T>(queries_host, "queries_host");
  if (xv.rows != xm.rows || xv.cols != xm.cols || (!self && (qv.rows != qm.rows || qv.cols != qm.cols)))
    throw std::invalid_argument("x_host / queries_host must be host copies of X / queries (same shapes)");
  const int64_t rows = self ? xm.rows : qm.rows;
  if (k < 1) throw std::invalid_argument("k must be >= 1, got " + std::to_string(k));
  matalign::mul_checked(rows, k, "output size");
  py::array_t<T> values({static_cast<py::ssize_t>(rows), static_cast<py::ssize_t>(k)});
  py::array_t<int64_t> indices({static_cast<py::ssize_t>(rows), static_cast<py::ssize_t>(k)});
  T* vp = values.mutable_data();
  int64_t* ip = indices.mutable_data();
  const mc::Launch l =
      make_launch(device, stream, wait_streams, tile_rows, tile_cols, std::move(progress));
  const bool l2 = metric == "l2";
  bool screened = false;
  mc::ScreenStats st;
  run_released([&] {
    const int nt = matalign::resolve_threads(0);
    const int64_t d = xv.cols;
    std::vector<double> mu(static_cast<size_t>(d), 0.0);
    HostSide xs, qs;
    bool ok = xv.rows < int64_t(0xFFFFFFFF) && matalign::detail::round_up(d, 4) <= 60000;
    if (ok) {
      matalign::detail::column_centre(xv, nt, mu.data());
      ok = host_side(xv, l2, mu, nt, xs) && (self || host_side(qv, l2, mu, nt, qs));
    }
    if (ok) {
      const mc::ScreenSide xsv = xs.view(), qsv = self ? mc::ScreenSide{} : qs.view();
      mc::knn_screen<T>(xm, self ? nullptr : &qm, k, metric == "ip", exclude_self, xsv,
                        self ? nullptr : &qsv, vp, ip, l, &st);
      screened = true;
    } else {
      mc::knn_exact<T>(xm, self ? nullptr : &qm, k, metric == "ip", exclude_self, false, vp, ip, l);
    }
  });
  py::dict info;
  info["screened"] = screened;
  info["seed_columns"] = st.seed_columns;
  info["tiles"] = st.tiles;
  info["survivors"] = st.survivors;
  info["overflow_lines"] = st.overflow_lines;
  info["merged"] = st.merged;
  return py::make_tuple(values, indices, info);
}

template <class T>
py::tuple pair_sums(const py::list& spaces, const std::string& fn, const std::vector<double>& gamma,
                    int device, std::uintptr_t stream, const Streams& wait_streams,
                    int64_t tile_rows, py::object progress) {
  std::vector<mc::Matrix<T>> mats;
  for (size_t m = 0; m < spaces.size(); ++m) {
    const std::string label = "spaces[" + std::to_string(m) + "]";
    mats.push_back(matrix_arg<T>(spaces[m], label.c_str()));
  }
  if (mats.empty()) throw std::invalid_argument("pair_sums: spaces is empty");
  matalign::PairFn f;
  if (fn == "distance") f = matalign::PairFn::distance;
  else if (fn == "rbf") f = matalign::PairFn::rbf;
  else throw std::invalid_argument("fn must be 'distance' or 'rbf'; got '" + fn + "'");
  const auto M = static_cast<py::ssize_t>(mats.size());
  const auto n = static_cast<py::ssize_t>(mats[0].rows);
  py::array_t<double> rowsums({M, n});
  py::array_t<double> cross({M, M});
  double* rp = rowsums.mutable_data();
  double* cp = cross.mutable_data();
  const mc::Launch l = make_launch(device, stream, wait_streams, tile_rows, tile_rows, std::move(progress));
  run_released([&] { mc::pair_sums<T>(mats, f, gamma, rp, cp, l); });
  return py::make_tuple(rowsums, cross);
}

template <class T>
py::array_t<int64_t> rank_count(const py::object& y, const py::array_t<int64_t, py::array::c_style>& targets,
                                int device, std::uintptr_t stream, const Streams& wait_streams,
                    int64_t tile_rows, py::object progress) {
  const mc::Matrix<T> ym = matrix_arg<T>(y, "y");
  if (targets.ndim() != 2 || targets.shape(0) != ym.rows)
    throw std::invalid_argument("targets must have shape (n, k) with n = y.shape[0]");
  const int64_t k = targets.shape(1);
  py::array_t<int64_t> counts({static_cast<py::ssize_t>(ym.rows), static_cast<py::ssize_t>(k)});
  int64_t* cp = counts.mutable_data();
  const int64_t* tp = targets.data();
  const mc::Launch l = make_launch(device, stream, wait_streams, tile_rows, tile_rows, std::move(progress));
  run_released([&] { mc::rank_count<T>(ym, tp, k, cp, l); });
  return counts;
}

using Index = py::array_t<int64_t, py::array::c_style>;

void same_shape(const char* fn, const py::array& a, const py::array& b) {
  if (a.ndim() != 2 || b.ndim() != 2 || a.shape(0) != b.shape(0) || a.shape(1) != b.shape(1))
    throw py::value_error(std::string(fn) + ": both graphs must be 2-D arrays of the same (n, k)");
}

template <class T>
py::tuple cknna(const Index& idx_x, const py::array_t<T, py::array::c_style>& val_x, const Index& idx_y,
                const py::array_t<T, py::array::c_style>& val_y, double eps, int device,
                std::uintptr_t stream, const Streams& wait_streams) {
  same_shape("cknna", idx_x, idx_y);
  same_shape("cknna", idx_x, val_x);
  same_shape("cknna", idx_x, val_y);
  const int64_t n = idx_x.shape(0), k = idx_x.shape(1);
  const int64_t* px = idx_x.data();
  const int64_t* py_ = idx_y.data();
  const T* vx = val_x.data();
  const T* vy = val_y.data();
  const mc::Launch l = make_launch(device, stream, wait_streams, 0, 0, py::none());
  matalign::CknnaResult r{};
  run_released([&] { r = mc::cknna<T>(px, vx, py_, vy, n, k, eps, l); });
  // Same tuple as cknna_f32/f64; per_row is not computed on the device (None).
  return py::make_tuple(r.value, py::none(), r.hsic_xy, r.hsic_xx, r.hsic_yy);
}

py::object mutual_knn(const Index& idx_x, const Index& idx_y, bool per_row, int device,
                      std::uintptr_t stream, const Streams& wait_streams) {
  same_shape("mutual_knn", idx_x, idx_y);
  const int64_t n = idx_x.shape(0), k = idx_x.shape(1);
  const int64_t* px = idx_x.data();
  const int64_t* py_ = idx_y.data();
  const mc::Launch l = make_launch(device, stream, wait_streams, 0, 0, py::none());
  py::array_t<double> rows(per_row ? static_cast<py::ssize_t>(n) : 0);
  double* rp = per_row ? rows.mutable_data() : nullptr;
  double value = 0;
  run_released([&] { value = mc::mutual_knn(px, py_, n, k, rp, l); });
  if (per_row) return rows;
  return py::float_(value);
}

template <class T>
py::tuple scan_rows(const py::object& x, int device, std::uintptr_t stream,
                    const Streams& wait_streams) {
  const mc::Matrix<T> xm = matrix_arg<T>(x, "X");
  const mc::Launch l = make_launch(device, stream, wait_streams, 0, 0, py::none());
  mc::ScanResult r;
  run_released([&] { r = mc::scan_rows<T>(xm, l); });
  return py::make_tuple(r.first_nonfinite_row, r.max_abs);
}

const char* kKnnDoc =
    "knn_exact_cuda_{f32,f64}(x, queries, k, metric, exclude_self, normalize, device, stream,\n"
    "                         tile_rows, tile_cols, progress) -> (values, indices)\n\n"
    "Exact kNN on the GPU (host NumPy arrays or device descriptors). As knn_exact_*; normalize\n"
    "divides rows by their norms on the device (cosine for device input).";
const char* kScreenDoc =
    "knn_screen_cuda_{f32,f64}(x, queries, x_host, queries_host, k, metric, exclude_self, device,\n"
    "                          stream, wait_streams, tile_rows, tile_cols, progress)\n"
    "-> (values, indices, info)\n\n"
    "Exact kNN on the GPU through the int8 tensor-core screen: knn_exact_cuda's graph bit for\n"
    "bit (no normalize). x_host / queries_host are host copies of x / queries (the CPU\n"
    "screen's quantisation runs on them). info: screened (False: the screen did not apply and\n"
    "the exact path ran), seed_columns, tiles, survivors, overflow_lines, merged.";
const char* kPairDoc =
    "pair_sums_cuda_{f32,f64}(spaces, fn, gamma, device, stream, tile_rows, progress)\n"
    "-> (rowsums (M, n), cross (M, M)), as pair_sums_*.";
const char* kRankDoc =
    "rank_count_cuda_{f32,f64}(y, targets, device, stream, tile_rows, progress) -> counts (n, k),\n"
    "as rank_count_* (the same counts).";

}  // namespace

void bind_cuda(py::module_& m) {
  // CudaError -> matalign.CudaError (defined in Python, so that it exists in every build);
  // OutOfMemory -> MemoryError with the size asked for.
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const mc::OutOfMemory& e) {
      PyErr_SetString(PyExc_MemoryError, e.what());
    } catch (const mc::CudaError& e) {
      try {
        py::object cls = py::module_::import("matalign._device").attr("CudaError");
        py::object exc = cls(e.what(), e.call(), e.code(), e.error_string());
        PyErr_SetObject(cls.ptr(), exc.ptr());
      } catch (py::error_already_set&) {
        PyErr_SetString(PyExc_RuntimeError, e.what());
      }
    }
  });

  m.def("cuda_raise_error", &mc::raise_cuda_error,
        "Raise what a CUDA call failing with `code` raises (MemoryError for code 2 with `bytes`,\n"
        "matalign.CudaError otherwise); needs no device. For tests of the error path.",
        py::arg("code"), py::arg("bytes") = 0);
  m.def("knn_exact_cuda_f32", &knn_exact<float>, kKnnDoc, py::arg("x"), py::arg("queries").none(true),
        py::arg("k"), py::arg("metric") = "ip", py::arg("exclude_self") = true,
        py::arg("normalize") = false, py::arg("device") = 0, py::arg("stream") = 0,
        py::arg("wait_streams") = Streams{},
        py::arg("tile_rows") = 0, py::arg("tile_cols") = 0, py::arg("progress") = py::none());
  m.def("knn_exact_cuda_f64", &knn_exact<double>, kKnnDoc, py::arg("x"), py::arg("queries").none(true),
        py::arg("k"), py::arg("metric") = "ip", py::arg("exclude_self") = true,
        py::arg("normalize") = false, py::arg("device") = 0, py::arg("stream") = 0,
        py::arg("wait_streams") = Streams{},
        py::arg("tile_rows") = 0, py::arg("tile_cols") = 0, py::arg("progress") = py::none());
  m.def("knn_screen_cuda_f32", &knn_screen<float>, kScreenDoc, py::arg("x"),
        py::arg("queries").none(true), py::arg("x_host"), py::arg("queries_host").none(true),
        py::arg("k"), py::arg("metric") = "ip", py::arg("exclude_self") = true,
        py::arg("device") = 0, py::arg("stream") = 0, py::arg("wait_streams") = Streams{},
        py::arg("tile_rows") = 0, py::arg("tile_cols") = 0, py::arg("progress") = py::none());
  m.def("knn_screen_cuda_f64", &knn_screen<double>, kScreenDoc, py::arg("x"),
        py::arg("queries").none(true), py::arg("x_host"), py::arg("queries_host").none(true),
        py::arg("k"), py::arg("metric") = "ip", py::arg("exclude_self") = true,
        py::arg("device") = 0, py::arg("stream") = 0, py::arg("wait_streams") = Streams{},
        py::arg("tile_rows") = 0, py::arg("tile_cols") = 0, py::arg("progress") = py::none());
  m.def("pair_sums_cuda_f32", &pair_sums<float>, kPairDoc, py::arg("spaces"), py::arg("fn"),
        py::arg("gamma") = std::vector<double>{}, py::arg("device") = 0, py::arg("stream") = 0,
        py::arg("wait_streams") = Streams{},
        py::arg("tile_rows") = 0, py::arg("progress") = py::none());
  m.def("pair_sums_cuda_f64", &pair_sums<double>, kPairDoc, py::arg("spaces"), py::arg("fn"),
        py::arg("gamma") = std::vector<double>{}, py::arg("device") = 0, py::arg("stream") = 0,
        py::arg("wait_streams") = Streams{},
        py::arg("tile_rows") = 0, py::arg("progress") = py::none());
  m.def("rank_count_cuda_f32", &rank_count<float>, kRankDoc, py::arg("y"), py::arg("targets").noconvert(),
        py::arg("device") = 0, py::arg("stream") = 0,
        py::arg("wait_streams") = Streams{}, py::arg("tile_rows") = 0,
        py::arg("progress") = py::none());
  m.def("rank_count_cuda_f64", &rank_count<double>, kRankDoc, py::arg("y"), py::arg("targets").noconvert(),
        py::arg("device") = 0, py::arg("stream") = 0,
        py::arg("wait_streams") = Streams{}, py::arg("tile_rows") = 0,
        py::arg("progress") = py::none());
  m.def("cknna_cuda_f32", &cknna<float>, "CKNNA from two graphs on the GPU; as cknna_f32, per_row None.",
        py::arg("idx_x").noconvert(), py::arg("val_x").noconvert(), py::arg("idx_y").noconvert(),
        py::arg("val_y").noconvert(), py::arg("eps") = 0.0, py::arg("device") = 0, py::arg("stream") = 0,
        py::arg("wait_streams") = Streams{});
  m.def("cknna_cuda_f64", &cknna<double>, "CKNNA from two graphs on the GPU; as cknna_f64, per_row None.",
        py::arg("idx_x").noconvert(), py::arg("val_x").noconvert(), py::arg("idx_y").noconvert(),
        py::arg("val_y").noconvert(), py::arg("eps") = 0.0, py::arg("device") = 0, py::arg("stream") = 0,
        py::arg("wait_streams") = Streams{});
  m.def("mutual_knn_cuda", &mutual_knn,
        "mutual_knn (per_row=False, a float) or local_agreement (per_row=True, (n,) float64) on the GPU.",
        py::arg("idx_x").noconvert(), py::arg("idx_y").noconvert(), py::arg("per_row") = false,
        py::arg("device") = 0, py::arg("stream") = 0,
        py::arg("wait_streams") = Streams{});
  m.def("scan_rows_cuda_f32", &scan_rows<float>,
        "(first row with NaN/Inf or -1, max |x|) of a float32 matrix, on the GPU.", py::arg("x"),
        py::arg("device") = 0, py::arg("stream") = 0,
        py::arg("wait_streams") = Streams{});
  m.def("scan_rows_cuda_f64", &scan_rows<double>,
        "(first row with NaN/Inf or -1, max |x|) of a float64 matrix, on the GPU.", py::arg("x"),
        py::arg("device") = 0, py::arg("stream") = 0,
        py::arg("wait_streams") = Streams{});
}

}  // namespace matalign_py
