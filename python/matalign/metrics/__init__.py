"""Alignment metrics between embedding spaces of the same N structures.

One module per metric family; each owns its pairwise function and its all-models form (the
``MATRIX_STAGE`` that :func:`matalign.alignment_matrix` runs), and both call one private
kernel in that module. Exact definitions, tie rules and estimator choices: docs/METRICS.md.

Adding a metric: write ``metrics/<metric>.py`` with the pairwise function and its
``MATRIX_STAGE``, then add the stage to :data:`MATRIX_STAGES` below; the matrix, its memory
plan, the progress bar and the CLI's metric list follow from it.
"""

from . import dcor as _dcor_module
from . import graph as _graph_module
from . import imbalance as _imbalance_module
from . import intrinsic as _intrinsic_module
from . import kernel_alignment as _cka_module
from .dcor import distance_correlation
from .graph import cknna, local_agreement, mutual_knn
from .imbalance import information_imbalance
from .intrinsic import intrinsic_dimension
from .kernel_alignment import cka, median_distance
from .significance import SignificanceResult, bootstrap_ci, permutation_test

__all__ = ["mutual_knn", "local_agreement", "cknna", "intrinsic_dimension", "cka",
           "distance_correlation", "information_imbalance", "permutation_test", "bootstrap_ci",
           "SignificanceResult", "median_distance", "MATRIX_STAGES", "PAIR_METRICS",
           "MODEL_METRICS", "ALL_METRICS", "GRAPH_METRICS", "ALIASES", "stage_of"]

# The all-models forms, in the order alignment_matrix runs them.
MATRIX_STAGES = (_graph_module.MATRIX_STAGE, _cka_module.MATRIX_STAGE, _dcor_module.MATRIX_STAGE,
                 _imbalance_module.MATRIX_STAGE, _intrinsic_module.MATRIX_STAGE)
PAIR_METRICS = tuple(m for s in MATRIX_STAGES if not s.per_model for m in s.metrics)
MODEL_METRICS = tuple(m for s in MATRIX_STAGES if s.per_model for m in s.metrics)
ALL_METRICS = PAIR_METRICS + MODEL_METRICS
GRAPH_METRICS = tuple(m for s in MATRIX_STAGES if s.graph_input for m in s.metrics)
ALIASES = {"distance_correlation": "dcor", "ii": "information_imbalance",
           "imbalance": "information_imbalance", "id": "intrinsic_dimension",
           "mknn": "mutual_knn", "mutual_knn_overlap": "mutual_knn"}


def stage_of(metric: str):
    """The MatrixStage that computes ``metric``."""
    for stage in MATRIX_STAGES:
        if metric in stage.metrics:
            return stage
    raise KeyError(metric)
