"""Memory budget of engine calls ("MemoryError with the size it needed").

Every engine entry point estimates, before allocating anything, the bytes the call will hold
at its peak (outputs, the engine's per-row state and per-thread tile scratch, FAISS indexes,
copies the Python layer makes) and passes the estimate to :func:`check_memory`, which compares
it with the memory the machine (and the container) can still give:

- ``MemAvailable`` of ``/proc/meminfo`` (psutil's ``virtual_memory().available`` where
  ``/proc`` is missing);
- the cgroup limit, where one is set: ``memory.max − memory.current`` (cgroup v2) or
  ``memory.limit_in_bytes − memory.usage_in_bytes`` (v1).

The smaller wins. Over the budget, the call raises ``MemoryError`` naming the call, the size it
needs and what is available, with advice, instead of being killed by the kernel's OOM killer
halfway through. Inputs are not counted: ``np.memmap`` inputs and embedding stores are read in
row blocks and their pages are the kernel's to drop.

The estimates are upper bounds of what a call allocates, not of what the interpreter already
holds; the engine's share comes from the engine itself (``_engine.*_workspace_bytes``). :func:`reraise` turns a ``MemoryError`` raised anyway (a
``std::bad_alloc`` from the engine, which pybind11 maps to ``MemoryError("std::bad_alloc")``)
into one that states the estimated size.
"""

from __future__ import annotations

import contextlib
import math
import os

from . import _engine

__all__ = ["available_memory", "check_memory", "reraise", "fmt_gb", "threads",
           "knn_exact_bytes", "approx_index_bytes", "knn_bytes", "graph_bytes",
           "cknna_bytes", "pair_sums_bytes", "rank_count_bytes", "gram_bytes"]

_CGROUP_V2 = "/sys/fs/cgroup"
_CGROUP_V1 = "/sys/fs/cgroup/memory"
_NO_LIMIT = 1 << 60  # cgroup v1 reports "no limit" as a huge number


def fmt_gb(nbytes: float) -> str:
    """Bytes as GB with 3 significant digits (MB below 0.1 GB)."""
    if nbytes >= 1e8:
        return f"{nbytes / 1e9:.3g} GB"
    return f"{nbytes / 1e6:.3g} MB"


def _read_int(path: str) -> int | None:
    try:
        with open(path) as f:
            text = f.read().strip()
    except OSError:
        return None
    if not text or text == "max":
        return None
    try:
        return int(text)
    except ValueError:
        return None


def _meminfo_available() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        import psutil  # noqa: PLC0415 (optional)

        return int(psutil.virtual_memory().available)
    except Exception:  # not installed, or no support on this platform
        return None


def _cgroup_available() -> tuple[int, str] | None:
    """Bytes left under this process's cgroup memory limit, or None without a limit."""
    for root, limit_name, usage_name in ((_CGROUP_V2, "memory.max", "memory.current"),
                                         (_CGROUP_V1, "memory.limit_in_bytes",
                                          "memory.usage_in_bytes")):
        limit = _read_int(os.path.join(root, limit_name))
        if limit is None or limit >= _NO_LIMIT:
            continue
        usage = _read_int(os.path.join(root, usage_name)) or 0
        return max(0, limit - usage), f"cgroup limit {fmt_gb(limit)} ({root}/{limit_name})"
    return None


def available_memory() -> tuple[int | None, str]:
    """(bytes that can still be allocated, where that figure comes from).

    The smaller of MemAvailable and the room left under the cgroup limit; (None, reason)
    when neither can be read (then no check is made).
    """
    found = []
    mem = _meminfo_available()
    if mem is not None:
        found.append((mem, "MemAvailable"))
    cg = _cgroup_available()
    if cg is not None:
        found.append(cg)
    if not found:
        return None, "unknown (no /proc/meminfo, no psutil)"
    return min(found, key=lambda t: t[0])


def check_memory(nbytes, what: str, *, available=None, advice: str = "") -> None:
    """Raise MemoryError if ``nbytes`` (the call's estimated peak allocation) does not fit.

    Parameters
    ----------
    nbytes : int or float
        Bytes the call will allocate at its peak (an upper-bound estimate).
    what : str
        The call, for the message (e.g. ``"knn(N=1000000, k=10, method='exact')"``).
    available : int, optional
        Bytes available; default: :func:`available_memory`.
    advice : str, optional
        What the caller can change (smaller k, ``method="ivf"``, fewer threads, ...).

    Raises
    ------
    MemoryError
        When ``nbytes`` exceeds the available memory; the message gives both in GB.

    Examples
    --------
    >>> from matalign._memory import check_memory
    >>> check_memory(1e6, "a small call", available=2e9)
    >>> check_memory(3e9, "knn(N=10**6)", available=2e9, advice="use a smaller k")
    Traceback (most recent call last):
    ...
    MemoryError: knn(N=10**6) needs about 3 GB of memory, but only 2 GB is available (given); ...
    """
    source = "given"
    if available is None:
        available, source = available_memory()
        if available is None:
            return
    if nbytes > available:
        raise MemoryError(
            f"{what} needs about {fmt_gb(nbytes)} of memory, but only {fmt_gb(available)} is "
            f"available ({source})" + (f"; {advice}" if advice else ""))


@contextlib.contextmanager
def reraise(what: str, nbytes):
    """Give a MemoryError raised in the block the estimated size, if its message has none.

    pybind11 turns the engine's ``std::bad_alloc`` into ``MemoryError("std::bad_alloc")``;
    the estimate (and what is available now) goes into the new message. Messages that already
    name a size (NumPy's "Unable to allocate 3.7 GiB ...", the CUDA engine's) pass unchanged.
    """
    try:
        yield
    except MemoryError as exc:
        text = str(exc)
        if any(unit in text for unit in ("GB", "GiB", "MB", "MiB", "bytes")):
            raise
        available, source = available_memory()
        have = "unknown" if available is None else f"{fmt_gb(available)} ({source})"
        raise MemoryError(
            f"{what} ran out of memory ({text or type(exc).__name__}): it needs about "
            f"{fmt_gb(nbytes)}; available now: {have}") from exc


def threads(n_threads: int) -> int:
    """The thread count an engine call will use (0 = all cores, OMP_NUM_THREADS respected):
    per-thread scratch scales with it."""
    if n_threads > 0:
        return n_threads
    env = os.environ.get("OMP_NUM_THREADS", "")
    if env.isdigit() and int(env) > 0:
        return int(env)
    return os.cpu_count() or 1


# ----------------------------------------------------------------------------- estimates
# The engine's part of each estimate comes from the engine itself (``_engine.*_workspace_bytes``,
# computed next to the allocations from the same tile and capacity rules); only what the Python
# layer adds (cosine copies, widened float64 copies, FAISS indexes, NumPy-path blocks) is
# counted here.


def knn_exact_bytes(n: int, m: int, d: int, k: int, itemsize: int, *, l2: bool = False,
                    rescore: bool = False, n_threads: int = 1, tile_rows: int = 0,
                    tile_cols: int = 0, screen: str = "auto", self_mode: bool = True) -> int:
    """Peak of the exact engine (``knn_exact``): outputs, per-row candidate state, norms for
    l2 and per-thread packed tiles; with screen="int8"/"int16" the larger of that and the
    integer screen's peak (its quantised copies, candidate lists, threshold rows and per-thread
    panels). "auto" counts the float GEMM's path: ``ma.knn`` checks the screen's own peak
    before it lets it run."""
    return int(_engine.knn_workspace_bytes(
        n, n if self_mode else m, d, k, itemsize, l2=l2, rescore=rescore,
        n_threads=max(1, n_threads), tile_rows=tile_rows, tile_cols=tile_cols, screen=screen,
        self_mode=self_mode))


def approx_index_bytes(method: str, n: int, d: int, *, nlist=None, M=None, pq_m=None,
                       pq_nbits=None, n_train=None) -> int:
    """The FAISS index of an approximate search, with its training sample.

    IVF-Flat: every vector (float32) and its int64 id, plus the coarse centroids; IVF-PQ: the
    codes (pq_m·nbits/8 bytes per vector), ids, centroids and PQ codebooks; HNSW-Flat: the
    vectors plus 2·M int32 links per vector at level 0 and ~M/(M−1)·M·4 bytes above it. The
    per-vector storage counts twice: FAISS appends rows in blocks to ``std::vector``s, whose
    capacity grows by doubling (measured at N = 10⁶, D = 256: IVF-Flat held 1.73 GB for a
    1.03 GB index, with the 0.26 GB training sample).
    """
    train = (n_train or 0) * d * 4
    if method == "hnsw":
        m_ = M or 32
        return int(2 * n * (d * 4 + 2 * m_ * 4 + 4 * m_ * m_ / max(1, m_ - 1) + 16))
    nl = nlist or 1
    centroids = nl * d * 4
    if method == "ivf":
        return int(2 * n * (d * 4 + 8) + centroids + train)
    nbits = pq_nbits or 8
    code = math.ceil((pq_m or 1) * nbits / 8)
    books = d * (1 << nbits) * 4
    return int(2 * n * (code + 8) + centroids + books + train)


def knn_bytes(n: int, m: int, d: int, k: int, itemsize: int, *, method: str = "exact",
              metric: str = "ip", self_mode: bool = True, rescore: bool = False,
              n_threads: int = 1, tile_rows: int = 0, tile_cols: int = 0,
              params=None, screen: str = "auto") -> int:
    """Peak of ``ma.knn``: the cosine copies, then the exact engine or the FAISS index, the
    (m, k) outputs and the re-sort of approximate results (two copies and an order array)."""
    copies = 0
    if metric == "cosine":
        copies = (n + (0 if self_mode else m)) * d * itemsize + n * 8  # normalised rows, norms
    if method == "exact":
        return copies + knn_exact_bytes(n, m, d, k, itemsize, l2=metric == "l2",
                                        rescore=rescore, n_threads=n_threads,
                                        tile_rows=tile_rows, tile_cols=tile_cols,
                                        screen=screen, self_mode=self_mode)
    p = params
    index = approx_index_bytes(method, n, d, nlist=getattr(p, "nlist", None),
                               M=getattr(p, "M", None), pq_m=getattr(p, "pq_m", None),
                               pq_nbits=getattr(p, "pq_nbits", None),
                               n_train=getattr(p, "n_train", None))
    out = m * k * (8 + 4)
    block = 8192 * (d * 4 + (k + 1) * 24)      # one add/search block and its results
    resort = out + m * k * 8                    # sorted copies + the lexsort order
    return int(copies + max(index + out + block, 2 * out + resort))


def graph_bytes(n: int, k: int, itemsize: int) -> int:
    """One KnnGraph: (n, k) int64 indices and values."""
    return int(n * k * (8 + itemsize))


def cknna_bytes(n: int, k: int, itemsize: int = 8) -> int:
    """The engine's CKNNA (``cknna_workspace_bytes``: sorted copies of both graphs, mutual-edge
    flags, per-row sums); plus the contiguous float64 copies of both graphs' indices and values
    the Python layer may make."""
    copies = 2 * n * k * (8 + 8)
    del itemsize
    return int(_engine.cknna_workspace_bytes(n, k) + copies)


def pair_sums_bytes(n: int, dims, itemsize: int, *, n_threads: int = 1, tile_rows: int = 0,
                    widened: int = 0) -> int:
    """The engine's PairSums over M spaces (``pair_sums_workspace_bytes``: row sums, norms,
    per-thread tiles, per-row-block cross sums); plus ``widened`` bytes of float64 copies the
    Python layer makes when dtypes are mixed."""
    return int(widened + _engine.pair_sums_workspace_bytes(
        n, [int(d) for d in dims], itemsize, n_threads=max(1, n_threads), tile_rows=tile_rows))


def rank_count_bytes(n: int, d: int, k: int, itemsize: int, *, n_threads: int = 1) -> int:
    """The engine's RankCount (``rank_count_workspace_bytes``: counts, targets, thresholds,
    per-thread tiles; for float64 rows the float32 prefilter's copy of the rows); plus the +1
    copy of the counts made in Python."""
    return int(n * k * 8 + _engine.rank_count_workspace_bytes(n, d, k, itemsize,
                                                              n_threads=max(1, n_threads)))


def gram_bytes(n: int, dims, *, n_threads: int = 1) -> int:
    """Linear CKA in feature space: the engine's Gram (``gram_workspace_bytes``: the (ΣD)²
    float64 Gram and per-thread blocks), or the NumPy path's float64 block copies
    (metrics/_global.block_rows: <= 2^23 elements per block), plus two (ΣD)² float64
    accumulators of the Python layer."""
    total = sum(dims)
    engine = _engine.gram_workspace_bytes(n, [int(d) for d in dims], n_threads=max(1, n_threads))
    numpy_path = 4 * min(min(n, 65536) * total, 1 << 23) * 8 + total * total * 8
    return int(2 * total * total * 8 + max(engine, numpy_path))
