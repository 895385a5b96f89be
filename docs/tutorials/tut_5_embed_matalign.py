"""
matalign as a backend in another tool
=====================================

Another program (a training loop, an active-learning pipeline, an analysis package) can call
matalign's metrics directly on the arrays it already holds: NumPy arrays (C or F order,
memory maps), torch tensors, or CuPy arrays and torch CUDA tensors on a GPU. C++ programs link
the engine through CMake without Python.
"""

# %%
# NumPy arrays
# ------------
# float32 or float64, computed in their own dtype with float64 accumulation; nothing is
# preprocessed unless you ask (:func:`matalign.preprocess`).
import numpy as np
import torch

import matalign as ma

rng = np.random.default_rng(0)
X = rng.standard_normal((2000, 64)).astype(np.float32)
Y = np.tanh(X @ rng.standard_normal((64, 32)).astype(np.float32) / 8) \
    + 0.3 * rng.standard_normal((2000, 32)).astype(np.float32)
print(f"N = 2000, k = 10: CKNNA = {ma.cknna(X, Y, k=10):.4f}, "
      f"dCor = {ma.distance_correlation(X, Y):.4f}, "
      f"Δ(X→Y), Δ(Y→X) = {np.round(ma.information_imbalance(X, Y, k=1), 4)}")

# %%
# Reuse a kNN graph
# -----------------
# The graph is the expensive part; compute it once and pass it to every local metric.
gx, gy = ma.knn(X, k=10), ma.knn(Y, k=10)
print(gx.indices.shape, ma.mutual_knn(gx, gy), ma.cknna(gx, gy))

# %%
# torch tensors
# -------------
# A CPU tensor shares its memory with NumPy (``Tensor.numpy()``, no copy); a CUDA tensor
# (or a CuPy array) is read on its device with ``device="cuda"`` when matalign was built with
# its CUDA kernels.
tx, ty = torch.from_numpy(X), torch.from_numpy(Y)
print(f"CKA from tensors: {ma.cka(tx.numpy(), ty.numpy()):.4f}")
if torch.cuda.is_available() and ma.cuda_device_count() > 0:
    print(ma.cknna(tx.cuda(), ty.cuda(), k=10, device="cuda"))
else:
    print("no CUDA device here: the same call takes tx.cuda(), ty.cuda() and device='cuda'")

# %%
# Errors your tool can rely on
# ----------------------------
# Bad input raises a Python exception that names the argument; it never crashes the host.
try:
    ma.cknna(X, Y[:100], k=10)
except ValueError as exc:
    print("ValueError:", exc)

# %%
# From C++, through CMake
# -----------------------
# Install the engine once (``cmake --install build/lib --prefix /opt/matalign``), then in
# your project:
#
# .. code-block:: cmake
#
#    find_package(matalign 0.1 CONFIG REQUIRED)
#    target_link_libraries(my_tool PRIVATE matalign::core)
#
# and call ``matalign::knn_exact``, ``matalign::mutual_knn`` and ``matalign::cknna`` on your
# buffers: the complete example is on the page :doc:`/cpp`.
