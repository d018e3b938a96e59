"""Unsupervised translation by shared geometry: a start (known pairs, the identity, a chain through a pivot space,
or matched k-means anchors) -> self-learning on nearest-neighbour pseudo-pairs -> the target mean restored.

No paired data is needed: every choice among candidates is made with label-free scores (or held-out known pairs).
`kernels` (matching), `anchors` (k-means + quadratic assignment), `screening` (starts and their choice),
`refine` (self-learning) and `translator` (the estimator); `fewshot`, maps from known pairs for pairs no unpaired
target set covers (the pairs alone, or beside geometric fits calibrated on them).
"""

from align.geometric.fewshot import PairsEnsembleTranslator, PairsSubspaceTranslator
from align.geometric.translator import MIN_VALIDATION_PAIRS, SEARCH_WEIGHT, GeometricTranslator

__all__ = ["MIN_VALIDATION_PAIRS", "SEARCH_WEIGHT", "GeometricTranslator", "PairsEnsembleTranslator",
           "PairsSubspaceTranslator"]
