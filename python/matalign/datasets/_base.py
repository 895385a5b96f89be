"""Dataset base: a re-iterable, streamed source of Structures with stable ids."""

from __future__ import annotations

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
