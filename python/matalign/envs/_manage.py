"""Specs, paths, creation, listing and removal of the per-family model environments."""

from __future__ import annotations

import fcntl
import hashlib
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

__all__ = ["EnvSpec", "EnvStatus", "ModelEnvironmentError", "create", "env_dir", "families",
           "find", "python_of", "remove", "spec", "status"]

_SPECS = Path(__file__).with_name("specs")
_MARKER = "matalign-env.json"
#: Packages every family shares with the main environment and never installs itself.
_SHARED = ("torch", "numpy")


class ModelEnvironmentError(RuntimeError):
    """A model family's environment is missing, broken, or could not be built."""


@dataclass(frozen=True)
class EnvSpec:
    """A family's pinned environment spec (``matalign/envs/specs/<family>.toml``).

    Attributes
    ----------
    family : str
    version : int
        Bumped whenever the package list changes.
    description : str
    module : str
        Top-level import name of the family's package (``mace``): when it is importable in
        the calling interpreter, the family's adapters run in process.
    steps : tuple of (packages, no_deps)
        pip installs, in order.
    imports : tuple of str
        Modules that must import once the environment is built.
    check : str
        Python code that must run without error in the environment.
    sha256 : str
        SHA-256 of the spec file.
    """

    family: str
    version: int
    description: str
    module: str
    steps: tuple[tuple[tuple[str, ...], bool], ...]
    imports: tuple[str, ...]
    check: str
    sha256: str
    path: str = field(default="", compare=False)

    @property
    def packages(self) -> list[str]:
        """Every pinned package of every step, in order."""
        return [p for pkgs, _ in self.steps for p in pkgs]


@dataclass(frozen=True)
class EnvStatus:
    """Where a family's environment is and whether it is usable.

    ``state`` is 'ready', 'missing' (never built for this spec) or 'broken' (the directory
    exists but its marker or interpreter is missing or unreadable).
    """

    family: str
    path: str
    spec_version: int
    state: str
    detail: str = ""


def families() -> list[str]:
    """Families that have an environment spec, sorted."""
    return sorted(p.stem for p in _SPECS.glob("*.toml"))


def spec(family: str) -> EnvSpec:
    """The parsed spec of ``family``.

    Raises
    ------
    ValueError
        Unknown family (the message lists the known ones) or a malformed spec file.

    Examples
    --------
    >>> from matalign.envs import spec
    >>> "mace-torch==0.3.16" in spec("mace").packages
    True
    """
    if not isinstance(family, str) or family not in families():
        raise ValueError(f"unknown model environment {family!r}; families with an environment "
                         f"spec: {', '.join(families())}")
    path = _SPECS / f"{family}.toml"
    raw = path.read_bytes()
    try:
        d = tomllib.loads(raw.decode("utf-8"))
        steps = tuple((tuple(str(p) for p in s["packages"]), bool(s.get("no_deps", True)))
                      for s in d.get("steps", ()))
        out = EnvSpec(family=d["family"], version=int(d["version"]),
                      description=str(d.get("description", "")),
                      module=str(d["module"]), steps=steps,
                      imports=tuple(d.get("imports", ())), check=str(d.get("check", "")),
                      sha256=hashlib.sha256(raw).hexdigest(), path=str(path))
    except (KeyError, TypeError, ValueError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"malformed environment spec {path}: {exc}") from None
    if out.family != family:
        raise ValueError(f"environment spec {path} names family {out.family!r}, not {family!r}")
    for pkg in out.packages:
        name, sep, version = pkg.partition("==")
        if not sep or not version or not name:
            raise ValueError(f"environment spec {path}: package {pkg!r} is not pinned "
                             f"(name==version)")
        if name.lower() in _SHARED:
            raise ValueError(f"environment spec {path}: {name} must come from the main "
                             f"environment, not be installed into a family's")
    return out


def root() -> Path:
    """Directory holding every family environment: ``$MATALIGN_ENV_DIR`` or
    ``$XDG_CACHE_HOME/matalign/envs`` (default ``~/.cache/matalign/envs``)."""
    if os.environ.get("MATALIGN_ENV_DIR"):
        return Path(os.environ["MATALIGN_ENV_DIR"]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "matalign" / "envs"


def _main_site_dirs() -> list[str]:
    """site-packages directories of the running (main) environment, its own first."""
    dirs = [sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]
    out: list[str] = []
    for d in dirs:
        if d not in out and os.path.isdir(d):
            out.append(d)
    return out


def _sees_system_site() -> bool:
    """True when the main environment sees the interpreter's own site-packages (it is not a
    venv, or a venv made with ``--system-site-packages``)."""
    if sys.prefix == sys.base_prefix:
        return True
    try:
        cfg = Path(sys.prefix, "pyvenv.cfg").read_text().splitlines()
    except OSError:
        return False
    for line in cfg:
        key, _, value = line.partition("=")
        if key.strip() == "include-system-site-packages":
            return value.strip().lower() == "true"
    return False


def _key(sp: EnvSpec) -> str:
    h = hashlib.sha256()
    h.update(sp.sha256.encode())
    h.update(f"{sys.version_info[:3]}|{sys.prefix}|{sys.executable}".encode())
    return h.hexdigest()[:12]


def env_dir(family: str) -> Path:
    """Directory of ``family``'s environment for the current spec and main environment."""
    sp = spec(family)
    return root() / f"{family}-{_key(sp)}"


def python_of(family: str) -> Path:
    """Interpreter of ``family``'s environment (which may not exist yet)."""
    return env_dir(family) / "bin" / "python"


def status(family: str) -> EnvStatus:
    """State of ``family``'s environment (see :class:`EnvStatus`).

    Examples
    --------
    >>> from matalign.envs import status
    >>> status("mace").state in ("ready", "missing", "broken")
    True
    """
    sp = spec(family)
    d = env_dir(family)
    if not d.exists():
        return EnvStatus(family, str(d), sp.version, "missing",
                         f"run `matalign env create {family}`")
    try:
        marker = json.loads((d / _MARKER).read_text())
        ok = marker.get("spec_sha256") == sp.sha256 and (d / "bin" / "python").exists()
    except (OSError, ValueError):
        ok = False
    if not ok:
        return EnvStatus(family, str(d), sp.version, "broken",
                         f"run `matalign env remove {family}` then `matalign env create "
                         f"{family}`")
    return EnvStatus(family, str(d), sp.version, "ready", "")


def find(family: str) -> Path:
    """Interpreter of ``family``'s ready environment; one clear error when it is not ready.

    Raises
    ------
    ModelEnvironmentError
        The environment is missing or broken; the message says what to run.
    """
    st = status(family)
    if st.state != "ready":
        what = "does not exist" if st.state == "missing" else "is broken (half-built or damaged)"
        raise ModelEnvironmentError(
            f"the {family!r} model environment {what} at {st.path}: {st.detail}")
    return Path(st.path) / "bin" / "python"


def _run(cmd: list[str], log, what: str) -> None:
    log.write(f"$ {' '.join(cmd)}\n")
    log.flush()
    r = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    if r.returncode != 0:
        raise ModelEnvironmentError(f"{what} failed (exit code {r.returncode}); see the log "
                                    f"{log.name}")


def _constraints() -> str:
    """pip constraints: the main environment's torch and numpy, so no install can replace
    them (an unpinned torch is a multi-GB CUDA download; the compiled engine needs this
    numpy)."""
    lines = []
    for dist in ("torch", "numpy"):
        try:
            v = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
        lines.append(f"{dist}=={v.split('+')[0]}")
    return "\n".join(lines) + "\n"


def create(family: str, *, force: bool = False,
           say: Callable[[str], None] | None = None) -> EnvStatus:
    """Build ``family``'s environment from its spec (a no-op when it is ready).

    Parameters
    ----------
    family : str
        One of :func:`families`.
    force : bool
        Rebuild even when a ready environment exists.
    say : callable(str), optional
        Called with one line per step (the CLI prints them).

    Returns
    -------
    EnvStatus

    Raises
    ------
    ModelEnvironmentError
        A pip step, an import check or the torch check failed (the message names the step
        and the log file); nothing is left at the environment's path.

    Examples
    --------
    >>> import matalign.envs as envs
    >>> envs.create("mace").state    # doctest: +SKIP
    'ready'
    """
    say = say or (lambda _line: None)
    sp = spec(family)
    final = env_dir(family)
    final.parent.mkdir(parents=True, exist_ok=True)
    # One builder per environment at a time (CI starts a build in the background that the
    # test session may ask for too): the second waits, then finds it ready.
    with open(final.parent / f".{final.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        st = status(family)
        if st.state == "ready" and not force:
            say(f"{family}: ready at {final}")
            return st
        return _build(sp, final, say)


def _build(sp: EnvSpec, final: Path, say: Callable[[str], None]) -> EnvStatus:
    family = sp.family
    tmp = final.parent / f".{final.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    log_path = final.parent / f"{final.name}.log"
    t0 = time.monotonic()
    try:
        with open(log_path, "w") as log:
            say(f"{family}: creating {final} (spec v{sp.version}; log {log_path})")
            # The family sees exactly what the main environment sees, plus its own pins: the
            # interpreter's own site-packages only where the main environment does.
            system = ["--system-site-packages"] if _sees_system_site() else []
            _run([sys.executable, "-m", "venv", *system, "--without-pip", str(tmp)], log,
                 "python -m venv")
            py = tmp / "bin" / "python"
            site = subprocess.run(
                [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                capture_output=True, text=True, check=True).stdout.strip()
            # The main environment's site-packages come right after the family's own, so
            # the family's pins shadow them and everything else (torch) is shared.
            lines = ("" if sys.prefix == sys.base_prefix else
                     "".join(f"import site; site.addsitedir({d!r})\n"
                             for d in _main_site_dirs()))
            Path(site, "_matalign_main_env.pth").write_text(lines)
            cons = tmp / "constraints.txt"
            cons.write_text(_constraints())
            for i, (pkgs, no_deps) in enumerate(sp.steps):
                say(f"{family}: pip install {' '.join(pkgs)}")
                cmd = [sys.executable, "-m", "pip", "--python", str(py), "install",
                       "--disable-pip-version-check", "--no-input", "-q", "-c", str(cons)]
                if no_deps:
                    cmd.append("--no-deps")
                _run(cmd + list(pkgs), log, f"{family}: pip install step {i + 1}")
            code = "".join(f"import {m}\n" for m in sp.imports) + sp.check + "\n" + (
                "import torch, json, os\n"
                f"assert not os.path.realpath(torch.__file__).startswith("
                f"os.path.realpath({str(tmp)!r})), 'torch was installed into the environment'\n"
                "print(json.dumps({'torch': torch.__version__}))\n")
            say(f"{family}: checking imports")
            _run([str(py), "-c", code], log, f"{family}: import check")
            installed = sorted(
                f"{d.metadata['Name']}=={d.version}"
                for d in importlib.metadata.distributions(path=[site]))
            marker = {"family": family, "spec_version": sp.version, "spec_sha256": sp.sha256,
                      "installed": installed, "main_prefix": sys.prefix,
                      "python": sys.version.split()[0]}
            (tmp / _MARKER).write_text(json.dumps(marker, indent=1) + "\n")
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        # A venv records its own path in scripts; ours are only ever run as bin/python, whose
        # pyvenv.cfg holds no path of the venv itself, so the rename is safe.
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    say(f"{family}: ready at {final} ({time.monotonic() - t0:.0f} s)")
    return status(family)


def remove(family: str) -> list[str]:
    """Delete every environment of ``family`` (all spec versions); returns the paths removed.

    Examples
    --------
    >>> from matalign.envs import remove
    >>> remove("orb")    # doctest: +SKIP
    ['/home/me/.cache/matalign/envs/orb-3f2a...']
    """
    spec(family)
    out = []
    base = root()
    if base.is_dir():
        for p in sorted(base.iterdir()):
            if p.is_dir() and (p.name.startswith(f"{family}-")
                               or p.name.startswith(f".{family}-")):
                shutil.rmtree(p)
                out.append(str(p))
        for p in base.glob(f"{family}-*.log"):
            p.unlink()
        for p in base.glob(f".{family}-*.lock"):
            p.unlink()
    return out
