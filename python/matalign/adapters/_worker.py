"""Adapters of a family that lives in its own environment, run in a worker process.

:func:`worker_adapter` starts ``<family env>/bin/python`` on a small bootstrap that imports
*this* matalign (from the main installation, by file location, without putting the main
site-packages in front of the family's pins) and calls :func:`serve`. The calling process
keeps everything else: the dataset, the batching, the crash-safe store and its journal
(:mod:`matalign.embed`, :mod:`matalign.store`). So a worker-run embedding has exactly the
chunks, journal, resume and ``kill -9`` behaviour of an in-process one, and a resumed store is
bitwise identical.

Protocol (no pickle anywhere): one JSON object per line on the worker's stdin and stdout.

- ``{"op": "init", "adapter": NAME, "options": {...}}`` → ``{"ok": true, "name", "modality",
  "dim", "pooling", "layer", "metadata"}``
- ``{"op": "embed", "structures": [...], "out": PATH}``: structures as JSON (id, atomic numbers,
  positions, cell, pbc, smiles, sequence; JSON floats round-trip exactly); the worker writes
  the (n, dim) float32 rows to ``PATH`` as ``.npy`` and answers ``{"ok": true}``; the caller
  reads it with ``allow_pickle=False``.
- any failure → ``{"ok": false, "type": "ValueError", "message": ..., "structure": ID}``; the
  worker finds the failing structure by embedding the batch one by one.
- end of stdin → the worker exits; it also exits within 0.2 s when its parent dies.

Errors reach the user as the same exception type, prefixed with the family, the environment
and the structure; a worker that dies raises :class:`WorkerDied` with its exit code and the
tail of its log.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..structures import Structure
from ._base import Adapter

__all__ = ["WorkerAdapter", "WorkerDied", "worker_adapter", "serve", "structure_to_json",
           "structure_from_json"]

_BUILTIN_ERRORS = {"ValueError": ValueError, "TypeError": TypeError,
                   "ImportError": ImportError, "ModuleNotFoundError": ImportError,
                   "FileNotFoundError": FileNotFoundError, "KeyError": ValueError,
                   "IndexError": ValueError, "NotImplementedError": NotImplementedError}

# Bootstrap run by the environment's interpreter: argv[1] is the main matalign package dir.
_BOOT = r"""
import importlib.util, sys
pkg = sys.argv[1]
spec = importlib.util.spec_from_file_location("matalign", pkg + "/__init__.py",
                                              submodule_search_locations=[pkg])
mod = importlib.util.module_from_spec(spec)
sys.modules["matalign"] = mod
spec.loader.exec_module(mod)
from matalign.adapters._worker import serve
serve()
"""


class WorkerDied(RuntimeError):
    """The worker process of a model environment exited or was killed mid-request."""


def structure_to_json(s: Structure) -> dict[str, Any]:
    """A Structure as plain JSON (atoms as numbers, positions, cell, pbc; exact floats)."""
    d: dict[str, Any] = {"id": s.id, "smiles": s.smiles, "sequence": s.sequence}
    if s.atoms is not None:
        a = s.atoms
        d["atoms"] = {"numbers": [int(z) for z in a.numbers],
                      "positions": np.asarray(a.positions, dtype=np.float64).tolist(),
                      "cell": np.asarray(a.cell[:], dtype=np.float64).tolist(),
                      "pbc": [bool(p) for p in a.pbc]}
        info = {k: v for k, v in a.info.items()
                if k in ("charge", "spin") and isinstance(v, (int, float))}
        if info:
            d["atoms"]["info"] = info
    return d


def structure_from_json(d: dict[str, Any]) -> Structure:
    """Inverse of :func:`structure_to_json`."""
    atoms = None
    if d.get("atoms") is not None:
        from ase import Atoms

        a = d["atoms"]
        atoms = Atoms(numbers=a["numbers"], positions=np.array(a["positions"], dtype=np.float64)
                      .reshape(-1, 3), cell=np.array(a["cell"], dtype=np.float64),
                      pbc=a["pbc"])
        atoms.info.update(a.get("info", {}))
    return Structure(d["id"], atoms=atoms, smiles=d.get("smiles"), sequence=d.get("sequence"))


# -- the worker side ------------------------------------------------------------------------

def _die_with_parent() -> None:
    """Exit as soon as the calling process is gone (even while a forward pass runs).

    A watchdog thread polls the parent pid; Linux's PR_SET_PDEATHSIG is not used because it
    fires when the *thread* that started the worker ends, which a caller's thread pool does.
    """
    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(0.2)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, name="matalign-parent-watch", daemon=True).start()


def _error(exc: BaseException, structure: str | None = None) -> dict[str, Any]:
    return {"ok": False, "type": type(exc).__name__, "message": str(exc),
            "structure": structure}


def serve(stdin=None, stdout=None) -> None:
    """Worker main loop (runs inside the family's environment)."""
    _die_with_parent()
    stdin = stdin or sys.stdin
    stdout = stdout or sys.stdout
    # Anything the model packages print goes to stderr (the log), never into the protocol.
    proto = os.fdopen(os.dup(stdout.fileno()), "w", buffering=1) if stdout is sys.stdout \
        else stdout
    if stdout is sys.stdout:
        os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    from . import get

    adapter: Adapter | None = None
    for line in stdin:
        try:
            req = json.loads(line)
        except ValueError as exc:
            proto.write(json.dumps(_error(exc)) + "\n")
            continue
        op = req.get("op")
        try:
            if op == "init":
                adapter = get(req["adapter"], _in_process=True, **req.get("options", {}))
                reply = {"ok": True, "name": adapter.name, "modality": adapter.modality,
                         "dim": int(adapter.dim), "pooling": adapter.pooling,
                         "layer": adapter.layer, "metadata": adapter.metadata}
            elif op == "embed":
                if adapter is None:
                    raise RuntimeError("embed before init")
                batch = [structure_from_json(d) for d in req["structures"]]
                try:
                    feats = adapter.embed_batch(batch)
                except Exception as exc:
                    bad = None
                    if len(batch) > 1:
                        for s in batch:
                            try:
                                adapter.embed_batch([s])
                            except Exception as one:
                                exc, bad = one, s.id
                                break
                    else:
                        bad = batch[0].id
                    proto.write(json.dumps(_error(exc, bad)) + "\n")
                    continue
                tmp = req["out"] + ".part"
                with open(tmp, "wb") as f:
                    np.save(f, np.ascontiguousarray(feats, dtype=np.float32),
                            allow_pickle=False)
                os.replace(tmp, req["out"])
                reply = {"ok": True}
            elif op == "ping":
                reply = {"ok": True}
            else:
                raise ValueError(f"unknown op {op!r}")
        except Exception as exc:
            reply = _error(exc)
        proto.write(json.dumps(reply) + "\n")
    proto.flush()


# -- the caller side ------------------------------------------------------------------------

def _close_pipes(proc: subprocess.Popen) -> None:
    for f in (proc.stdin, proc.stdout):
        try:
            f.close()
        except OSError:   # a broken pipe on flush: the worker is gone anyway
            pass

class WorkerAdapter(Adapter):
    """An adapter whose model runs in a worker process inside its family's environment.

    Built by :func:`worker_adapter` (through :func:`matalign.adapters.get`); it behaves like
    the in-process adapter (same name, dimension, layer, pooling and metadata, plus the
    environment's family and spec), so :func:`matalign.embed` and the store treat it alike.
    """

    def __init__(self, name: str, family: str, python: Path, options: dict[str, Any]) -> None:
        self.family = family
        self.python = Path(python)
        self.env_path = str(self.python.parent.parent)
        self._options = dict(options)
        self.device = options.get("device")   # recorded in the store header, as in process
        self._dir = Path(tempfile.mkdtemp(prefix=f"matalign-{family}-"))
        self._log = open(self._dir / "worker.log", "w+b")
        self._lock = threading.Lock()
        self._n = 0
        pkg = str(Path(__file__).resolve().parent.parent)
        env = dict(os.environ)
        env.setdefault("HF_HUB_OFFLINE", "1")
        env["PYTHONNOUSERSITE"] = "1"
        try:
            self._proc = subprocess.Popen(
                [str(self.python), "-c", _BOOT, pkg], stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=self._log, env=env, cwd=str(self._dir))
        except OSError as exc:
            self._cleanup()
            raise WorkerDied(f"could not start the {family!r} environment's Python "
                             f"{self.python}: {exc}; run `matalign env remove {family}` then "
                             f"`matalign env create {family}`") from None
        atexit.register(self.close)
        reply = self._call({"op": "init", "adapter": name, "options": self._options}, None)
        super().__init__(pooling=reply["pooling"])
        self.name = reply["name"]
        self.modality = reply["modality"]
        self.dim = int(reply["dim"])
        self.layer = reply["layer"]
        self._metadata = reply["metadata"]

    @property
    def metadata(self) -> dict[str, Any]:
        from .. import envs

        sp = envs.spec(self.family)
        return {**self._metadata, "environment": self.family,
                "environment_spec_version": sp.version, "environment_spec_sha256": sp.sha256}

    def _where(self) -> str:
        return f"model environment {self.family!r} ({self.env_path})"

    def _log_tail(self, n: int = 1500) -> str:
        try:
            self._log.flush()
            data = (self._dir / "worker.log").read_bytes()[-n:]
            return data.decode("utf-8", "replace").strip()
        except OSError:
            return ""

    def _call(self, req: dict[str, Any], batch: list[Structure] | None) -> dict[str, Any]:
        with self._lock:
            proc = self._proc
            if proc is None:
                raise WorkerDied(f"the worker of {self._where()} was closed")
            line = b""
            if proc.poll() is None:
                try:
                    proc.stdin.write((json.dumps(req) + "\n").encode())
                    proc.stdin.flush()
                    line = proc.stdout.readline()
                except (BrokenPipeError, OSError):
                    line = b""
            if not line:
                code = proc.wait()
                _close_pipes(proc)
                ids = "" if not batch else (f" while embedding structure(s) "
                                            f"{', '.join(repr(s.id) for s in batch[:5])}"
                                            f"{' ...' if len(batch) > 5 else ''}")
                self._proc = None
                tail = self._log_tail()
                raise WorkerDied(f"the worker of {self._where()} exited with code {code}{ids}"
                                 f"; committed chunks are kept (resume continues)"
                                 + (f"; its log ends with:\n{tail}" if tail else ""))
        reply = json.loads(line)
        if reply.get("ok"):
            return reply
        kind = _BUILTIN_ERRORS.get(reply.get("type"), RuntimeError)
        where = f" on structure {reply['structure']!r}" if reply.get("structure") else ""
        raise kind(f"{self._where()}: {reply.get('type')}{where}: {reply.get('message')}")

    def _embed_batch(self, batch: list[Structure]) -> np.ndarray:
        self._n += 1
        out = self._dir / f"batch-{self._n}.npy"
        self._call({"op": "embed", "structures": [structure_to_json(s) for s in batch],
                    "out": str(out)}, batch)
        try:
            feats = np.load(out, allow_pickle=False)
        finally:
            out.unlink(missing_ok=True)
        return feats

    def close(self) -> None:
        """Stop the worker (end of its stdin) and remove its temporary directory."""
        proc = getattr(self, "_proc", None)
        if proc is not None:
            self._proc = None
            try:
                proc.stdin.close()
                proc.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                proc.kill()
                proc.wait()
            _close_pipes(proc)
        self._cleanup()

    def _cleanup(self) -> None:
        log = getattr(self, "_log", None)
        if log is not None and not log.closed:
            log.close()
        shutil.rmtree(getattr(self, "_dir", ""), ignore_errors=True)

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001  (interpreter shutdown)
            pass


def worker_adapter(name: str, family: str, **options: Any) -> WorkerAdapter:
    """Adapter ``name`` of ``family`` run in a worker inside the family's environment.

    Raises
    ------
    matalign.envs.ModelEnvironmentError
        The environment is missing or broken (the message says which command to run).
    """
    from .. import envs

    options = {k: os.fspath(v) if isinstance(v, os.PathLike) else v for k, v in options.items()}
    return WorkerAdapter(name, family, envs.find(family), options)
