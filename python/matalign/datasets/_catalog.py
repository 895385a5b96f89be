"""The dataset catalogue: :class:`DatasetInfo`, the name table, ``list()`` and ``get()``.

It sits at the bottom of ``matalign.datasets`` (it imports only :mod:`._base`), so that
helpers such as :func:`._common.as_dataset` can resolve a dataset name without importing the
readers and generators that fill the table; :mod:`._registry` registers the entries.
"""

from __future__ import annotations

import builtins
import inspect
from dataclasses import dataclass
from typing import Any, Callable

from ._base import Dataset

__all__ = ["DatasetInfo", "register", "list", "get"]


@dataclass(frozen=True)
class DatasetInfo:
    """One registered dataset: what :func:`get` can build.

    Attributes
    ----------
    name : str
    modality : tuple of str
        Representations its structures carry ('atoms', 'smiles', 'sequence').
    n : int or None
        Number of structures (None when it depends on options or on a local copy).
    source : str
    description : str
    licence : str
    """

    name: str
    modality: tuple[str, ...]
    n: int | None
    source: str
    description: str
    licence: str


_REGISTRY: dict[str, tuple[DatasetInfo, Callable[..., Dataset]]] = {}


def register(info: DatasetInfo, factory: Callable[..., Dataset]) -> None:
    """Add (or replace) the entry ``info.name``; :mod:`._registry` fills the table."""
    _REGISTRY[info.name] = (info, factory)


def list() -> builtins.list[DatasetInfo]:  # noqa: A001 - public API name
    """Registered datasets (built-in sets and named generators), sorted by name.

    Returns
    -------
    list of DatasetInfo

    Examples
    --------
    >>> import matalign.datasets as mds
    >>> names = [d.name for d in mds.list()]
    >>> "mptrj" in names and "ccd" in names
    True
    """
    return [_REGISTRY[k][0] for k in sorted(_REGISTRY)]


def get(name: str, **options: Any) -> Dataset:
    """Build a registered dataset by name (offline; nothing is downloaded).

    Parameters
    ----------
    name : str
        One of ``[d.name for d in list()]``: ``mptrj``, ``mattersim-full``, ``ccd``,
        ``nci``, ``wehi``, ``chembl``, ``g2``, ``s22``, ``mptrj-ladder``,
        ``synthetic-crystals``, ``nci-brics``.
    **options
        Dataset-specific options (see each ``DatasetInfo.description``).

    Returns
    -------
    Dataset

    Examples
    --------
    >>> import matalign.datasets as mds
    >>> ds = mds.get("mptrj")
    >>> len(ds), next(iter(ds)).id
    (300, 'mptrj:0')
    >>> next(iter(mds.get("g2"))).id
    'g2:PH3'
    """
    if not isinstance(name, str) or name not in _REGISTRY:
        raise ValueError(f"name must be one of {sorted(_REGISTRY)}, got {name!r}")
    info, factory = _REGISTRY[name]
    try:
        inspect.signature(factory).bind(**options)
    except TypeError:
        params = [p for p in inspect.signature(factory).parameters]
        raise TypeError(f"dataset {name!r} does not accept options {sorted(options)}; "
                        f"it takes {params or 'no options'}") from None
    return factory(**options)
