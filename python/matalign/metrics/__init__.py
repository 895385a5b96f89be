"""Alignment metrics between embedding spaces of the same N structures (DESIGN.md §2)."""

from .kernel_alignment import cka, median_distance
from .dcor import distance_correlation
from .imbalance import information_imbalance
from .intrinsic import intrinsic_dimension
from .local import cknna, local_agreement, mutual_knn
from .significance import SignificanceResult, bootstrap_ci, permutation_test

__all__ = ["mutual_knn", "local_agreement", "cknna", "intrinsic_dimension", "cka",
           "distance_correlation", "information_imbalance", "permutation_test", "bootstrap_ci",
           "SignificanceResult", "median_distance"]
