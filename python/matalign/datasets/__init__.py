"""Structure sets: file readers, built-in sets from what packages ship, seeded generators.

Every dataset streams :class:`~matalign.structures.Structure` records with stable ids and
never holds the whole set in RAM.
"""

from __future__ import annotations

from ._base import Dataset

__all__ = ["Dataset"]
