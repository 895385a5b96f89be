"""Where a job's blocks run: in this process (``"local"``) or on a Ray cluster.

matalign keeps only the partitioner and the exact merge; Ray (the optional extra
``matalign[ray]``) does the scheduling, the transport, the retries and the restarts. The
executor is the layer between the metrics and the engine door (docs/ARCHITECTURE.md): the
metric kernels ask :func:`current` for the active executor, and a distributed one cuts the
engine operation into row blocks (the self kNN: block pairs (I, J >= I), each pair computed
once), runs each through ``matalign._engine`` on a worker, and merges the results in
ascending block order (never in completion order).

Executors (``executor=`` / ``matalign ... --cluster``):

- ``"local"`` (default): today's path, unchanged; no blocks.
- ``Executor("local", block_rows=B)``: the **local blocked reference**: the same blocks, task
  functions and merge as a cluster run, in this process one block after another.
- ``"ray"``: a Ray cluster started on this machine (``num_cpus`` = its cores), unless this
  process is already connected to one (then that connection is used).
- ``"auto"``: join a running cluster (``ray.init(address="auto")``: ``RAY_ADDRESS`` or the
  cluster started on this node by ``ray start``).
- ``"ray://host:port"``: a remote cluster through Ray Client.

Units of work and results (docs/CLUSTER.md gives the exactness definition in full):

========================  ===================================  ==========================
engine operation          a task returns                       merged result
========================  ===================================  ==========================
exact self kNN            a block pair's partial top-k lists   bitwise the local graph
                          of both blocks (O(block·k))
RankCount (inf. imb.)     the block's int64 counts             bitwise the local counts
PairSums (dCor, RBF CKA)  a block pair's float64 row and       = the local blocked reference
                          column sums + M×M cross sums
feature-space Gram (CKA)  float64 D×D Gram, column sums        = the local blocked reference
========================  ===================================  ==========================

No task returns an N × N piece. Inputs travel as files: a memory-mapped ``.npy`` (a store's
``embeddings.npy``) is opened by the workers in place; an in-memory array is written once to
the job's shared directory (``shared_dir``, default a temporary directory: on a multi-node
cluster it must be a filesystem every node mounts) and memory-mapped there.

Ray 2.60 turns token authentication on by default and keeps its state under ``~/.ray``;
matalign does not change either: on a cluster, use the auth the cluster was set up with. For a
throwaway local test cluster the tests set ``RAY_AUTH_MODE=disabled``, a temporary ``HOME`` and
a temporary ``_temp_dir`` before calling ``ray.init`` (tests/test_cluster.py).

Test-only fault hook: ``MATALIGN_FAULT_KILL_BLOCK=<block>`` (read by the driver when a job
starts) makes the worker running that block (metrics) or chunk (embedding) exit with
``os._exit(1)`` in the middle of its task, once per job (a marker file, in the job directory
or at ``MATALIGN_FAULT_MARKER``, records that it fired); Ray then retries the task or
restarts the actor.

Examples
--------
>>> import numpy as np
>>> import matalign as ma
>>> from matalign import executor
>>> X = np.random.default_rng(0).normal(size=(200, 8)).astype(np.float32)
>>> with executor.use(executor.Executor("local", block_rows=64)):
...     g = ma.knn(X, k=5, metric="l2")
>>> bool(np.array_equal(g.indices, ma.knn(X, k=5, metric="l2").indices))
True
"""

from __future__ import annotations

import contextlib
import contextvars
import mmap
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import _engine
from ._validate import check_int, describe

__all__ = ["Executor", "resolve", "use", "current", "RAY_EXTRA", "DEFAULT_BLOCK_ROWS",
           "FAULT_ENV", "FAULT_MARKER_ENV", "MAX_RETRIES", "KNN_PAIR_FACTOR",
           "KNN_PAIR_MAX_FACTOR"]

#: The optional extra that installs Ray.
RAY_EXTRA = "matalign[ray]"
#: Rows per block when ``block_rows`` is not given. The blocks depend on N only (never on the
#: number of workers), so a float64 merge is the same whatever the cluster's size.
DEFAULT_BLOCK_ROWS = 8192
#: Block-pair self kNN: its blocks are at least this many times ``block_rows`` (see
#: :meth:`Executor.pair_blocks`).
KNN_PAIR_FACTOR = 8
#: Block-pair self kNN on a cluster: its blocks are at most this many times ``block_rows``
#: (bounds a task's memory: two blocks of 64 × 8192 rows, 268 MB at D = 64 in float32).
KNN_PAIR_MAX_FACTOR = 64
#: The test-only fault hook (see the module docstring).
FAULT_ENV = "MATALIGN_FAULT_KILL_BLOCK"
#: Test-only: the marker file of the fault hook (default: in the job directory), so a test
#: can see that the fault fired.
FAULT_MARKER_ENV = "MATALIGN_FAULT_MARKER"
#: Ray retries of a failed task (max_retries) and restarts of a dead actor (max_restarts,
#: max_task_retries).
MAX_RETRIES = 3

_CURRENT: contextvars.ContextVar = contextvars.ContextVar("matalign_executor", default=None)


def _import_ray():
    """``ray``, or one ImportError naming the extra to install."""
    try:
        import ray
    except ImportError:
        raise ImportError(f"executor='ray' needs Ray, which is not installed: pip install "
                          f"'{RAY_EXTRA}' (or pass executor='local')") from None
    return ray


# ----------------------------------------------------------------------------- arrays


@dataclass(frozen=True)
class ArrayFile:
    """Where a worker finds an input: a raw memory map of ``path`` (dtype, shape, byte
    offset, C or F order)."""

    path: str
    dtype: str
    shape: tuple
    offset: int
    order: str

    def open(self) -> np.ndarray:
        """The array, memory-mapped read-only."""
        return np.memmap(self.path, dtype=np.dtype(self.dtype), mode="r", offset=self.offset,
                         shape=self.shape, order=self.order)


def _as_file(X: np.ndarray):
    """An ArrayFile for a whole memory-mapped file array (np.load(mmap_mode='r')), else None."""
    if not isinstance(X, np.memmap) or not isinstance(getattr(X, "base", None), mmap.mmap):
        return None
    if getattr(X, "filename", None) is None:
        return None
    order = "C" if X.flags.c_contiguous else "F" if X.flags.f_contiguous else None
    if order is None:
        return None
    return ArrayFile(os.fspath(X.filename), X.dtype.str, tuple(X.shape), int(X.offset), order)


def _fault_block() -> int | None:
    text = os.environ.get(FAULT_ENV)
    if text is None or text == "":
        return None
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{FAULT_ENV} must be a block number; got {text!r}") from None


def fault_point(fault, block: int) -> None:
    """Test-only: exit this worker process once, if ``fault`` = (block, marker) names this
    block and its marker file does not exist yet (the marker is created first)."""
    if fault is None or fault[0] != block:
        return
    try:
        fd = os.open(fault[1], os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return
    os.close(fd)
    os._exit(1)


# ----------------------------------------------------------------------------- executor


@dataclass
class Executor:
    """Where blocks run, and how big they are.

    Parameters
    ----------
    kind : {"local", "ray"}
        ``"local"``: this process; ``"ray"``: a Ray cluster.
    address : str, optional
        Ray only: None starts a cluster on this machine (or uses this process's connection),
        ``"auto"`` joins a running one, ``"ray://host:port"`` a remote one.
    block_rows : int, optional
        Rows per block (default ``DEFAULT_BLOCK_ROWS``). A local executor without
        ``block_rows`` is today's unblocked path.
    shared_dir : str, optional
        Where in-memory inputs are written for the workers (a job subdirectory, removed at
        the end). Default: ``MATALIGN_SHARED_DIR`` or the system temporary directory; on a
        multi-node cluster it must be on a filesystem all nodes mount.
    cpus_per_task : int, default 1
        Ray: CPUs each block task reserves, and the engine threads it runs.

    Examples
    --------
    >>> from matalign.executor import Executor
    >>> Executor("local", block_rows=1024).blocked
    True
    >>> Executor("local").blocked
    False
    """

    kind: str = "local"
    address: str | None = None
    block_rows: int | None = None
    shared_dir: str | None = None
    cpus_per_task: int = 1
    _job: Path | None = field(default=None, repr=False)
    _files: dict = field(default_factory=dict, repr=False)
    _keep: list = field(default_factory=list, repr=False)

    def __post_init__(self):
        if self.kind not in ("local", "ray"):
            raise ValueError(f"executor kind must be 'local' or 'ray'; got {self.kind!r}")
        if self.block_rows is not None:
            self.block_rows = check_int(self.block_rows, "block_rows", 1)
        self.cpus_per_task = check_int(self.cpus_per_task, "cpus_per_task", 1)

    @property
    def blocked(self) -> bool:
        """True when engine operations are cut into row blocks (Ray, or a local reference)."""
        return self.kind == "ray" or self.block_rows is not None

    @property
    def is_ray(self) -> bool:
        return self.kind == "ray"

    def __str__(self) -> str:
        if self.kind == "local":
            return "local" if self.block_rows is None else f"local(block_rows={self.block_rows})"
        return "ray" if self.address is None else str(self.address)

    # -- blocks -----------------------------------------------------------------------

    def blocks(self, n: int) -> list[tuple[int, int]]:
        """The row blocks [r0, r1) of N rows, in ascending order."""
        b = self.block_rows or DEFAULT_BLOCK_ROWS
        return [(r0, min(n, r0 + b)) for r0 in range(0, n, b)]

    def pair_blocks(self, n: int, workers: int | None = None) -> list[tuple[int, int]]:
        """The blocks of the block-pair self kNN, of equal size (the first ones one row
        longer).

        Without ``workers`` (the local blocked reference): ceil(N / (KNN_PAIR_FACTOR ·
        block_rows)) blocks. With ``workers`` (a cluster running that many tasks at once):
        as few blocks as keep the workers busy, B = the smallest B with B² >= 2·workers
        (1 for one worker, 2 for two: tasks (0, 0), (0, 1), (1, 1) are 1/2, 1 and 1/2 of the
        work), but blocks of at most KNN_PAIR_MAX_FACTOR · block_rows rows and at least
        KNN_PAIR_FACTOR · block_rows. Larger blocks cost less per pair: the int8/int16 screen
        of a row prunes better the more columns it meets (measured at N = 100k, one thread:
        1, 2, 4, 8 blocks took 4.45, 5.15, 6.46, 9.03 CPU-seconds). The merged graph does not
        depend on the blocks (bitwise the local graph whatever they are).

        Examples
        --------
        >>> from matalign.executor import Executor
        >>> Executor("local", block_rows=4).pair_blocks(70)
        [(0, 24), (24, 47), (47, 70)]
        >>> Executor("local", block_rows=4).pair_blocks(70, workers=1)
        [(0, 70)]
        >>> len(Executor("local", block_rows=1).pair_blocks(1000, workers=2))
        16
        """
        b = self.block_rows or DEFAULT_BLOCK_ROWS
        most = max(1, -(-n // (KNN_PAIR_FACTOR * b)))
        if workers is None:
            nb = most
        else:
            workers = check_int(workers, "workers", 1)
            nb = 1
            while nb * nb < 2 * workers and workers > 1:
                nb += 1
            nb = min(most, max(nb, -(-n // (KNN_PAIR_MAX_FACTOR * b))))
        size, extra = divmod(n, nb)
        out, r0 = [], 0
        for i in range(nb):
            r1 = r0 + size + (1 if i < extra else 0)
            out.append((r0, r1))
            r0 = r1
        return out

    def workers(self) -> int | None:
        """Tasks a Ray cluster runs at once (its CPUs // ``cpus_per_task``); None locally."""
        if not self.is_ray:
            return None
        cpus = int(self.connect().cluster_resources().get("CPU", 1))
        return max(1, cpus // self.cpus_per_task)

    @property
    def threads(self) -> int:
        """Engine threads of one block: all cores locally, ``cpus_per_task`` on Ray."""
        return self.cpus_per_task if self.is_ray else 0

    # -- the job directory and input files --------------------------------------------

    def job_dir(self) -> Path:
        """This job's directory under ``shared_dir`` (created on first use)."""
        if self._job is None:
            base = self.shared_dir or os.environ.get("MATALIGN_SHARED_DIR") or None
            if base is not None:
                Path(base).mkdir(parents=True, exist_ok=True)
            self._job = Path(tempfile.mkdtemp(prefix="matalign-job-", dir=base))
        return self._job

    def share(self, X: np.ndarray) -> ArrayFile:
        """How workers open ``X``: its own file if it is a memory-mapped ``.npy``, else a copy
        written once (per job) to the job directory."""
        key = id(X)
        if key in self._files:
            return self._files[key]
        spec = _as_file(X)
        if spec is None:
            path = self.job_dir() / f"input-{len(self._files)}.npy"
            arr = np.asarray(X)
            np.save(path, arr if (arr.flags.c_contiguous or arr.flags.f_contiguous)
                    else np.ascontiguousarray(arr))
            spec = _as_file(np.load(path, mmap_mode="r"))
        self._files[key] = spec
        self._keep.append(X)  # ids stay unique while the job runs
        return spec

    def fault(self):
        """The test-only fault hook of this job: (block, marker path) or None."""
        block = _fault_block()
        if block is None:
            return None
        marker = os.environ.get(FAULT_MARKER_ENV) or self.job_dir() / f"fault-fired-{block}"
        return (block, os.fspath(marker))

    def close(self) -> None:
        """Remove the job directory and forget the shared inputs."""
        if self._job is not None:
            shutil.rmtree(self._job, ignore_errors=True)
        self._job = None
        self._files.clear()
        self._keep.clear()

    # -- running ----------------------------------------------------------------------

    def connect(self):
        """The ``ray`` module, connected (started on first use); None for a local executor."""
        if not self.is_ray:
            return None
        ray = _import_ray()
        if not ray.is_initialized():
            kwargs = {"include_dashboard": False, "log_to_driver": False}
            if self.address is None:
                ray.init(num_cpus=os.cpu_count() or 1, **kwargs)
            else:
                ray.init(address=self.address, **kwargs)
        return ray

    def map(self, fn, items, *, progress=None) -> list:
        """``[fn(*item) for item in items]``, in the order of ``items``.

        Locally one after another; on Ray as tasks (``max_retries`` = :data:`MAX_RETRIES`,
        ``num_cpus`` = ``cpus_per_task``), collected in submission order. Ctrl-C cancels the
        tasks still running (force) and re-raises. ``progress(done, total)`` is called as
        tasks finish.
        """
        items = list(items)
        total = len(items)
        if not self.is_ray:
            out = []
            for i, item in enumerate(items):
                out.append(fn(*item))
                if progress is not None:
                    progress(i + 1, total)
            return out
        ray = self.connect()
        remote = ray.remote(fn).options(max_retries=MAX_RETRIES, retry_exceptions=False,
                                        num_cpus=self.cpus_per_task)
        refs = [remote.remote(*item) for item in items]
        return wait_all(ray, refs, progress)

    def imap(self, fn, items, *, progress=None):
        """Like :meth:`map`, but yields the results one by one in the order of ``items``
        (on Ray each is fetched, and released from the object store, as soon as it and all
        before it are done), so that the caller can fold them without holding them all.

        Examples
        --------
        >>> from matalign.executor import Executor
        >>> list(Executor("local", block_rows=8).imap(pow, [(2, 3), (3, 2)]))
        [8, 9]
        """
        items = list(items)
        total = len(items)
        if not self.is_ray:
            for i, item in enumerate(items):
                yield fn(*item)
                if progress is not None:
                    progress(i + 1, total)
            return
        ray = self.connect()
        remote = ray.remote(fn).options(max_retries=MAX_RETRIES, retry_exceptions=False,
                                        num_cpus=self.cpus_per_task)
        refs = [remote.remote(*item) for item in items]
        try:
            for i in range(total):
                while not ray.wait([refs[i]], timeout=0.2)[0]:
                    pass
                out = ray.get(refs[i])
                refs[i] = None
                if progress is not None:
                    progress(i + 1, total)
                yield out
        finally:  # Ctrl-C, an error, or a caller that stopped early: cancel the rest
            for r in refs:
                if r is not None:
                    with contextlib.suppress(Exception):
                        ray.cancel(r, force=True)


def wait_all(ray, refs: list, progress=None) -> list:
    """``ray.get(refs)`` in their order, polling so that Ctrl-C reaches this process; on
    Ctrl-C (or any error) the unfinished tasks are cancelled (``force=True``)."""
    pending = list(refs)
    try:
        while pending:
            done, pending = ray.wait(pending, num_returns=len(pending), timeout=0.2)
            if progress is not None:
                progress(len(refs) - len(pending), len(refs))
        return ray.get(refs)
    except BaseException:
        for r in pending:
            with contextlib.suppress(Exception):
                ray.cancel(r, force=True)
        raise


def resolve(executor, *, block_rows=None, shared_dir=None, cpus_per_task=None) -> Executor:
    """An :class:`Executor` from ``executor=`` as users spell it.

    ``"local"`` (or None), ``"ray"``, ``"auto"``, ``"ray://host:port"``, or an Executor
    (returned unchanged when no other option is given). ``cpus_per_task`` (default 1): the
    CPUs each Ray task reserves and the engine threads it runs.

    Examples
    --------
    >>> from matalign.executor import resolve
    >>> resolve("ray://head:10001")
    Executor(kind='ray', address='ray://head:10001', block_rows=None, shared_dir=None, cpus_per_task=1)
    >>> resolve("yarn")
    Traceback (most recent call last):
    ...
    ValueError: executor must be 'local', 'ray', 'auto' or 'ray://host:port'; got 'yarn'
    >>> resolve("ray", cpus_per_task=2).cpus_per_task
    2
    """
    if isinstance(executor, Executor):
        if block_rows is None and shared_dir is None and cpus_per_task is None:
            return executor
        return Executor(executor.kind, executor.address,
                        executor.block_rows if block_rows is None else block_rows,
                        executor.shared_dir if shared_dir is None else shared_dir,
                        executor.cpus_per_task if cpus_per_task is None else cpus_per_task)
    cpt = 1 if cpus_per_task is None else cpus_per_task
    if executor is None or executor == "local":
        return Executor("local", None, block_rows, shared_dir, cpt)
    if not isinstance(executor, str):
        raise TypeError(f"executor must be a str ('local', 'ray', 'auto', 'ray://host:port') "
                        f"or an Executor; got {describe(executor)}")
    if executor == "ray":
        return Executor("ray", None, block_rows, shared_dir, cpt)
    if executor == "auto" or executor.startswith("ray://"):
        if executor.startswith("ray://") and len(executor) <= len("ray://"):
            raise ValueError("executor='ray://' needs a host and port: 'ray://host:port'")
        return Executor("ray", executor, block_rows, shared_dir, cpt)
    raise ValueError(f"executor must be 'local', 'ray', 'auto' or 'ray://host:port'; got "
                     f"{executor!r}")


def current() -> Executor | None:
    """The blocked executor active in this context (see :func:`use`), else None."""
    ex = _CURRENT.get()
    return ex if ex is not None and ex.blocked else None


@contextlib.contextmanager
def use(executor, *, block_rows=None, shared_dir=None, cpus_per_task=None):
    """Run the engine operations of the metrics called inside on ``executor``.

    ``block_rows``, ``shared_dir`` and ``cpus_per_task`` are those of :class:`Executor`
    (``cpus_per_task=2``: each Ray task reserves 2 CPUs and runs 2 engine threads).

    Ray is imported (and connected) on entry, so a missing extra fails before any work; the
    job directory is removed on exit.

    Examples
    --------
    >>> import numpy as np
    >>> import matalign as ma
    >>> from matalign.executor import use
    >>> X = np.random.default_rng(1).normal(size=(100, 4))
    >>> with use("local", block_rows=32) as ex:
    ...     print(ex, ma.knn(X, k=3, metric="l2").indices.shape)
    local(block_rows=32) (100, 3)
    """
    ex = resolve(executor, block_rows=block_rows, shared_dir=shared_dir,
                 cpus_per_task=cpus_per_task)
    ex.connect()
    token = _CURRENT.set(ex)
    try:
        yield ex
    finally:
        _CURRENT.reset(token)
        ex.close()


# ----------------------------------------------------------------------------- block tasks
# Module-level functions: Ray ships them to the workers by reference (workers import
# matalign). Each opens its inputs memory-mapped and calls the engine door once.


def _knn_block(spec: ArrayFile, r0: int, r1: int, k: int, metric: str, screen: str,
               n_threads: int, fault, block: int):
    X = spec.open()
    values, indices = _self_rows(X, r0, r1, k, metric, screen, n_threads)
    fault_point(fault, block)
    return values, indices


def _knn_pair_block(spec: ArrayFile, block_i, block_j, k: int, metric: str, centre,
                    screen: str, n_threads: int, fault, task: int):
    """Block pair (I, J >= I) of the self graph: (scores_I, indices_I, scores_J, indices_J)
    in rows of X, on a local copy of the two blocks: the float GEMM in X's dtype
    (``screen="off"``), or the screened pair whose scores are the float64 graph's."""
    X = spec.open()
    (i0, i1), (j0, j1) = block_i, block_j
    same = (i0, i1) == (j0, j1)
    ni = i1 - i0
    parts = [X[i0:i1]] if same else [X[i0:i1], X[j0:j1]]
    local = np.ascontiguousarray(np.concatenate(parts, axis=0))
    bj = (0, ni) if same else (ni, local.shape[0])
    fits = k <= ni - 1 if same else k <= min(ni, j1 - j0)
    if screen == "off":
        si, ii, sj, ij = _engine.knn_block_pair(local, (0, ni), bj, k, metric=metric,
                                                centre=centre, n_threads=n_threads)
    elif fits:
        si, ii, sj, ij, _ = _engine.knn_block_pair_screened(
            local, ni, k, metric=metric, centre=centre, screen=screen, n_threads=n_threads)
    else:  # a short block: the float64 GEMM pair (the screened graph's scores)
        si, ii, sj, ij = _engine.knn_block_pair(local.astype(np.float64), (0, ni), bj, k,
                                                metric=metric,
                                                centre=centre if metric == "l2" else None,
                                                n_threads=n_threads)
    fault_point(fault, task)

    def to_rows(idx):
        return np.where(idx < ni, idx + i0, idx - ni + j0)

    return si, to_rows(ii), sj, to_rows(ij)


def _self_rows(X, r0, r1, k, metric, screen, n_threads):
    try:
        return _engine.knn_exact(X, None, k, metric=metric, n_threads=n_threads, screen=screen,
                                 rows=(r0, r1))
    except ValueError as exc:
        # the screen does not apply to these rows: screen="auto" takes the float GEMM then,
        # and so does the local call
        if screen == "off" or "does not apply" not in str(exc):
            raise
        return _engine.knn_exact(X, None, k, metric=metric, n_threads=n_threads, screen="off",
                                 rows=(r0, r1))


def _pair_sums_pair_block(specs, fn: str, gamma, block_i, block_j, tile_rows: int,
                          n_threads: int, fault, task: int):
    """Block pair (I, J >= I) of PairSums: (rowsums of I over J, column sums of J over I,
    cross sums over I × J)."""
    spaces = [s.open() for s in specs]
    out = _engine.pair_sums_block(spaces, fn, gamma, block_i, block_j, tile_rows=tile_rows,
                                  n_threads=n_threads)
    fault_point(fault, task)
    return out


def _rank_block(spec: ArrayFile, targets: np.ndarray, r0: int, r1: int, n_threads: int, fault,
                block: int):
    Y = spec.open()
    counts = _engine.rank_count(Y, targets, n_threads=n_threads, rows=(r0, r1))
    fault_point(fault, block)
    return counts


def _gram_block(specs, shift: np.ndarray, r0: int, r1: int, block_rows: int, n_threads: int,
                fault, block: int):
    spaces = [s.open()[r0:r1] for s in specs]
    gram, colsum, constant = _engine.shifted_gram(spaces, shift, block_rows=block_rows,
                                                  n_threads=n_threads)
    first = np.concatenate([np.asarray(A[0], dtype=np.float64) for A in spaces])
    fault_point(fault, block)
    return gram, colsum, constant, first


# ----------------------------------------------------------------------------- operations
# What the metric kernels call when current() is set: the same signature and result as the
# engine door's operation, computed block by block.


def self_screen(k: int, n: int, d: int) -> str:
    """The screen the local self graph runs (``screen="auto"`` on this machine's engine), made
    explicit so that every worker, whatever its CPU, computes the same graph."""
    if _engine.build_info().get("knn_screen") != "vnni":
        return "off"
    return _engine.knn_screen_auto(k, True, n, d)


def knn_self(ex: Executor, X: np.ndarray, k: int, *, metric: str, screen: str = "auto",
             progress=None):
    """The exact self graph of X (values, indices), one task per block pair (I, J >= I):
    bitwise the engine's graph.

    Each pair is computed once (the symmetric loop's half of the work) by
    :func:`matalign._engine.knn_block_pair`, which returns the partial top lists of both
    blocks; a row's lists are merged in ascending block order by (score desc, index asc), the
    engine's order, so the merged row is the local row. The local graph's screen (int8/int16)
    is exact: its graph is the float64 graph of the rows converted to float64 (knn.h), so
    each pair runs the same screen (:func:`matalign._engine.knn_block_pair_screened`, or the
    float64 GEMM pair where it cannot) and the float64 values are cast back; where the
    screen might not apply to the rows (a nonzero row norm near the limits it accepts), the
    row-block form (:func:`_knn_block`, rows × all columns) keeps the local behaviour.
    """
    n, d = X.shape
    if screen == "auto":
        screen = self_screen(k, n, d)
    if screen != "off" and not _screen_applies(X):
        return _knn_rows(ex, X, k, metric, screen, progress)
    spec = ex.share(X)
    centre = (_engine.knn_centre(X, n_threads=ex.threads)
              if metric == "l2" or screen != "off" else None)
    fault = ex.fault()
    blocks = ex.pair_blocks(n, ex.workers())
    pairs = [(a, b) for a in range(len(blocks)) for b in range(a, len(blocks))]
    items = [(spec, blocks[a], blocks[b], k, metric, centre, screen, ex.threads, fault, t)
             for t, (a, b) in enumerate(pairs)]
    # Fold each result as it arrives in submission order ((I, J) lexicographic): row block a
    # receives its partners' lists in ascending block order, (0, a), ..., (a, a), (a, a + 1),
    # ...; the driver holds one running best-k list per row (O(N·k)), not every pair's.
    best = [(None, None) for _ in blocks]
    for (a, b), part in zip(pairs, ex.imap(_knn_pair_block, items, progress=progress)):
        best[a] = _fold(*best[a], part[0], part[1], k)
        if b != a:
            best[b] = _fold(*best[b], part[2], part[3], k)
    values, indices = [], []
    for best_s, best_i in best:
        v = best_s
        if metric == "l2":  # the engine's max(0, -score)
            v = np.where(-v > 0, -v, np.zeros((), dtype=v.dtype))
        values.append(np.ascontiguousarray(v.astype(X.dtype, copy=False)))
        indices.append(np.ascontiguousarray(best_i))
    return np.concatenate(values, axis=0), np.concatenate(indices, axis=0)


def _fold(best_s, best_i, s, i, k: int):
    """The best k of two partial lists per row, by (score desc, index asc).

    ``s, i`` must be sorted that way per row (the engine's pair lists are), and, when
    ``best_s`` is given, every index of ``best_i`` must be lower than every index of ``i``
    (``knn_self`` folds partner blocks in ascending order): then a stable sort of the
    concatenation by score alone is the (score desc, index asc) order.
    """
    if best_s is None:
        order = np.lexsort((i, -s), axis=-1)[:, :k]
        return np.take_along_axis(s, order, 1), np.take_along_axis(i, order, 1)
    s = np.concatenate([best_s, s], axis=1)
    i = np.concatenate([best_i, i], axis=1)
    order = np.argsort(-s, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(s, order, 1), np.take_along_axis(i, order, 1)


def _screen_applies(X, chunk: int = 65536) -> bool:
    """True when the integer screen surely applies to X's rows: every nonzero row norm well
    inside the [1e-12, 1e12] the engine accepts (a factor 100 of margin), D <= 60000 and
    N < 2^32. False sends the job to the row-block form, which decides as the engine does."""
    n, d = X.shape
    if d > 60000 or n >= 2 ** 32:
        return False
    for r0 in range(0, n, chunk):
        rows = np.asarray(X[r0:r0 + chunk], dtype=np.float64)
        norm = np.sqrt(np.einsum("ij,ij->i", rows, rows))
        nz = norm[norm != 0]
        if not np.all(np.isfinite(norm)) or np.any((nz < 1e-10) | (nz > 1e10)):
            return False
    return True


def _knn_rows(ex: Executor, X, k, metric, screen, progress):
    """The self graph by row blocks × all columns (each pair from both sides)."""
    n = X.shape[0]
    spec = ex.share(X)
    fault = ex.fault()
    items = [(spec, r0, r1, k, metric, screen, ex.threads, fault, b)
             for b, (r0, r1) in enumerate(ex.blocks(n))]
    parts = ex.map(_knn_block, items, progress=progress)
    return (np.concatenate([p[0] for p in parts], axis=0),
            np.concatenate([p[1] for p in parts], axis=0))


def pair_sums(ex: Executor, spaces, fn: str, gamma, *, tile_rows: int = 0, progress=None):
    """(rowsums (M, N), cross (M, M)) of PairSums, one task per block pair (I, J >= I) of the
    row blocks (:meth:`Executor.blocks`: they depend on N and ``block_rows`` only), each pair
    of rows computed once (:func:`matalign._engine.pair_sums_block`).

    The fixed-order merge (tasks in (I, J) lexicographic order, never completion order): a
    row block's partial row sums are added in ascending partner-block order (its column sums
    from pairs (J' < I, I), then its row sums from (I, I), (I, J > I)); the cross sums are
    added task by task, an off-diagonal pair's doubled (both orders of its pairs: f is
    symmetric). The local blocked reference runs the same tasks and merge, so a cluster's
    result is bitwise it, and equal to the unblocked call to rounding.
    """
    n = spaces[0].shape[0]
    specs = [ex.share(A) for A in spaces]
    gamma = [float(g) for g in (gamma or [])]
    fault = ex.fault()
    blocks = ex.blocks(n)
    pairs = [(a, b) for a in range(len(blocks)) for b in range(a, len(blocks))]
    items = [(specs, fn, gamma, blocks[a], blocks[b], tile_rows, ex.threads, fault, t)
             for t, (a, b) in enumerate(pairs)]
    acc = [None] * len(blocks)
    cross = None

    def add(a, part):
        acc[a] = part if acc[a] is None else acc[a] + part

    for (a, b), (rows, cols, c) in zip(pairs, ex.imap(_pair_sums_pair_block, items,
                                                       progress=progress)):
        add(a, rows)
        if b != a:
            add(b, cols)
            c = c * 2.0
        cross = c if cross is None else cross + c
    return np.concatenate(acc, axis=1), cross


def rank_count(ex: Executor, Y: np.ndarray, targets: np.ndarray, *, progress=None):
    """RankCount counts (N, T) int64, block by block: the engine's counts exactly."""
    n = Y.shape[0]
    spec = ex.share(Y)
    targets = np.ascontiguousarray(targets, dtype=np.int64)
    fault = ex.fault()
    items = [(spec, targets[r0:r1], r0, r1, ex.threads, fault, b)
             for b, (r0, r1) in enumerate(ex.blocks(n))]
    parts = ex.map(_rank_block, items, progress=progress)
    return np.concatenate(parts, axis=0)


def shifted_gram(ex: Executor, spaces, shift: np.ndarray, *, block_rows: int = 0,
                 progress=None):
    """(gram, colsum, constant) of the shifted feature-space Gram, block by block, the block
    partials added in ascending block order; ``constant`` holds where every block is constant
    and all blocks share their first row."""
    n = spaces[0].shape[0]
    specs = [ex.share(A) for A in spaces]
    shift = np.ascontiguousarray(shift, dtype=np.float64)
    fault = ex.fault()
    items = [(specs, shift, r0, r1, block_rows, ex.threads, fault, b)
             for b, (r0, r1) in enumerate(ex.blocks(n))]
    parts = ex.map(_gram_block, items, progress=progress)
    gram = np.zeros_like(parts[0][0])
    colsum = np.zeros_like(parts[0][1])
    constant = np.ones(parts[0][2].shape, dtype=bool)
    first = parts[0][3]
    for g, c, k, f in parts:  # ascending block order
        gram += g
        colsum += c
        constant &= np.asarray(k, dtype=bool) & (f == first)
    return gram, colsum, constant


# ----------------------------------------------------------------------------- replicas


class _Replica:
    """A Ray actor holding one object built once (a model adapter), calling functions on it."""

    def __init__(self, factory):
        self.obj = factory()

    def call(self, fn, *args):
        return fn(self.obj, *args)


def _constant(obj):
    return obj


def replica_count(ex: Executor) -> tuple[int, bool]:
    """(replicas, on GPUs): one per GPU where the cluster has GPUs, else one per
    ``cpus_per_task`` CPUs."""
    ray = ex.connect()
    res = ray.cluster_resources()
    gpus = int(res.get("GPU", 0))
    if gpus > 0:
        return gpus, True
    return max(1, int(res.get("CPU", 1)) // ex.cpus_per_task), False


def on_replicas(ex: Executor, obj, fn, items, *, replicas: int | None = None):
    """Yield ``(item, fn(obj, *item))`` in the order of ``items`` (an iterator, read lazily),
    the calls spread over Ray actors that each hold a copy of ``obj`` (built once per actor;
    ``num_gpus=1`` per actor where the cluster has GPUs). A dead actor is restarted and its
    call retried (``max_restarts``/``max_task_retries`` = :data:`MAX_RETRIES`). At most two
    calls per actor are in flight. On Ctrl-C or an error the actors are killed (their calls
    stop within seconds) and the exception propagates."""
    ray = ex.connect()
    n, gpus = replica_count(ex)
    if replicas is not None:
        n = check_int(replicas, "replicas", 1)
    cls = ray.remote(_Replica).options(num_cpus=ex.cpus_per_task, num_gpus=1 if gpus else 0,
                                       max_restarts=MAX_RETRIES, max_task_retries=MAX_RETRIES)
    factory = _bound(obj)
    actors = [cls.remote(factory) for _ in range(n)]
    window: list = []
    items = iter(items)
    turn = 0
    try:
        exhausted = False
        while True:
            while not exhausted and len(window) < 2 * n:
                item = next(items, None)
                if item is None:
                    exhausted = True
                    break
                window.append((item, actors[turn % n].call.remote(fn, *item)))
                turn += 1
            if not window:
                return
            item, ref = window[0]
            while not ray.wait([ref], timeout=0.2)[0]:
                pass
            window.pop(0)
            yield item, ray.get(ref)
    finally:
        for a in actors:
            with contextlib.suppress(Exception):
                ray.kill(a, no_restart=True)


def _bound(obj):
    """A factory returning ``obj`` (shipped to each actor once)."""
    import functools
    return functools.partial(_constant, obj)
