// knn_exact_f32 / knn_exact_f64 and first_nonfinite_row_*: convert, release the GIL, call.
#include <optional>

#include "bindings.h"
#include "matalign/knn.h"

namespace matalign_py {

namespace {

matalign::Metric parse_metric(const std::string& s) {
  if (s == "ip") return matalign::Metric::ip;
  if (s == "l2") return matalign::Metric::l2;
  throw std::invalid_argument("metric must be 'ip' or 'l2' at the engine level; got '" + s + "'");
}

template <class T>
py::tuple knn_exact(const py::array& x, const py::object& queries, int64_t k,
                    const std::string& metric, bool exclude_self, int64_t tile_rows,
                    int64_t tile_cols, int n_threads, bool rescore, const std::string& simd,
                    py::object progress, const std::string& screen) {
  const matalign::MatrixView<T> xv = view2d<T>(x, "X");
  std::optional<matalign::MatrixView<T>> qv;
  py::array qarr;
  if (!queries.is_none()) {
    qv = view2d<T>(queries, "queries");
    qarr = py::reinterpret_borrow<py::array>(queries);
  }
  const int64_t rows = qv ? qv->rows : xv.rows;
  if (k < 1) throw std::invalid_argument("k must be >= 1, got " + std::to_string(k));
  matalign::mul_checked(rows, k, "output size");
  matalign::KnnOptions opt;
  opt.tile_rows = tile_rows;
  opt.tile_cols = tile_cols;
  opt.n_threads = n_threads;
  opt.rescore = rescore;
  opt.screen = matalign::screen_parse(screen);
  opt.simd = matalign::simd_parse(simd);
  opt.progress = make_progress(progress);
  const matalign::Metric mt = parse_metric(metric);
  py::array_t<T> values({static_cast<py::ssize_t>(rows), static_cast<py::ssize_t>(k)});
  py::array_t<int64_t> indices({static_cast<py::ssize_t>(rows), static_cast<py::ssize_t>(k)});
  T* vp = values.mutable_data();
  int64_t* ip = indices.mutable_data();
  run_released([&] {
    matalign::knn_exact<T>(xv, qv ? &*qv : nullptr, k, mt, exclude_self, vp, ip, opt);
  });
  return py::make_tuple(values, indices);
}

template <class T>
py::tuple knn_block_pair(const py::array& x, int64_t i0, int64_t i1, int64_t j0, int64_t j1,
                         int64_t k, const std::string& metric, const py::object& centre,
                         int n_threads) {
  const matalign::MatrixView<T> xv = view2d<T>(x, "X");
  const matalign::Metric mt = parse_metric(metric);
  if (k < 1) throw std::invalid_argument("k must be >= 1, got " + std::to_string(k));
  if (!(0 <= i0 && i0 < i1 && i1 <= xv.rows && 0 <= j0 && j0 < j1 && j1 <= xv.rows))
    throw std::invalid_argument("blocks must be non-empty row ranges of X");
  const bool same = i0 == j0 && i1 == j1;
  if (!same && j0 < i1)
    throw std::invalid_argument("block J must be block I or lie after it");
  py::array_t<double, py::array::c_style | py::array::forcecast> mu;
  const double* mup = nullptr;
  if (mt == matalign::Metric::l2) {
    if (centre.is_none()) throw std::invalid_argument("metric 'l2' needs centre");
    mu = py::array_t<double, py::array::c_style | py::array::forcecast>::ensure(centre);
    if (!mu || mu.ndim() != 1 || mu.shape(0) != xv.cols)
      throw std::invalid_argument("centre must be a 1-D float64 array of length D");
    mup = mu.data();
  }
  const int64_t ni = i1 - i0, nj = same ? 0 : j1 - j0;
  const int64_t ki = same ? std::min(k, ni - 1) : std::min(k, nj);
  const int64_t kj = same ? 0 : std::min(k, ni);
  py::array_t<T> si({static_cast<py::ssize_t>(ni), static_cast<py::ssize_t>(std::max<int64_t>(ki, 0))});
  py::array_t<int64_t> ii({static_cast<py::ssize_t>(ni), static_cast<py::ssize_t>(std::max<int64_t>(ki, 0))});
  py::array_t<T> sj({static_cast<py::ssize_t>(nj), static_cast<py::ssize_t>(kj)});
  py::array_t<int64_t> ij({static_cast<py::ssize_t>(nj), static_cast<py::ssize_t>(kj)});
  matalign::KnnOptions opt;
  opt.n_threads = n_threads;
  T* sip = si.mutable_data();
  int64_t* iip = ii.mutable_data();
  T* sjp = sj.mutable_data();
  int64_t* ijp = ij.mutable_data();
  run_released([&] {
    matalign::knn_block_pair<T>(xv, i0, i1, j0, j1, k, mt, mup, sip, iip, sjp, ijp, opt);
  });
  return py::make_tuple(si, ii, sj, ij);
}

template <class T>
py::tuple knn_block_pair_screened(const py::array& x, int64_t ni, int64_t k,
                                  const std::string& metric, const py::object& centre,
                                  const std::string& screen, int n_threads) {
  const matalign::MatrixView<T> xv = view2d<T>(x, "X");
  const matalign::Metric mt = parse_metric(metric);
  const matalign::Screen sc = matalign::screen_parse(screen);
  if (sc != matalign::Screen::int8 && sc != matalign::Screen::int16)
    throw std::invalid_argument("screen must be 'int8' or 'int16'; got '" + screen + "'");
  const int64_t nl = xv.rows;
  if (!(ni >= 1 && ni <= nl)) throw std::invalid_argument("ni must be in 1..rows of X");
  const bool same = ni == nl;
  const int64_t nj = nl - ni;
  if (!(k >= 1 && (same ? k <= ni - 1 : (k <= ni && k <= nj))))
    throw std::invalid_argument("k must be in 1..min(|I|, |J|) (|I| - 1 for the same block)");
  py::array_t<double, py::array::c_style | py::array::forcecast> mu;
  const double* mup = nullptr;
  std::vector<double> zero(static_cast<size_t>(xv.cols), 0.0);
  if (mt == matalign::Metric::l2) {
    if (centre.is_none()) throw std::invalid_argument("metric 'l2' needs centre");
    mu = py::array_t<double, py::array::c_style | py::array::forcecast>::ensure(centre);
    if (!mu || mu.ndim() != 1 || mu.shape(0) != xv.cols)
      throw std::invalid_argument("centre must be a 1-D float64 array of length D");
    mup = mu.data();
  } else if (!centre.is_none()) {
    mu = py::array_t<double, py::array::c_style | py::array::forcecast>::ensure(centre);
    if (!mu || mu.ndim() != 1 || mu.shape(0) != xv.cols)
      throw std::invalid_argument("centre must be a 1-D float64 array of length D");
    mup = mu.data();
  } else {
    mup = zero.data();
  }
  py::array_t<double> si({static_cast<py::ssize_t>(ni), static_cast<py::ssize_t>(k)});
  py::array_t<int64_t> ii({static_cast<py::ssize_t>(ni), static_cast<py::ssize_t>(k)});
  py::array_t<double> sj({static_cast<py::ssize_t>(nj), static_cast<py::ssize_t>(same ? 0 : k)});
  py::array_t<int64_t> ij({static_cast<py::ssize_t>(nj), static_cast<py::ssize_t>(same ? 0 : k)});
  matalign::KnnOptions opt;
  opt.n_threads = n_threads;
  double* sip = si.mutable_data();
  int64_t* iip = ii.mutable_data();
  double* sjp = sj.mutable_data();
  int64_t* ijp = ij.mutable_data();
  bool screened = false;
  run_released([&] {
    screened = matalign::knn_block_pair_screened<T>(xv, ni, k, mt, mup, sc, sip, iip, sjp, ijp,
                                                    opt);
    if (!screened) {  // the float64 GEMM pair: the same float64 scores
      std::vector<double> xd(static_cast<size_t>(matalign::mul_checked(nl, xv.cols, "rows")));
      for (int64_t r = 0; r < nl; ++r)
        for (int64_t c = 0; c < xv.cols; ++c) xd[r * xv.cols + c] = static_cast<double>(xv(r, c));
      const matalign::MatrixView<double> dv{xd.data(), nl, xv.cols, xv.cols, 1};
      matalign::knn_block_pair<double>(dv, 0, ni, same ? 0 : ni, same ? ni : nl, k, mt,
                                       mt == matalign::Metric::l2 ? mup : nullptr, sip, iip, sjp,
                                       ijp, opt);
    }
  });
  return py::make_tuple(si, ii, sj, ij, screened);
}

template <class T>
py::array_t<double> knn_centre(const py::array& x, int n_threads) {
  const matalign::MatrixView<T> xv = view2d<T>(x, "X");
  py::array_t<double> mu(static_cast<py::ssize_t>(xv.cols));
  double* p = mu.mutable_data();
  run_released([&] { matalign::knn_centre<T>(xv, n_threads, p); });
  return mu;
}

template <class T>
int64_t first_nonfinite(const py::array& x, int n_threads) {
  const matalign::MatrixView<T> xv = view2d<T>(x, "X");
  int64_t r = -1;
  {
    py::gil_scoped_release release;
    r = matalign::first_nonfinite_row<T>(xv, n_threads);
  }
  return r;
}

const char* kKnnDoc =
    "knn_exact_{f32,f64}(x, queries, k, metric, exclude_self, tile_rows, tile_cols, n_threads,\n"
    "                    rescore, simd, progress, screen='auto') -> (values, indices)\n\n"
    "Exact kNN on the tile loop. x: (N, D) array of exactly this dtype, any strides; queries:\n"
    "(M, D) or None for the self graph (self excluded by index when exclude_self). metric:\n"
    "'ip' | 'l2'. Returns values (rows, k) (inner products or squared L2) and indices (rows, k)\n"
    "int64, best first, ties by lower index. Releases the GIL; progress(done, total) is called\n"
    "between tiles and Ctrl-C stops the computation with KeyboardInterrupt. screen: 'auto' (the\n"
    "integer screen where AVX-512 VNNI runs it and it is faster), 'int8' | 'int16' (always),\n"
    "'off' (float GEMM in x's dtype).";

}  // namespace

void bind_knn(py::module_& m) {
  m.def("knn_exact_f32", &knn_exact<float>, kKnnDoc, py::arg("x").noconvert(),
        py::arg("queries").none(true), py::arg("k"), py::arg("metric") = "ip",
        py::arg("exclude_self") = true, py::arg("tile_rows") = 0, py::arg("tile_cols") = 0,
        py::arg("n_threads") = 0, py::arg("rescore") = false, py::arg("simd") = "auto",
        py::arg("progress") = py::none(), py::arg("screen") = "auto");
  m.def("knn_exact_f64", &knn_exact<double>, kKnnDoc, py::arg("x").noconvert(),
        py::arg("queries").none(true), py::arg("k"), py::arg("metric") = "ip",
        py::arg("exclude_self") = true, py::arg("tile_rows") = 0, py::arg("tile_cols") = 0,
        py::arg("n_threads") = 0, py::arg("rescore") = false, py::arg("simd") = "auto",
        py::arg("progress") = py::none(), py::arg("screen") = "auto");
  m.def(
      "knn_screen_auto",
      [](int64_t k, bool self_mode, int64_t n, int64_t d) {
        return std::string(matalign::screen_name(matalign::screen_auto(k, self_mode, n, d)));
      },
      "Precision screen='auto' picks on a CPU that runs the VNNI kernel: 'int8', 'int16' or\n"
      "'off' (the float GEMM), for k neighbours among n database rows of dimension d (see\n"
      "matalign/knn.h).",
      py::arg("k"), py::arg("self_mode"), py::arg("n"), py::arg("d"));
  m.def(
      "knn_workspace_bytes",
      [](int64_t n, int64_t m, int64_t d, int64_t k, int64_t itemsize, bool l2, bool rescore,
         int n_threads, int64_t tile_rows, int64_t tile_cols, const std::string& screen,
         bool self_mode) {
        return matalign::knn_workspace_bytes(n, m, d, k, itemsize, l2, rescore, n_threads,
                                             tile_rows, tile_cols,
                                             matalign::screen_parse(screen), self_mode);
      },
      "Peak bytes of knn_exact_* for these sizes: outputs, per-row state, per-thread scratch\n"
      "(the same tile and capacity rules as the call; screen: 'auto' | 'off' = the float GEMM,\n"
      "'int8' | 'int16' = the larger of that and the screen's peak).",
      py::arg("n"), py::arg("m"), py::arg("d"), py::arg("k"), py::arg("itemsize"),
      py::arg("l2") = false, py::arg("rescore") = false, py::arg("n_threads") = 1,
      py::arg("tile_rows") = 0, py::arg("tile_cols") = 0, py::arg("screen") = "auto",
      py::arg("self_mode") = true);
  const char* pair_doc =
      "knn_block_pair_{f32,f64}(x, i0, i1, j0, j1, k, metric, centre, n_threads)\n"
      "  -> (scores_I (|I|, k_i), indices_I, scores_J (|J|, k_j), indices_J)\n\n"
      "One block pair of the symmetric self graph (float GEMM, no screen): rows [i0, i1) over\n"
      "columns [j0, j1) and rows [j0, j1) over columns [i0, i1), each pair computed once; the\n"
      "same block (i0 == j0) excludes self by index. Raw scores (ip, or -squared L2 unclipped),\n"
      "best first, ties by lower index; centre: knn_centre_* of all of x (l2).";
  m.def("knn_block_pair_f32", &knn_block_pair<float>, pair_doc, py::arg("x").noconvert(),
        py::arg("i0"), py::arg("i1"), py::arg("j0"), py::arg("j1"), py::arg("k"),
        py::arg("metric"), py::arg("centre").none(true), py::arg("n_threads") = 0);
  m.def("knn_block_pair_f64", &knn_block_pair<double>, pair_doc, py::arg("x").noconvert(),
        py::arg("i0"), py::arg("i1"), py::arg("j0"), py::arg("j1"), py::arg("k"),
        py::arg("metric"), py::arg("centre").none(true), py::arg("n_threads") = 0);
  const char* screened_doc =
      "knn_block_pair_screened_{f32,f64}(x, ni, k, metric, centre, screen, n_threads)\n"
      "  -> (scores_I, indices_I, scores_J, indices_J, screened)\n\n"
      "The screened (int8 | int16) block pair on the pair's local matrix x: rows [0, ni) = I,\n"
      "[ni, rows) = J (ni = rows: the same block, self excluded). float64 raw scores of the\n"
      "float64 graph, local indices; k <= both blocks. screened=False: the screen did not\n"
      "apply (or a row overflowed) and the float64 GEMM pair ran instead (the same scores).";
  m.def("knn_block_pair_screened_f32", &knn_block_pair_screened<float>, screened_doc,
        py::arg("x").noconvert(), py::arg("ni"), py::arg("k"), py::arg("metric"),
        py::arg("centre").none(true), py::arg("screen"), py::arg("n_threads") = 0);
  m.def("knn_block_pair_screened_f64", &knn_block_pair_screened<double>, screened_doc,
        py::arg("x").noconvert(), py::arg("ni"), py::arg("k"), py::arg("metric"),
        py::arg("centre").none(true), py::arg("screen"), py::arg("n_threads") = 0);
  m.def("knn_centre_f32", &knn_centre<float>, "The l2 centre knn_exact_f32 uses (D doubles).",
        py::arg("x").noconvert(), py::arg("n_threads") = 0);
  m.def("knn_centre_f64", &knn_centre<double>, "The l2 centre knn_exact_f64 uses (D doubles).",
        py::arg("x").noconvert(), py::arg("n_threads") = 0);
  m.def("first_nonfinite_row_f32", &first_nonfinite<float>,
        "Index of the first row with a NaN/Inf, or -1 (float32, any strides).",
        py::arg("x").noconvert(), py::arg("n_threads") = 0);
  m.def("first_nonfinite_row_f64", &first_nonfinite<double>,
        "Index of the first row with a NaN/Inf, or -1 (float64, any strides).",
        py::arg("x").noconvert(), py::arg("n_threads") = 0);
}

}  // namespace matalign_py
