"""Build and device information (``ma.build_info()``, ``ma.cuda_device_count()``)."""

from __future__ import annotations

from . import _engine

__all__ = ["build_info", "cuda_device_count"]


def build_info() -> dict:
    """How this matalign was built and what it will use on this machine.

    Returns
    -------
    dict
        A new dict with keys ``version`` (str), ``compiler`` (str), ``openmp`` (bool),
        ``openmp_version``, ``blas`` (None: matalign uses its own kernels),
        ``simd_compiled`` (list of str), ``simd_available`` (list of str), ``simd_selected``
        (str), ``knn_screen`` (``"vnni"`` where exact kNN's int8/int16 screens run on
        AVX-512 VNNI and ``ma.knn(screen="auto")`` uses them, else ``"portable"``), ``cuda`` (bool), ``cuda_version`` (str or None) and
        ``cuda_architectures``
        (list of str).

    Examples
    --------
    >>> import matalign as ma
    >>> info = ma.build_info()
    >>> info["version"] == ma.__version__
    True
    >>> info["simd_selected"] in ("scalar", "avx2", "avx512")
    True
    """
    return _engine.build_info()


def cuda_device_count() -> int:
    """Number of CUDA devices matalign can use.

    Returns
    -------
    int
        0 when matalign was built without CUDA (see ``build_info()["cuda"]``) or when no
        device is visible.

    Examples
    --------
    >>> import matalign as ma
    >>> ma.cuda_device_count() >= 0
    True
    """
    return _engine.cuda_device_count()
