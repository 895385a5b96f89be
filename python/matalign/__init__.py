"""matalign: exact, fast, large-scale alignment metrics between embedding spaces.

Compare two models by their embeddings of the same N structures::

    import matalign as ma
    g = ma.knn(X, k=10)                 # KnnGraph, reusable
    ma.mutual_knn(X, Y, k=10)           # arrays or KnnGraphs
    ma.cknna(X, Y, k=10)
    ma.intrinsic_dimension(X)
    ma.cka(X, Y);  ma.distance_correlation(X, Y);  ma.information_imbalance(X, Y)

See docs/METRICS.md for the exact definitions.
"""

from . import _engine
from . import adapters, datasets, envs, executor
from ._device import CudaError
from ._info import build_info, cuda_device_count
from .knn import KnnGraph, knn
from .matrix import AlignmentMatrix, alignment_matrix
from .metrics import cknna, intrinsic_dimension, local_agreement, mutual_knn
from .metrics import (SignificanceResult, bootstrap_ci, cka, distance_correlation,
                      information_imbalance, permutation_test)
from .preprocess import preprocess
from .store import EmbeddingStore, open_store
from .embed import embed
from .layers import LayerSweep, layer_sweep
from .study import study, study_config

__version__: str = _engine.version()

__all__ = [
    "__version__",
    "study",
    "study_config",
    "adapters",
    "datasets",
    "envs",
    "knn",
    "KnnGraph",
    "mutual_knn",
    "cknna",
    "local_agreement",
    "intrinsic_dimension",
    "cka",
    "distance_correlation",
    "information_imbalance",
    "permutation_test",
    "bootstrap_ci",
    "SignificanceResult",
    "alignment_matrix",
    "AlignmentMatrix",
    "preprocess",
    "open_store",
    "EmbeddingStore",
    "embed",
    "layer_sweep",
    "LayerSweep",
    "build_info",
    "cuda_device_count",
    "CudaError",
]

# ---- statistics, model tree, findings and OOD scores (docs/STATISTICS.md) -----------------
from . import findings, ood, statistics, tree
from .statistics import (CIResult, NullResult, SweepResult, confidence_interval, null_test,
                         sweep)

__all__ += ["statistics", "tree", "findings", "ood", "confidence_interval", "null_test",
            "sweep", "CIResult", "NullResult", "SweepResult"]
