"""build_info(), version single-sourcing, and the test suite's own network guard."""

from __future__ import annotations

import importlib.metadata
import socket
import urllib.request

import pytest

import matalign as ma

NETWORK_MESSAGE = "network access attempted in tests"

KEYS = {
    "version": str,
    "compiler": str,
    "openmp": bool,
    "openmp_version": (str, type(None)),
    "simd_compiled": list,
    "simd_available": list,
    "simd_selected": str,
    "knn_screen": str,
    "cuda": bool,
    "cuda_version": (str, type(None)),
    "cuda_architectures": list,
}
SIMD_NAMES = {"scalar", "avx2", "avx512"}


def test_build_info_keys_and_types():
    info = ma.build_info()
    assert isinstance(info, dict)
    missing = (set(KEYS) | {"blas"}) - set(info)
    assert not missing, f"build_info() lacks {sorted(missing)}"
    for key, kind in KEYS.items():
        assert isinstance(info[key], kind), f"{key}={info[key]!r} is not {kind}"
    assert info["blas"] is None or isinstance(info["blas"], str)
    assert info["compiler"].strip()
    if info["openmp"]:
        assert info["openmp_version"]


def test_build_info_simd_levels():
    info = ma.build_info()
    assert set(info["simd_compiled"]) <= SIMD_NAMES, info["simd_compiled"]
    assert set(info["simd_available"]) <= set(info["simd_compiled"])
    assert "scalar" in info["simd_available"]
    assert info["simd_selected"] in info["simd_available"]
    assert all(isinstance(s, str) for s in info["simd_compiled"] + info["simd_available"])


def test_build_info_cuda_consistent():
    info = ma.build_info()
    count = ma.cuda_device_count()
    assert isinstance(count, int) and count >= 0
    if info["cuda"]:
        assert isinstance(info["cuda_version"], str) and info["cuda_version"]
        assert info["cuda_architectures"], "a CUDA build must list its architectures"
        assert all(isinstance(a, str) for a in info["cuda_architectures"])
    else:
        assert info["cuda_version"] is None
        assert info["cuda_architectures"] == []
        assert count == 0


def test_version_single_sourced():
    info = ma.build_info()
    assert ma.__version__ == info["version"]
    assert importlib.metadata.version("matalign") == ma.__version__


def test_build_info_returns_fresh_dict():
    a = ma.build_info()
    a["simd_available"].append("bogus")
    a["version"] = "0"
    b = ma.build_info()
    assert "bogus" not in b["simd_available"] and b["version"] == ma.__version__


def test_network_access_fails_in_tests():
    """conftest.py blocks the network; prove it."""
    with pytest.raises(RuntimeError, match=NETWORK_MESSAGE):
        socket.create_connection(("127.0.0.1", 9), timeout=1)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        with pytest.raises(RuntimeError, match=NETWORK_MESSAGE):
            sock.connect(("127.0.0.1", 9))
        with pytest.raises(RuntimeError, match=NETWORK_MESSAGE):
            sock.connect_ex(("127.0.0.1", 9))
    finally:
        sock.close()
    with pytest.raises(RuntimeError, match=NETWORK_MESSAGE):
        urllib.request.urlopen("http://example.invalid/", timeout=1)
