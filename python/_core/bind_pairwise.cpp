// pair_sums_* (PairSums reducer) and rank_count_* (RankCount reducer).
#include <vector>

#include "bindings.h"
#include "matalign/gram.h"
#include "matalign/pairwise.h"

namespace matalign_py {

namespace {

matalign::PairwiseOptions make_options(int64_t tile_rows, int n_threads, const std::string& simd,
                                       py::object progress) {
  matalign::PairwiseOptions o;
  o.tile_rows = tile_rows;
  o.n_threads = n_threads;
  o.simd = matalign::simd_parse(simd);
  o.progress = make_progress(std::move(progress));
  return o;
}

/// Views of the PairSums spaces (the list keeps the arrays alive for the call); `name` prefixes
/// the error for an empty list.
template <class T>
std::vector<matalign::MatrixView<T>> space_views(const py::list& spaces, const char* name) {
  std::vector<matalign::MatrixView<T>> views;
  for (size_t m = 0; m < spaces.size(); ++m) {
    const std::string label = "spaces[" + std::to_string(m) + "]";
    views.push_back(view2d<T>(spaces[m], label.c_str()));
  }
  if (views.empty()) throw std::invalid_argument(std::string(name) + ": spaces is empty");
  return views;
}

matalign::PairFn parse_pair_fn(const std::string& fn) {
  if (fn == "distance") return matalign::PairFn::distance;
  if (fn == "rbf") return matalign::PairFn::rbf;
  throw std::invalid_argument("fn must be 'distance' or 'rbf'; got '" + fn + "'");
}

template <class T>
py::tuple pair_sums(const py::list& spaces, const std::string& fn, const std::vector<double>& gamma,
                    int64_t tile_rows, int n_threads, const std::string& simd, py::object progress) {
  const std::vector<matalign::MatrixView<T>> views = space_views<T>(spaces, "pair_sums");
  const matalign::PairFn f = parse_pair_fn(fn);
  const auto M = static_cast<py::ssize_t>(views.size());
  const auto n = static_cast<py::ssize_t>(views[0].rows);
  py::array_t<double> rowsums({M, n});
  py::array_t<double> cross({M, M});
  double* rp = rowsums.mutable_data();
  double* cp = cross.mutable_data();
  auto opt = make_options(tile_rows, n_threads, simd, std::move(progress));
  run_released([&] { matalign::pair_sums<T>(views, f, gamma, rp, cp, opt); });
  return py::make_tuple(rowsums, cross);
}

template <class T>
py::array_t<int64_t> rank_count(const py::array& y,
                                const py::array_t<int64_t, py::array::c_style>& targets,
                                int64_t tile_rows, int n_threads, const std::string& simd,
                                py::object progress, bool prefilter) {
  const auto yv = view2d<T>(y, "y");
  if (targets.ndim() != 2 || targets.shape(0) != yv.rows)
    throw std::invalid_argument("targets must have shape (n, k) with n = y.shape[0]");
  const int64_t k = targets.shape(1);
  py::array_t<int64_t> counts({static_cast<py::ssize_t>(yv.rows), static_cast<py::ssize_t>(k)});
  int64_t* cp = counts.mutable_data();
  const int64_t* tp = targets.data();
  auto opt = make_options(tile_rows, n_threads, simd, std::move(progress));
  opt.prefilter = prefilter;
  run_released([&] { matalign::rank_count<T>(yv, tp, k, cp, opt); });
  return counts;
}

template <class T>
py::tuple pair_sums_rows(const py::list& spaces, const std::string& fn,
                         const std::vector<double>& gamma, int64_t r0, int64_t r1,
                         int64_t tile_rows, int n_threads, const std::string& simd,
                         py::object progress) {
  const std::vector<matalign::MatrixView<T>> views = space_views<T>(spaces, "pair_sums_rows");
  const matalign::PairFn f = parse_pair_fn(fn);
  if (!(0 <= r0 && r0 < r1 && r1 <= views[0].rows))
    throw std::invalid_argument("rows (" + std::to_string(r0) + ", " + std::to_string(r1) +
                                ") must satisfy 0 <= r0 < r1 <= n = " +
                                std::to_string(views[0].rows));
  const auto M = static_cast<py::ssize_t>(views.size());
  py::array_t<double> rowsums({M, static_cast<py::ssize_t>(r1 - r0)});
  py::array_t<double> cross({M, M});
  double* rp = rowsums.mutable_data();
  double* cp = cross.mutable_data();
  auto opt = make_options(tile_rows, n_threads, simd, std::move(progress));
  run_released([&] { matalign::pair_sums_rows<T>(views, f, gamma, r0, r1, rp, cp, opt); });
  return py::make_tuple(rowsums, cross);
}

template <class T>
py::tuple pair_sums_block(const py::list& spaces, const std::string& fn,
                          const std::vector<double>& gamma, int64_t r0, int64_t r1, int64_t c0,
                          int64_t c1, int64_t tile_rows, int n_threads, const std::string& simd,
                          py::object progress) {
  const std::vector<matalign::MatrixView<T>> views = space_views<T>(spaces, "pair_sums_block");
  const matalign::PairFn f = parse_pair_fn(fn);
  const int64_t n = views[0].rows;
  if (!(0 <= r0 && r0 < r1 && r1 <= n))
    throw std::invalid_argument("rows (" + std::to_string(r0) + ", " + std::to_string(r1) +
                                ") must satisfy 0 <= r0 < r1 <= n = " + std::to_string(n));
  if (!(0 <= c0 && c0 < c1 && c1 <= n))
    throw std::invalid_argument("cols (" + std::to_string(c0) + ", " + std::to_string(c1) +
                                ") must satisfy 0 <= c0 < c1 <= n = " + std::to_string(n));
  const auto M = static_cast<py::ssize_t>(views.size());
  py::array_t<double> rowsums({M, static_cast<py::ssize_t>(r1 - r0)});
  py::array_t<double> colsums({M, static_cast<py::ssize_t>(c1 - c0)});
  py::array_t<double> cross({M, M});
  double* rp = rowsums.mutable_data();
  double* sp = colsums.mutable_data();
  double* cp = cross.mutable_data();
  auto opt = make_options(tile_rows, n_threads, simd, std::move(progress));
  run_released(
      [&] { matalign::pair_sums_block<T>(views, f, gamma, r0, r1, c0, c1, rp, sp, cp, opt); });
  return py::make_tuple(rowsums, colsums, cross);
}

template <class T>
py::array_t<int64_t> rank_count_rows(const py::array& y,
                                     const py::array_t<int64_t, py::array::c_style>& targets,
                                     int64_t r0, int64_t r1, int64_t tile_rows, int n_threads,
                                     const std::string& simd, py::object progress) {
  const auto yv = view2d<T>(y, "y");
  if (!(0 <= r0 && r0 < r1 && r1 <= yv.rows))
    throw std::invalid_argument("rows (" + std::to_string(r0) + ", " + std::to_string(r1) +
                                ") must satisfy 0 <= r0 < r1 <= n = " + std::to_string(yv.rows));
  if (targets.ndim() != 2 || targets.shape(0) != r1 - r0)
    throw std::invalid_argument("targets must have shape (r1 - r0, k)");
  const int64_t k = targets.shape(1);
  py::array_t<int64_t> counts({static_cast<py::ssize_t>(r1 - r0), static_cast<py::ssize_t>(k)});
  int64_t* cp = counts.mutable_data();
  const int64_t* tp = targets.data();
  auto opt = make_options(tile_rows, n_threads, simd, std::move(progress));
  run_released([&] { matalign::rank_count_rows<T>(yv, tp, k, r0, r1, cp, opt); });
  return counts;
}

const char* kPairRowsDoc =
    "pair_sums_rows_{f32,f64}(spaces, fn, gamma, r0, r1, tile_rows=0, n_threads=0, simd='auto',\n"
    "progress=None) -> (rowsums (M, r1-r0), cross (M, M)) in float64: pair_sums restricted to the\n"
    "rows i in [r0, r1) (every j != i), the unit of work of a distributed executor.";
const char* kPairBlockDoc =
    "pair_sums_block_{f32,f64}(spaces, fn, gamma, r0, r1, c0, c1, tile_rows=0, n_threads=0,\n"
    "simd='auto', progress=None) -> (rowsums (M, r1-r0), colsums (M, c1-c0), cross (M, M)) in\n"
    "float64: the pairs i in [r0, r1), j in [c0, c1), j != i, with pair_sums_rows' values; the\n"
    "unit of a block-pair distributed executor.";
const char* kRankRowsDoc =
    "rank_count_rows_{f32,f64}(y, targets, r0, r1, tile_rows=0, n_threads=0, simd='auto',\n"
    "progress=None) -> counts (r1-r0, k) int64: rows [r0, r1) of rank_count (targets of those\n"
    "rows only); the same integers.";

template <class T>
py::tuple shifted_gram(const py::list& spaces, const py::array_t<double, py::array::c_style>& shift,
                       int64_t block_rows, int n_threads, const std::string& simd,
                       py::object progress) {
  std::vector<py::array> keep;
  std::vector<matalign::MatrixView<T>> views;
  int64_t D = 0;
  for (size_t m = 0; m < spaces.size(); ++m) {
    const std::string label = "spaces[" + std::to_string(m) + "]";
    views.push_back(view2d<T>(spaces[m], label.c_str()));
    keep.push_back(py::reinterpret_borrow<py::array>(spaces[m]));
    D += views.back().cols;
  }
  if (views.empty()) throw std::invalid_argument("shifted_gram: spaces is empty");
  if (shift.ndim() != 1 || shift.shape(0) != D)
    throw std::invalid_argument("shifted_gram: shift must have shape (D,) with D the total columns");
  const auto Dp = static_cast<py::ssize_t>(D);
  py::array_t<double> gram({Dp, Dp});
  py::array_t<double> colsum(Dp);
  py::array_t<uint8_t> constant(Dp);
  double* gp = gram.mutable_data();
  double* cp = colsum.mutable_data();
  uint8_t* kp = constant.mutable_data();
  const double* sp = shift.data();
  matalign::GramOptions o;
  o.block_rows = block_rows;
  o.n_threads = n_threads;
  o.simd = matalign::simd_parse(simd);
  o.progress = make_progress(std::move(progress));
  run_released([&] { matalign::shifted_gram<T>(views, sp, gp, cp, kp, o); });
  return py::make_tuple(gram, colsum, constant);
}

const char* kGramDoc =
    "shifted_gram_{f32,f64}(spaces, shift, block_rows=0, n_threads=0, simd='auto', progress=None)\n"
    "-> (gram (D, D), colsum (D,), constant (D,) uint8) in float64 for Z = [spaces side by side]:\n"
    "gram = sum_i (z_i - shift)(z_i - shift)^T, colsum = sum_i (z_i - shift), constant[a] = column a\n"
    "holds one value. Row blocks are combined in order: thread-count independent.";

const char* kPairDoc =
    "pair_sums_{f32,f64}(spaces, fn, gamma, tile_rows=0, n_threads=0, simd='auto', progress=None)\n"
    "-> (rowsums (M, n), cross (M, M)) in float64. One pass over all pairs i != j of the M\n"
    "spaces: f = 'distance' (Euclidean) or 'rbf' (exp(-gamma_m * squared distance));\n"
    "rowsums[m, i] = sum_{j != i} f_m(i, j); cross[a, b] = sum_{i != j} f_a(i, j) f_b(i, j).";
const char* kRankDoc =
    "rank_count_{f32,f64}(y, targets, tile_rows=0, n_threads=0, simd='auto', progress=None,\n"
    "prefilter=True) -> counts (n, k) int64: counts[i, t] = #{l != i: d(i,l) < d(i,j_t)} +\n"
    "#{l != i: d(i,l) == d(i,j_t), l < j_t}, d the squared Euclidean distance in y\n"
    "(kNN-identical rounding). prefilter (float64 only): float32 tiles decide the comparisons a\n"
    "rigorous bound settles, float64 the rest (the same counts).";

}  // namespace

void bind_pairwise(py::module_& m) {
  m.def("pair_sums_f32", &pair_sums<float>, kPairDoc, py::arg("spaces"), py::arg("fn"),
        py::arg("gamma") = std::vector<double>{}, py::arg("tile_rows") = 0, py::arg("n_threads") = 0,
        py::arg("simd") = "auto", py::arg("progress") = py::none());
  m.def("pair_sums_f64", &pair_sums<double>, kPairDoc, py::arg("spaces"), py::arg("fn"),
        py::arg("gamma") = std::vector<double>{}, py::arg("tile_rows") = 0, py::arg("n_threads") = 0,
        py::arg("simd") = "auto", py::arg("progress") = py::none());
  m.def("pair_sums_rows_f32", &pair_sums_rows<float>, kPairRowsDoc, py::arg("spaces"),
        py::arg("fn"), py::arg("gamma"), py::arg("r0"), py::arg("r1"), py::arg("tile_rows") = 0,
        py::arg("n_threads") = 0, py::arg("simd") = "auto", py::arg("progress") = py::none());
  m.def("pair_sums_rows_f64", &pair_sums_rows<double>, kPairRowsDoc, py::arg("spaces"),
        py::arg("fn"), py::arg("gamma"), py::arg("r0"), py::arg("r1"), py::arg("tile_rows") = 0,
        py::arg("n_threads") = 0, py::arg("simd") = "auto", py::arg("progress") = py::none());
  m.def("pair_sums_block_f32", &pair_sums_block<float>, kPairBlockDoc, py::arg("spaces"),
        py::arg("fn"), py::arg("gamma"), py::arg("r0"), py::arg("r1"), py::arg("c0"),
        py::arg("c1"), py::arg("tile_rows") = 0, py::arg("n_threads") = 0,
        py::arg("simd") = "auto", py::arg("progress") = py::none());
  m.def("pair_sums_block_f64", &pair_sums_block<double>, kPairBlockDoc, py::arg("spaces"),
        py::arg("fn"), py::arg("gamma"), py::arg("r0"), py::arg("r1"), py::arg("c0"),
        py::arg("c1"), py::arg("tile_rows") = 0, py::arg("n_threads") = 0,
        py::arg("simd") = "auto", py::arg("progress") = py::none());
  m.def("rank_count_rows_f32", &rank_count_rows<float>, kRankRowsDoc, py::arg("y").noconvert(),
        py::arg("targets").noconvert(), py::arg("r0"), py::arg("r1"), py::arg("tile_rows") = 0,
        py::arg("n_threads") = 0, py::arg("simd") = "auto", py::arg("progress") = py::none());
  m.def("rank_count_rows_f64", &rank_count_rows<double>, kRankRowsDoc, py::arg("y").noconvert(),
        py::arg("targets").noconvert(), py::arg("r0"), py::arg("r1"), py::arg("tile_rows") = 0,
        py::arg("n_threads") = 0, py::arg("simd") = "auto", py::arg("progress") = py::none());
  m.def("shifted_gram_f32", &shifted_gram<float>, kGramDoc, py::arg("spaces"),
        py::arg("shift").noconvert(), py::arg("block_rows") = 0, py::arg("n_threads") = 0,
        py::arg("simd") = "auto", py::arg("progress") = py::none());
  m.def("shifted_gram_f64", &shifted_gram<double>, kGramDoc, py::arg("spaces"),
        py::arg("shift").noconvert(), py::arg("block_rows") = 0, py::arg("n_threads") = 0,
        py::arg("simd") = "auto", py::arg("progress") = py::none());
  m.def("rank_count_f32", &rank_count<float>, kRankDoc, py::arg("y").noconvert(),
        py::arg("targets").noconvert(), py::arg("tile_rows") = 0, py::arg("n_threads") = 0,
        py::arg("simd") = "auto", py::arg("progress") = py::none(), py::arg("prefilter") = true);
  m.def("rank_count_f64", &rank_count<double>, kRankDoc, py::arg("y").noconvert(),
        py::arg("targets").noconvert(), py::arg("tile_rows") = 0, py::arg("n_threads") = 0,
        py::arg("simd") = "auto", py::arg("progress") = py::none(), py::arg("prefilter") = true);
  m.def("pair_sums_workspace_bytes", &matalign::pair_sums_workspace_bytes,
        "Peak bytes of pair_sums_* over spaces of these dimensions (outputs, norms, per-thread\n"
        "tiles; the same tile rule as the call).",
        py::arg("n"), py::arg("dims"), py::arg("itemsize"), py::arg("n_threads") = 1,
        py::arg("tile_rows") = 0);
  m.def("rank_count_workspace_bytes", &matalign::rank_count_workspace_bytes,
        "Peak bytes of rank_count_* (counts, targets, thresholds, per-thread tiles; float64 rows:\n"
        "the larger of the float32 prefilter's and the float64 path's).",
        py::arg("n"), py::arg("d"), py::arg("k"), py::arg("itemsize"), py::arg("n_threads") = 1);
  m.def("gram_workspace_bytes", &matalign::gram_workspace_bytes,
        "Peak bytes of shifted_gram_* over spaces of these dimensions (outputs, per-thread\n"
        "blocks).",
        py::arg("n"), py::arg("dims"), py::arg("n_threads") = 1);
}

}  // namespace matalign_py
