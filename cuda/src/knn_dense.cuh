// The exact kNN path's pieces (knn.cu), shared with the int8 screen (knn_screen.cu): input
// preparation (staging, cosine normalisation, l2 centring and norms) and the dense TopK
// reducer over a row tile (tile GEMM, candidate selection, stable segmented sort). Internal.
#pragma once

#include "common.cuh"
#include "matalign/cuda/plan.h"

namespace matalign {
namespace cuda {

/// The rows the exact path scores (device views), with the buffers that hold them.
template <class T>
struct KnnInputs {
  detail::Buffer<T> x_store, q_store, x_norm_store, q_norm_store, x_centred, q_centred, norm_x, norm_q;
  detail::Buffer<double> mu;
  detail::DevMat<T> dx{}, dq{};
  const T* norm_r = nullptr;  ///< l2: squared norms of the query rows (self: of X)
  const T* norm_c = nullptr;  ///< l2: squared norms of the database rows
  bool self = true, l2 = false, excl = false;
  int64_t n = 0, m = 0, k = 0;
};

/// Checks the arguments (as knn_exact) and prepares the scored rows on the call's device.
template <class T>
void prepare_knn(const Matrix<T>& x, const Matrix<T>* queries, int64_t k, bool ip, bool exclude_self,
                 bool normalize, const Launch& l, const char* fn, KnnInputs<T>& p);

/// The dense path's tile plan for m query rows against n columns.
template <class T>
plan::KnnTiles dense_tiles(int64_t m, int64_t n, int64_t k, const Launch& l, const char* fn);

/// The TopK reducer of one row tile: run() leaves each row's exact top-k against columns
/// [0, col_end) (score desc, index asc), to_host() writes the graph rows (values as the
/// public API: l2 distances), to_device() the raw scores and indices into device lists.
template <class T>
class DenseTopK {
 public:
  DenseTopK(const plan::KnnTiles& tiles, int64_t k, cudaStream_t s);
  void run(const KnnInputs<T>& p, int64_t r0, int64_t rows, int64_t col_end, const Launch& l,
           int64_t& done, int64_t total);
  void to_host(int64_t rows, bool l2, T* values, int64_t* indices);
  void to_device(int64_t rows, T* lk, int64_t* li);

  const int64_t R, C, cap;

 private:
  int64_t k_;
  cudaStream_t s_;
  detail::Buffer<T> g, keys, keys_out, out_v;
  detail::Buffer<int64_t> vals, vals_out, begin, end, out_i;
  detail::Buffer<int32_t> filled, added;
  detail::Buffer<int> short_rows;
  size_t tmp_bytes = 0;
  detail::Buffer<unsigned char> tmp;
};

}  // namespace cuda
}  // namespace matalign
