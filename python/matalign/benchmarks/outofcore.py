"""Out-of-core runs (issue 7): kNN, CKNNA, dCor and linear CKA of two embedding
stores of 1M × 256 float32 (1 GB each) read as memmaps, with the peak RSS of each call.

Data: two embedding stores written by ``ma.embed`` with a synthetic adapter, in row blocks (never
all in RAM), cached under ``--dir`` (default ``/tmp/matalign-outofcore``) and reused by later
runs. A shared latent Z (N × 32, drawn around 100 cluster centres, seeded per block of 16384
rows) gives X = tanh(Z·A) + 0.1·noise and Y = sin(Z·B) + 0.3·noise, both L2-normalised (so an
"ip" graph is a cosine graph, as CKNNA needs). Nothing else relates X and Y.

Every measured call runs in a **fresh subprocess** (``--_worker``) that opens the stores
(``ma.open_store(..., verify=False)``: ``.embeddings`` is a read-only memmap), then times one
call. Memory per call:

* ``peak RSS`` — the subprocess's lifetime peak, from the kernel's ``VmHWM`` (read before the
  call, reset, read again after it; the larger): interpreter, imports, the call, and every page
  of the memmaps the call touched (file-backed pages of a mapping count in RSS while mapped,
  although the kernel can drop them at will). ``ru_maxrss`` of the child (``os.wait4``) is
  not used: Linux carries the forking parent's RSS into it across ``execve``;
* ``anon before → peak`` — ``RssAnon`` (memory actually allocated) just before the call
  (interpreter, imports, the store handles' ids, loaded graphs) and its peak during the call
  (plus outputs, engine scratch, FAISS index), sampled every 10 ms; ``file-backed peak`` the
  peak of ``RssFile`` (mapped pages of the stores and of shared libraries).

Steps (``--steps``, default all, in this order)::

    build        write the two stores (skipped when the cache matches N, D, seed)
    knn_exact    ma.knn(X[:n_exact], k, method="exact")           (default n_exact = 200 000)
    knn_ivf_x    ma.knn(store_x, k, method="ivf") at N             (graph saved for cknna)
    knn_ivf_y    ma.knn(store_y, k, method="ivf") at N
    cknna        ma.cknna(graph_x, graph_y, k) and ma.mutual_knn from the two saved graphs
    cka          ma.cka(store_x, store_y) (linear, biased) at N
    dcor         ma.distance_correlation(X[:n], Y[:n]) at --dcor-n (default 100 000, 200 000);
                 if the N² extrapolation to N exceeds --dcor-budget-full (25 min), one more run
                 at the largest N expected to fit --dcor-budget (10 min), when that is at least
                 1.25× the largest measured N; otherwise a run at N itself
    checks       agreement checks in the driver (not measured): exact-graph recall against a
                 float64 NumPy brute force on 200 rows, dCor against a dense float64 reference
                 on the first 2000 rows, linear CKA against a float64 NumPy feature-space
                 reference over all N rows

Results accumulate in ``DIR/results.json`` (one entry per step and size, the latest wins), so
the table can be printed again without re-measuring (``--steps table``).

Examples::

    matalign bench outofcore                       # everything (~50 min, 2 loaded cores)
    matalign bench outofcore --n 100000 --n-exact 50000 --dcor-n 20000,40000 \
        --dir /tmp/ooc-small                              # a small dry run (~2 min)
    matalign bench outofcore --steps table         # print the cached results
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import threading
import time

import numpy as np

from ._common import command_line, fmt_bytes, header_lines

BLOCK = 16384           # rows per generated block (and per embed batch)
LATENT = 32
CLUSTERS = 100
ALL_STEPS = ("build", "knn_exact", "knn_ivf_x", "knn_ivf_y", "cknna", "cka", "dcor", "checks")


# ----------------------------------------------------------------------------- data


def _params(seed: int, d: int):
    rng = np.random.default_rng(seed)
    centres = 1.5 * rng.standard_normal((CLUSTERS, LATENT))
    A = rng.standard_normal((LATENT, d)) / math.sqrt(LATENT)
    B = rng.standard_normal((LATENT, d)) / math.sqrt(LATENT)
    return centres, A, B


def latent_block(seed: int, block: int, centres: np.ndarray) -> np.ndarray:
    """Rows [block·BLOCK, (block+1)·BLOCK) of Z, from their own seeded stream."""
    rng = np.random.default_rng((seed, block))
    labels = rng.integers(0, CLUSTERS, size=BLOCK)
    return centres[labels] + rng.standard_normal((BLOCK, LATENT))


def space_block(which: str, seed: int, block: int, d: int) -> np.ndarray:
    """One block of X (``which="x"``) or Y, float32, unit rows."""
    centres, A, B = _params(seed, d)
    Z = latent_block(seed, block, centres)
    noise = np.random.default_rng((seed, block, 1 if which == "x" else 2)).standard_normal(
        (BLOCK, d))
    if which == "x":
        V = np.tanh(Z @ A) + 0.1 * noise
    else:
        V = np.sin(Z @ B) + 0.3 * noise
    V /= np.linalg.norm(V, axis=1, keepdims=True)
    return V.astype(np.float32)


def _adapter(which: str, seed: int, d: int):
    from matalign.adapters import Adapter

    class Synthetic(Adapter):
        """Rows of the synthetic space for structures whose ids are 'r<row>'."""

        name = f"synthetic-{which}"
        modality = "sequence"
        dim = d

        def _extra_metadata(self):
            return {"seed": seed, "latent": LATENT, "clusters": CLUSTERS, "block": BLOCK}

        def _embed_batch(self, batch):
            rows = np.array([int(s.id[1:]) for s in batch], dtype=np.int64)
            out = np.empty((rows.size, d), dtype=np.float32)
            blocks = rows // BLOCK
            for b in np.unique(blocks):
                sel = blocks == b
                out[sel] = space_block(which, seed, int(b), d)[rows[sel] - b * BLOCK]
            return out

    return Synthetic()


def store_path(folder: str, which: str) -> str:
    return os.path.join(folder, f"store_{which}")


def _store_ok(path: str, n: int, d: int, seed: int) -> bool:
    import matalign as ma

    if not os.path.exists(os.path.join(path, "manifest.json")):
        return False
    try:
        s = ma.open_store(path, verify=False)
    except Exception:
        return False
    meta = s.metadata.get("adapter", s.metadata) if hasattr(s, "metadata") else {}
    text = json.dumps(meta, default=str)
    return s.shape == (n, d) and f'"seed": {seed}' in text


def build(folder: str, n: int, d: int, seed: int) -> dict:
    """Write both stores with ma.embed (chunks of 4 blocks, crash-safe); reuse a matching cache."""
    import shutil

    import matalign as ma
    from matalign.structures import Structure

    out = {}
    for which in ("x", "y"):
        path = store_path(folder, which)
        if _store_ok(path, n, d, seed):
            out[which] = "cached"
            continue
        if os.path.exists(path):
            shutil.rmtree(path)
        structures = (Structure(f"r{i}", sequence="A") for i in range(n))
        t0 = time.perf_counter()
        ma.embed(structures, _adapter(which, seed, d), path, chunk_size=4 * BLOCK,
                 batch_size=BLOCK)
        out[which] = f"written in {time.perf_counter() - t0:.0f} s"
    return out


# ----------------------------------------------------------------------------- memory


def _status() -> dict:
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "RssAnon", "RssFile", "VmHWM"):
                out[key] = int(rest.split()[0]) * 1024
    return out


class Sampler:
    """Peaks of RssAnon / RssFile / VmRSS during a block (10 ms samples + VmHWM reset)."""

    def __enter__(self):
        self.peak = _status()
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")        # reset VmHWM
            self.hwm = True
        except OSError:
            self.hwm = False
        self.before = _status()
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        return self

    def _run(self):
        while not self._stop.wait(0.01):
            s = _status()
            for key, v in s.items():
                self.peak[key] = max(self.peak.get(key, 0), v)

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()
        s = _status()
        for key, v in s.items():
            self.peak[key] = max(self.peak.get(key, 0), v)
        if self.hwm:
            self.peak["VmRSS"] = max(self.peak["VmRSS"], s["VmHWM"])


# ----------------------------------------------------------------------------- worker


def worker(payload: dict) -> dict:
    import warnings

    import matalign as ma

    folder, step, k, threads = payload["dir"], payload["step"], payload["k"], payload["threads"]
    n = payload.get("n")
    sx = ma.open_store(store_path(folder, "x"), verify=False)
    sy = ma.open_store(store_path(folder, "y"), verify=False)
    X, Y = sx.embeddings, sy.embeddings
    result: dict = {"step": step, "n": n}
    warnings.simplefilter("ignore", UserWarning)  # "approximate graph" warnings: recall is shown

    if step == "knn_exact":
        Xn = X[:n]
        def call():
            return ma.knn(Xn, k=k, method="exact", n_threads=threads, device="cpu")
    elif step in ("knn_ivf_x", "knn_ivf_y"):
        src = sx if step.endswith("x") else sy
        call = lambda: ma.knn(src, k=k, method="ivf", n_threads=threads, device="cpu")  # noqa: E731
    elif step == "cknna":
        gx = ma.KnnGraph.load(os.path.join(folder, "graph_x_ivf.npz"))
        gy = ma.KnnGraph.load(os.path.join(folder, "graph_y_ivf.npz"))
        result["recall_x"], result["recall_y"] = gx.recall, gy.recall

        def call():
            return (ma.cknna(gx, gy, k=k, n_threads=threads, device="cpu"),
                    ma.mutual_knn(gx, gy, k=k, n_threads=threads, device="cpu"))
    elif step == "cka":
        call = lambda: ma.cka(sx, sy, n_threads=threads)  # noqa: E731
    elif step == "dcor":
        Xn, Yn = X[:n], Y[:n]
        def call():
            return ma.distance_correlation(Xn, Yn, n_threads=threads, device="cpu")
    else:
        raise ValueError(step)

    hwm_before_call = _status()["VmHWM"]   # peak so far (imports, opening); reset below
    with Sampler() as s:
        t0 = time.perf_counter()
        value = call()
        result["seconds"] = time.perf_counter() - t0
    result["peak_rss"] = max(hwm_before_call, s.peak["VmRSS"])
    result["rss_before"] = s.before["VmRSS"]
    result["anon_before"] = s.before["RssAnon"]
    result["rss_call_peak"] = s.peak["VmRSS"]
    result["anon_peak"] = s.peak["RssAnon"]
    result["file_peak"] = s.peak["RssFile"]

    if step.startswith("knn"):
        g = value
        result["recall"] = g.recall
        if step == "knn_exact":
            np.save(os.path.join(folder, "graph_exact_indices.npy"), g.indices)
        else:
            g.save(os.path.join(folder, f"graph_{step[-1]}_ivf.npz"))
    elif step == "cknna":
        result["value"], result["mutual_knn"] = float(value[0]), float(value[1])
    else:
        result["value"] = float(value)
    return result


def run_worker(script: str, payload: dict, timeout: float) -> dict:
    """Run one measurement in a fresh subprocess; its own peak RSS comes from os.wait4."""
    out = os.path.join(payload["dir"], f"worker-{payload['step']}.json")
    if os.path.exists(out):
        os.remove(out)
    log = out[:-5] + ".log"
    with open(log, "w") as logf:
        proc = subprocess.Popen([sys.executable, "-m", script, "--_worker", json.dumps(payload)],
                                stdout=logf, stderr=subprocess.STDOUT)
        timer = threading.Timer(timeout, proc.kill)
        timer.start()
        try:
            # wait4 reaps the child and returns *its* rusage (RUSAGE_CHILDREN would give the
            # max over all children of the driver).
            _, status, usage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
        finally:
            timer.cancel()
    if proc.returncode != 0:
        with open(log) as f:
            tail = " / ".join(f.read().strip().splitlines()[-4:])
        why = ("killed (out of memory or timeout)" if proc.returncode in (-9, 137)
               else f"exit code {proc.returncode}")
        return {"step": payload["step"], "n": payload.get("n"), "error": f"{why}: {tail}"}
    with open(out) as f:
        result = json.load(f)
    # (usage.ru_maxrss is not used for the peak: Linux carries the forking driver's RSS into
    # the child's ru_maxrss across execve, so it would report at least the driver's size.)
    result["cpu_seconds"] = usage.ru_utime + usage.ru_stime
    result["load_before"] = payload.get("load_before")
    return result


# ----------------------------------------------------------------------------- checks


def check_exact(folder: str, n: int, k: int) -> dict:
    """Recall of the exact graph against float64 NumPy brute force on 200 seeded rows."""
    import matalign as ma

    X = ma.open_store(store_path(folder, "x"), verify=False).embeddings[:n]
    idx = np.load(os.path.join(folder, "graph_exact_indices.npy"), mmap_mode="r")
    rows = np.sort(np.random.default_rng(1).choice(n, 200, replace=False))
    q = np.asarray(X[rows], dtype=np.float64)
    scores = np.empty((rows.size, n))
    for s in range(0, n, 65536):
        scores[:, s:s + 65536] = q @ np.asarray(X[s:s + 65536], dtype=np.float64).T
    scores[np.arange(rows.size), rows] = -np.inf
    ref = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    hits = sum(len(set(a) & set(b)) for a, b in zip(idx[rows], ref))
    return {"exact_recall_200": hits / (rows.size * k)}


def _dcor_dense(x: np.ndarray, y: np.ndarray) -> float:
    def centred(a):
        g = a @ a.T
        sq = np.diag(g)
        dist = np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2 * g, 0.0))
        return dist - dist.mean(0) - dist.mean(1)[:, None] + dist.mean()
    A, B = centred(x), centred(y)
    return float(np.sqrt((A * B).mean() / np.sqrt((A * A).mean() * (B * B).mean())))


def check_dcor(folder: str, threads: int) -> dict:
    import matalign as ma

    X = ma.open_store(store_path(folder, "x"), verify=False).embeddings
    Y = ma.open_store(store_path(folder, "y"), verify=False).embeddings
    m = 2000
    ref = _dcor_dense(np.asarray(X[:m], np.float64), np.asarray(Y[:m], np.float64))
    got = ma.distance_correlation(X[:m], Y[:m], n_threads=threads, device="cpu")
    return {"dcor_2000_ref": ref, "dcor_2000_diff": abs(got - ref)}


def check_cka(folder: str) -> dict:
    """Biased linear CKA in float64 NumPy, in feature space, over all rows (blocks)."""
    import matalign as ma

    X = ma.open_store(store_path(folder, "x"), verify=False).embeddings
    Y = ma.open_store(store_path(folder, "y"), verify=False).embeddings
    n, d = X.shape
    step = 65536
    mx = np.zeros(d)
    my = np.zeros(d)
    for s in range(0, n, step):
        mx += np.asarray(X[s:s + step], np.float64).sum(0)
        my += np.asarray(Y[s:s + step], np.float64).sum(0)
    mx /= n
    my /= n
    cxy = np.zeros((d, d))
    cxx = np.zeros((d, d))
    cyy = np.zeros((d, d))
    for s in range(0, n, step):
        xb = np.asarray(X[s:s + step], np.float64) - mx
        yb = np.asarray(Y[s:s + step], np.float64) - my
        cxy += xb.T @ yb
        cxx += xb.T @ xb
        cyy += yb.T @ yb
    return {"cka_ref": float((cxy ** 2).sum() / np.sqrt((cxx ** 2).sum() * (cyy ** 2).sum()))}


# ----------------------------------------------------------------------------- driver


def _load_results(folder: str) -> dict:
    path = os.path.join(folder, "results.json")
    if os.path.exists(path):
        with open(path) as f:
            return json.load(f)
    return {}


def _save_results(folder: str, results: dict) -> None:
    path = os.path.join(folder, "results.json")
    with open(path + ".tmp", "w") as f:
        json.dump(results, f, indent=1, sort_keys=True)
    os.replace(path + ".tmp", path)


def _key(step: str, n) -> str:
    return f"{step}@{n}"


def _fmt_t(t) -> str:
    if t is None:
        return "—"
    return f"{t:.3g} s" if t < 100 else f"{t:.0f} s ({t / 60:.1f} min)"


def print_table(results: dict, n: int, k: int) -> None:
    print("| N | call | method | time | peak RSS (process) | anon before → peak (call) | "
          "file-backed peak (call) | value | agreement |")
    print("|---|---|---|---|---|---|---|---|---|")
    checks = results.get("checks", {})

    def row(r, call, method, value, agreement):
        if "error" in r:
            print(f"| {r.get('n')} | {call} | {method} | **failed** | | | | | {r['error']} |")
            return
        print(f"| {r['n']:,} | {call} | {method} | {_fmt_t(r['seconds'])} | "
              f"{fmt_bytes(r['peak_rss'])} | "
              f"{fmt_bytes(r['anon_before'])} → {fmt_bytes(r['anon_peak'])} | "
              f"{fmt_bytes(r['file_peak'])} | {value} | {agreement} |")

    r = results.get(_key("knn_exact", results.get("n_exact")))
    if r:
        agree = checks.get("exact_recall_200")
        row(r, f"`ma.knn(X[:{r['n']}], k={k})`", "exact", "—",
            "—" if agree is None else f"recall {agree:.4f} vs float64 NumPy (200 rows)")
    for which in ("x", "y"):
        r = results.get(_key(f"knn_ivf_{which}", n))
        if r:
            row(r, f"`ma.knn(store_{which}, k={k}, method=\"ivf\")`", "ivf (FAISS)", "—",
                f"recall {r['recall']:.4f} (1000 rows vs exact)" if "recall" in r else "")
    r = results.get(_key("cknna", n))
    if r:
        lo = min(r["recall_x"], r["recall_y"])
        row(r, f"`ma.cknna(graph_x, graph_y, k={k})` + `mutual_knn`", "from ivf graphs",
            f"CKNNA {r['value']:.4f}, mutual_knn {r['mutual_knn']:.4f}",
            f"approx.: \\|ΔCKNNA\\| ≲ CKNNA·(1−recall) = {r['value'] * (1 - lo):.1e}")
    r = results.get(_key("cka", n))
    if r:
        ref = checks.get("cka_ref")
        row(r, "`ma.cka(store_x, store_y)`", "linear, biased", f"{r['value']:.6f}",
            "—" if ref is None else f"\\|Δ\\| = {abs(ref - r['value']):.1e} vs float64 NumPy")
    dcor = sorted((v for key, v in results.items() if key.startswith("dcor@")),
                  key=lambda v: v["n"])
    for r in dcor:
        diff = checks.get("dcor_2000_diff")
        row(r, "`ma.distance_correlation(X[:N], Y[:N])`", "exact, biased",
            f"{r['value']:.6f}" if "value" in r else "",
            "—" if diff is None else f"engine vs dense float64 at N=2000: \\|Δ\\| = {diff:.1e}")


def extrapolations(results: dict, n: int) -> list[str]:
    lines = []
    r = results.get(_key("knn_exact", results.get("n_exact")))
    if r and "seconds" in r:
        t = r["seconds"] * (n / r["n"]) ** 2
        lines.append(f"exact kNN at N = {n:,}: {r['seconds']:.1f} s × ({n:,}/{r['n']:,})² ≈ "
                     f"{_fmt_t(t)}, **extrapolated**, not measured")
    dcor = sorted((v for key, v in results.items() if key.startswith("dcor@") and "seconds" in v),
                  key=lambda v: v["n"])
    if dcor:
        big = dcor[-1]
        if big["n"] < n:
            t = big["seconds"] * (n / big["n"]) ** 2
            rates = ", ".join(f"{v['seconds'] / (v['n'] / 1e5) ** 2:.0f} s per (10⁵)² at "
                              f"N = {v['n']:,}" for v in dcor)
            lines.append(f"dCor at N = {n:,}: {big['seconds']:.0f} s × ({n:,}/{big['n']:,})² ≈ "
                         f"{t:.0f} s ({t / 3600:.1f} h), **extrapolated**, not measured "
                         f"(N² rate: {rates})")
    return lines


def _loadavg() -> str:
    try:
        return " ".join(open("/proc/loadavg").read().split()[:3])
    except OSError:
        return "?"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", default="/tmp/matalign-outofcore",
                        help="cache folder for the stores, graphs and results")
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--d", type=int, default=256)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--n-exact", type=int, default=200_000)
    parser.add_argument("--dcor-n", default="100000,200000")
    parser.add_argument("--dcor-budget", type=float, default=600.0,
                        help="seconds for the largest dCor run (default 600)")
    parser.add_argument("--dcor-budget-full", type=float, default=1500.0,
                        help="run dCor at N itself if the extrapolation is below this")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", default=",".join(ALL_STEPS),
                        help=f"comma-separated subset of {','.join(ALL_STEPS)},table")
    parser.add_argument("--timeout", type=float, default=3600.0)
    parser.add_argument("--json", default="", help="also write the results here")
    parser.add_argument("--_worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args._worker:
        payload = json.loads(args._worker)
        result = worker(payload)
        with open(os.path.join(payload["dir"], f"worker-{payload['step']}.json"), "w") as f:
            json.dump(result, f)
        return 0

    steps = [s.strip() for s in args.steps.split(",") if s.strip()]
    unknown = set(steps) - set(ALL_STEPS) - {"table"}
    if unknown:
        parser.error(f"unknown steps {sorted(unknown)}")
    os.makedirs(args.dir, exist_ok=True)
    script = "matalign.benchmarks.outofcore"
    results = _load_results(args.dir)
    results["n_exact"] = args.n_exact
    base = {"dir": args.dir, "k": args.k, "threads": args.threads}

    def measure(step: str, n: int) -> dict:
        print(f"# {time.strftime('%H:%M:%S')} {step} N={n:,} (load {_loadavg()}) ...",
              file=sys.stderr, flush=True)
        r = run_worker(script, {**base, "step": step, "n": n, "load_before": _loadavg()},
                       args.timeout)
        r["load_after"] = _loadavg()
        results[_key(step, n)] = r
        _save_results(args.dir, results)
        print(f"#   -> {json.dumps({k: v for k, v in r.items() if k != 'step'})}",
              file=sys.stderr, flush=True)
        return r

    if "build" in steps:
        t0 = time.perf_counter()
        results["build"] = build(args.dir, args.n, args.d, args.seed)
        results["build_seconds"] = time.perf_counter() - t0
        _save_results(args.dir, results)
        print(f"# stores: {results['build']}", file=sys.stderr, flush=True)
    for step in ("knn_exact", "knn_ivf_x", "knn_ivf_y", "cknna", "cka"):
        if step in steps:
            measure(step, args.n_exact if step == "knn_exact" else args.n)
    if "dcor" in steps:
        sizes = [int(s) for s in args.dcor_n.split(",") if s]
        done = [measure("dcor", m) for m in sizes]
        ok = [r for r in done if "seconds" in r]
        if ok:
            big = ok[-1]
            full = big["seconds"] * (args.n / big["n"]) ** 2
            if full <= args.dcor_budget_full:
                measure("dcor", args.n)
            else:
                fit = int(big["n"] * math.sqrt(args.dcor_budget / big["seconds"]) // 10000 * 10000)
                if fit >= 1.25 * big["n"]:
                    measure("dcor", min(fit, args.n))
                else:
                    print(f"# dCor: N = {fit:,} would fit {args.dcor_budget:.0f} s, less than "
                          f"1.25 × {big['n']:,}: no further run", file=sys.stderr)
    if "checks" in steps:
        checks = results.get("checks", {})
        if _key("knn_exact", args.n_exact) in results:
            checks.update(check_exact(args.dir, args.n_exact, args.k))
        checks.update(check_dcor(args.dir, args.threads))
        if _key("cka", args.n) in results:
            checks.update(check_cka(args.dir))
        results["checks"] = checks
        _save_results(args.dir, results)

    for line in header_lines(("faiss-cpu",)):
        print("# " + line)
    print(f"# command: {command_line()}")
    print(f"# stores: {args.dir}/store_x, store_y: N = {args.n:,}, D = {args.d}, float32 "
          f"({fmt_bytes(args.n * args.d * 4)} each); k = {args.k}; {args.threads} threads; "
          f"load average at the end {_loadavg()}")
    print()
    print_table(results, args.n, args.k)
    print()
    for line in extrapolations(results, args.n):
        print("- " + line)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"header": header_lines(("faiss-cpu",)), "command": command_line(),
                       "machine": platform.node(), "results": results}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
