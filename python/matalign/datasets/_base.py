"""Dataset base: a re-iterable, streamed source of Structures with stable ids."""

from __future__ import annotations

from itertools import islice
from typing import Any, Iterator

from ..structures import Structure

__all__ = ["Dataset"]


class Dataset:
    """A named, re-iterable stream of :class:`~matalign.structures.Structure`.

    Iterating twice yields the same structures with the same ids in the same order (seeded
    generators included), which is what makes ``embed --resume`` bitwise reproducible.
    Nothing is held in RAM beyond the record being yielded.

    Attributes
    ----------
    name : str
    modality : tuple of str
        Which representations the structures carry ('atoms', 'smiles', 'sequence').
    """

    name: str = "dataset"
    modality: tuple[str, ...] = ()

    def __iter__(self) -> Iterator[Structure]:
        raise NotImplementedError

    @property
    def seekable(self) -> bool:
        """True when :meth:`iter_from` starts at a record without reading the ones before."""
        return False

    def iter_from(self, start: int) -> Iterator[Structure]:
        """Iterate from the ``start``-th structure (0-based); ``embed(resume=True)`` uses it to
        start at the first unfinished chunk. This default reads and drops the first ``start``
        structures; readers and generators that can start at a record cheaply (seek, skip
        lines, seed by index) override it."""
        start = int(start)
        if start < 0:
            raise ValueError(f"start must be >= 0, got {start}")
        return islice(iter(self), start, None)

    def __len__(self) -> int:
        """Number of structures when known cheaply; otherwise TypeError (as for generators)."""
        raise TypeError(f"dataset {self.name!r} does not know its length without reading it")

    def length_hint(self) -> int | None:
        """Number of structures, or None when unknown (progress bars use it)."""
        try:
            return len(self)
        except TypeError:
            return None

    @property
    def metadata(self) -> dict[str, Any]:
        """JSON-serialisable description: name, source, parameters, seed, licence/attribution."""
        return {"name": self.name, "modality": list(self.modality)}

    def __repr__(self) -> str:
        n = self.length_hint()
        return f"<{type(self).__name__} {self.name!r} n={n if n is not None else '?'}>"
