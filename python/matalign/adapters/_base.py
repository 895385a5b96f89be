"""Adapter base class: structures in, one pooled vector per structure out.

An adapter subclass implements :meth:`Adapter._embed_batch` (a list of
:class:`~matalign.structures.Structure` → float32 array of shape (len(batch), dim)) and sets
its metadata; the base class does batching, progress, validation and determinism checks.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import os
from typing import Any, Iterable, Sequence

import numpy as np

from .._progress import progress_bar
from ..structures import MODALITIES, Structure, check_atoms

__all__ = ["Adapter", "pool", "POOLINGS", "sha256_file", "require", "package_version",
           "checkpoint_path"]

POOLINGS = ("mean", "sum", "max")


def pool(features: np.ndarray, segments: Sequence[int] | np.ndarray, how: str = "mean") -> np.ndarray:
    """Pool per-atom (per-token) features into one vector per structure.

    Parameters
    ----------
    features : (n_atoms_total, D) array
        Rows of all structures of a batch, concatenated in order.
    segments : sequence of int
        Number of rows of each structure; sums to ``len(features)``.
    how : {'mean', 'sum', 'max'}

    Returns
    -------
    (len(segments), D) float32 array

    Examples
    --------
    >>> import numpy as np
    >>> from matalign.adapters import pool
    >>> pool(np.array([[1., 2.], [3., 4.], [5., 6.]]), [2, 1], "mean")
    array([[2., 3.],
           [5., 6.]], dtype=float32)
    """
    if how not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}, got {how!r}")
    features = np.asarray(features, dtype=np.float64)
    segments = np.asarray(segments, dtype=np.int64)
    if features.ndim != 2:
        raise ValueError(f"features must be 2-D, got shape {features.shape}")
    if segments.sum() != features.shape[0] or (segments <= 0).any():
        raise ValueError(f"segments {segments.tolist()} do not partition {features.shape[0]} rows")
    starts = np.concatenate([[0], np.cumsum(segments)[:-1]])
    if how == "max":
        out = np.maximum.reduceat(features, starts, axis=0)
    else:
        out = np.add.reduceat(features, starts, axis=0)
        if how == "mean":
            out /= segments[:, None]
    return out.astype(np.float32)


def sha256_file(path: str | os.PathLike, _cache: dict = {}) -> str:  # noqa: B006
    """SHA-256 hex digest of a file (cached by path, size and mtime)."""
    st = os.stat(path)
    key = (os.fspath(path), st.st_size, st.st_mtime_ns)
    if key not in _cache:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        _cache[key] = h.hexdigest()
    return _cache[key]


def require(module: str, pip_name: str | None = None, extra: str | None = None) -> Any:
    """Import an optional dependency or raise ImportError naming the pip package."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        pip_name = pip_name or module
        hint = f"pip install {pip_name}"
        if extra:
            hint += f"  (or pip install 'matalign[{extra}]')"
        raise ImportError(f"this adapter needs the package '{pip_name}', which is not "
                          f"installed: {hint}") from exc


def package_version(dist: str) -> str | None:
    """Installed version of a distribution, or None."""
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def checkpoint_path(path: str | os.PathLike | None, *, adapter: str, expected: str) -> str:
    """Check a bring-your-own checkpoint path; the error names the file that is expected.

    Parameters
    ----------
    path : path or None
        What the user passed as ``checkpoint=``.
    adapter : str
        Adapter name, for the message.
    expected : str
        What file is expected, e.g. ``"a MACE .model file such as 2023-12-10-mace-128-L0_energy_epoch-249.model"``.
    """
    if path is None:
        raise ValueError(f"adapter {adapter!r} needs checkpoint=PATH: {expected}. Its weights "
                         f"live on a hub and matalign never downloads; fetch the file "
                         f"yourself and pass its local path")
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"adapter {adapter!r}: checkpoint {path!r} does not exist; "
                                f"expected {expected}")
    return path


class Adapter:
    """Base class of all adapters.

    Subclasses set the class attributes and implement :meth:`_embed_batch`.

    Attributes
    ----------
    name : str
        Registry name (``"chgnet-0.3.0"``).
    modality : {'atoms', 'smiles', 'sequence'}
        What the adapter reads from each Structure.
    dim : int
        Embedding dimension D.
    pooling : {'mean', 'sum', 'max'}
    layer : str
        Which hidden layer the features come from (documented per adapter).
    """

    name: str = "adapter"
    modality: str = "atoms"
    dim: int = 0
    pooling: str = "mean"
    layer: str = ""
    package: str | None = None          # distribution name, for the version in metadata
    checkpoint: str | None = None       # file the weights were read from, if any

    def __init__(self, *, pooling: str = "mean") -> None:
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        self.pooling = pooling

    # -- subclass API -------------------------------------------------------------------------
    def _embed_batch(self, batch: list[Structure]) -> np.ndarray:
        """Return (len(batch), dim) features for a batch; subclasses implement this."""
        raise NotImplementedError

    # -- public API ---------------------------------------------------------------------------
    @property
    def metadata(self) -> dict[str, Any]:
        """JSON-serialisable description: package and version, checkpoint and SHA-256, layer,
        pooling, dimension, modality."""
        meta: dict[str, Any] = {
            "adapter": self.name,
            "class": f"{type(self).__module__}.{type(self).__qualname__}",
            "modality": self.modality,
            "dim": int(self.dim),
            "layer": self.layer,
            "pooling": self.pooling,
            "package": self.package,
            "package_version": package_version(self.package) if self.package else None,
            "checkpoint": self.checkpoint,
            "checkpoint_sha256": (sha256_file(self.checkpoint)
                                  if self.checkpoint and os.path.isfile(self.checkpoint) else None),
        }
        meta.update(self._extra_metadata())
        return meta

    def _extra_metadata(self) -> dict[str, Any]:
        return {}

    # -- layers (optional; adapters that can expose every block override these) -------------
    def layers(self) -> list[str]:
        """Names of the layers (blocks) this adapter can return features of, input to output.

        Empty for adapters without a layer choice (descriptors). Adapters that declare layers
        implement :meth:`layer_atom_features`; :meth:`embed` takes ``layer=`` one of these and
        :func:`matalign.layers.layer_sweep` embeds all of them in one forward pass per batch.
        """
        return []

    @property
    def default_layer(self) -> str | None:
        """The layer :meth:`embed` uses without ``layer=`` (None if none are declared)."""
        return None

    def layer_atom_features(self, batch: list[Structure]
                            ) -> tuple[dict[str, np.ndarray], list[int]]:
        """Per-atom (per-residue) features of every declared layer for one batch, from one
        forward pass: ({layer: (n_rows_total, D_layer)}, rows per structure)."""
        raise NotImplementedError(f"adapter {self.name!r} declares no layers")

    def embed_layers(self, structures: Iterable[Structure], *, layers: Sequence[str] | None = None,
                     poolings: Sequence[str] | None = None, batch_size: int = 32,
                     progress: bool = False) -> dict[tuple[str, str], np.ndarray]:
        """Embed every requested layer under every requested pooling in one pass.

        Parameters
        ----------
        structures : iterable of Structure
        layers : sequence of str, optional
            Subset of :meth:`layers` (default: all).
        poolings : sequence of {'mean', 'sum', 'max'}, optional
            Default: this adapter's pooling.
        batch_size : int
        progress : bool

        Returns
        -------
        dict of (layer, pooling) to (N, D_layer) float32 array

        Examples
        --------
        >>> import matalign as ma
        >>> from ase.build import bulk
        >>> from matalign.structures import Structure
        >>> ad = ma.adapters.get("random-chgnet")   # doctest: +SKIP
        >>> out = ad.embed_layers([Structure("si", atoms=bulk("Si"))])   # doctest: +SKIP
        >>> sorted(out)[0]   # doctest: +SKIP
        ('conv0', 'mean')
        """
        have = self.layers()
        if not have:
            raise ValueError(f"adapter {self.name!r} declares no layers; layer sweeps need an "
                             f"adapter with layers() (CHGNet, SevenNet, ProteinMPNN, ...)")
        layers = list(have if layers is None else layers)
        bad = [lay for lay in layers if lay not in have]
        if bad or not layers:
            raise ValueError(f"layers must be a non-empty subset of {have} for adapter "
                             f"{self.name!r}, got {layers!r}")
        poolings = [self.pooling] if poolings is None else list(poolings)
        for how in poolings:
            if how not in POOLINGS:
                raise ValueError(f"poolings must be among {POOLINGS}, got {how!r}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) \
                or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        items = list(structures)
        if not items:
            raise ValueError("structures is empty: nothing to embed")
        parts: dict[tuple[str, str], list] = {(lay, how): [] for lay in layers for how in poolings}
        with progress_bar(len(items), desc=f"layers {self.name}", enabled=progress) as bar:
            for start in range(0, len(items), batch_size):
                batch = items[start:start + batch_size]
                self._check_batch(batch)
                feats, counts = self.layer_atom_features(batch)
                for lay in layers:
                    for how in poolings:
                        out = pool(feats[lay], counts, how)
                        bad_rows = ~np.isfinite(out).all(axis=1)
                        if bad_rows.any():
                            sid = batch[int(np.flatnonzero(bad_rows)[0])].id
                            raise ValueError(f"adapter {self.name!r} produced non-finite "
                                             f"features in layer {lay!r} for structure {sid!r}")
                        parts[(lay, how)].append(out)
                bar.update(len(batch))
        return {key: np.concatenate(v, axis=0) for key, v in parts.items()}

    def embed(self, structures: Iterable[Structure], *, batch_size: int = 32,
              progress: bool = False, layer: str | None = None) -> np.ndarray:
        """Embed structures into an (N, dim) float32 array, one pooled row per structure.

        Parameters
        ----------
        structures : iterable of Structure
            Each must carry this adapter's modality (``self.modality``).
        batch_size : int
            Structures per forward pass.
        progress : bool
            Show a progress bar.
        layer : str, optional
            One of :meth:`layers` instead of the adapter's default layer (pooled with this
            adapter's pooling; the width may differ from ``dim``).

        Returns
        -------
        (N, dim) float32 array
        """
        if layer is not None:
            return self.embed_layers(structures, layers=[layer], batch_size=batch_size,
                                     progress=progress)[(layer, self.pooling)]
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) \
                or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        items = list(structures)
        if not items:
            raise ValueError("structures is empty: nothing to embed")
        out = np.empty((len(items), self.dim), dtype=np.float32)
        with progress_bar(len(items), desc=f"embed {self.name}", enabled=progress) as bar:
            for start in range(0, len(items), batch_size):
                batch = items[start:start + batch_size]
                out[start:start + len(batch)] = self.embed_batch(batch)
                bar.update(len(batch))
        from ._status import record_run
        record_run(self)        # for `matalign models`: this adapter ran in this installation
        return out

    def embed_batch(self, batch: list[Structure]) -> np.ndarray:
        """Embed one batch with checks: modality present, shape and finiteness of the output."""
        self._check_batch(batch)
        feats = np.asarray(self._embed_batch(batch), dtype=np.float32)
        if feats.shape != (len(batch), self.dim):
            raise RuntimeError(f"internal error in adapter {self.name!r}: got features of "
                               f"shape {feats.shape}, expected {(len(batch), self.dim)}")
        bad = ~np.isfinite(feats).all(axis=1)
        if bad.any():
            sid = batch[int(np.flatnonzero(bad)[0])].id
            raise ValueError(f"adapter {self.name!r} produced non-finite features for "
                             f"structure {sid!r}")
        return feats

    def _check_batch(self, batch: list[Structure]) -> None:
        for s in batch:
            if not isinstance(s, Structure):
                raise TypeError(f"adapter {self.name!r} expects matalign Structure objects, "
                                f"got {type(s).__name__}")
            if getattr(s, self.modality) is None:
                raise ValueError(f"adapter {self.name!r} reads {self.modality!r} but structure "
                                 f"{s.id!r} has none")
            if self.modality == "atoms":
                # Again here: atoms can be changed in place after the Structure was built, and
                # native descriptor/model code must never see non-finite or absurd coordinates.
                check_atoms(s.atoms, f"adapter {self.name!r}: structure {s.id!r}")

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} {self.modality} D={self.dim} {self.pooling}>"


_ = MODALITIES  # re-exported for subclasses' checks
