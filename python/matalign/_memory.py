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

The estimates are upper bounds of what the engine allocates (``cpp/src/*.cpp``), not of what
the interpreter already holds. :func:`reraise` turns a ``MemoryError`` raised anyway (a
``std::bad_alloc`` from the engine, which pybind11 maps to ``MemoryError("std::bad_alloc")``)
into one that states the estimated size.
"""

from __future__ import annotations

import contextlib
import math
import os

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
# Each mirrors the allocations of one engine routine; see the .cpp file named.

_CAND_BYTES = 16        # detail::Cand<T>: T score + int64 index, padded to 16 bytes
_PAD = 64


def _auto_tile(d: int, itemsize: int) -> int:
    """knn.cpp auto_tile: ~1 MB of packed rows, 96..2048."""
    p = (1024 * 1024) // max(1, d * itemsize)
    return max(96, min(2048, p))


def knn_exact_bytes(n: int, m: int, d: int, k: int, itemsize: int, *, l2: bool = False,
                    rescore: bool = False, n_threads: int = 1, tile_rows: int = 0,
                    tile_cols: int = 0, screen: str = "auto", self_mode: bool = True) -> int:
    """cpp/src/knn.cpp knn_exact: outputs (m, k) values + int64 indices, the per-row candidate
    buffers (k + surplus), thresholds, norms for l2, and per-thread packed tiles; with
    screen="int8"/"int16" (cpp/src/knn_screen.cpp), the screen's peak instead: its
    int8/int16 copies with ten per-row bound terms, (4k + 64) (int8) or (2k + 64) (int16)
    8-byte candidates, a threshold row of round_up(k, 16) + 16 floats and (k >= 48) an 84-byte
    histogram per row, and per-thread int8 panels."""
    max_k = n
    kc = min(max_k, k + max(8, k // 2)) if rescore else k
    cap = kc + max(16, kc // 2)
    out = m * k * (8 + itemsize)
    state = m * cap * _CAND_BYTES + 4 * m + (m + _PAD) * (itemsize + 8)
    norms = ((n + _PAD) + (m + _PAD)) * itemsize if l2 else 0
    tr = tile_rows or _auto_tile(d, itemsize)
    tc = tile_cols or _auto_tile(d, itemsize)
    scratch = max(1, n_threads) * (min(tr, m + 32) + min(max(tr, tc), n + 32)) * d * itemsize
    direct = out + state + norms + scratch
    if screen not in ("int8", "int16"):
        # "off", and "auto": ma.knn takes the float GEMM where the screen would not fit, so
        # the float GEMM's peak is what a call needs at least (ma.knn checks the screen's own
        # peak before it lets it run)
        return int(direct)
    qbytes = 2 if screen == "int16" else 1
    dp = (d + 3) // 4 * 4
    sides = n + (0 if self_mode else m)
    # per query row: the candidates, the threshold row (round_up(k, 16) + 16 floats: sorted
    # vectors), its histogram (64 bytes of counters + 20 of edges, k >= 48) and the counts
    per_row = (((4 if qbytes == 1 else 2) * k + 64) * 8 + 4 * ((k + 15) // 16 * 16 + 16) + 16
               + (84 if k >= 48 else 0))
    quant = sides * (dp * qbytes + 56) + m * per_row
    # per thread: packed int8/int16 panels and (k >= 48) the batch buffers of both bounds
    panels = max(1, n_threads) * ((1024 + 2048 + 64) * dp * 2 + (2 * 12 * 2048 * 4 if k >= 48 else 0))
    fallback = 64 << 20  # float64 blocks of X for rows the bound cannot separate
    return int(max(direct, out + quant + panels + fallback))


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
    """cpp/src/graph_metrics.cpp cknna: sorted copies of both graphs (int64 + int32), the
    mutual-edge flags, six per-row float64 arrays; plus contiguous/float64 copies of the inputs
    the Python layer may make."""
    engine = 2 * n * k * 12 + n * k + 8 * n * 8
    copies = 2 * n * k * (8 + 8)
    del itemsize
    return int(engine + copies)


def _auto_pair_tile(m_spaces: int, max_d: int, itemsize: int) -> int:
    p = int(math.sqrt(2.0 * 1024 * 1024 / (m_spaces * itemsize)))
    by_d = (1024 * 1024) // max(1, max_d * itemsize)
    p = min(p, max(96, by_d))
    p = max(96, min(768, p))
    return p // 48 * 48


def pair_sums_bytes(n: int, dims, itemsize: int, *, n_threads: int = 1, tile_rows: int = 0,
                    widened: int = 0) -> int:
    """cpp/src/pairwise.cpp pair_sums over M spaces: (M, N) float64 row sums, M norm vectors,
    per-thread packed tiles and M tile buffers, per-row-block cross sums; plus ``widened``
    bytes of float64 copies the Python layer makes when dtypes are mixed."""
    m_spaces = len(dims)
    p = tile_rows or _auto_pair_tile(m_spaces, max(dims), itemsize)
    p = min(p, n + 48)
    nb = -(-n // p)
    rowsums = m_spaces * n * 8
    norms = m_spaces * n * itemsize
    per_thread = (sum(2 * (p + 32) * d for d in dims) + m_spaces * p * p) * itemsize \
        + (2 * m_spaces * p + m_spaces * m_spaces) * 8
    return int(widened + rowsums + norms + max(1, n_threads) * per_thread
               + nb * m_spaces * m_spaces * 8)


def rank_count_bytes(n: int, d: int, k: int, itemsize: int, *, n_threads: int = 1) -> int:
    """cpp/src/pairwise.cpp rank_count: norms, (n, k) thresholds, (n, k) int64 counts (and the
    +1 copy in Python), the int64 targets, per-thread tiles; for float64 rows the float32
    screen's copy of the rows, its float32 thresholds and norms, and its per-thread float32
    tiles with the k = 1 byte map."""
    p = min(_auto_pair_tile(1, d, itemsize), n + 48)
    per_thread = (2 * (p + 32) * d + p * p) * itemsize
    base = n * itemsize + n * k * (itemsize + 3 * 8)
    if itemsize == 8:
        p32 = min(_auto_pair_tile(1, d, 4), n + 48)
        screen = (n * d * 4 + n * (8 + 8) + n * k * 8
                  + max(1, n_threads) * ((2 * (p32 + 32) * d + p32 * p32) * 4 + p32 * p32
                                         + p32 * (k + 1) * 4 + 2 * p32))
        return int(base + max(max(1, n_threads) * per_thread, screen))
    return int(base + max(1, n_threads) * per_thread)


def gram_bytes(n: int, dims, *, n_threads: int = 1) -> int:
    """Linear CKA in feature space: (ΣD)² float64 Gram/accumulators, the engine's per-thread
    blocks (cpp/src/gram.cpp: <= 1024 rows, three float64 copies, a block Gram) and the NumPy
    path's float64 block copies (metrics/_global.block_rows: <= 2^23 elements per block)."""
    total = sum(dims)
    engine = max(1, n_threads) * (3 * min(n, 1024) * total + total * total) * 8
    numpy_path = 4 * min(min(n, 65536) * total, 1 << 23) * 8
    return int(3 * total * total * 8 + max(engine, numpy_path))
