"""Alignment metrics between embedding spaces of the same N structures (DESIGN.md §2)."""

from .intrinsic import intrinsic_dimension
from .local import cknna, local_agreement, mutual_knn

__all__ = ["mutual_knn", "local_agreement", "cknna", "intrinsic_dimension"]
