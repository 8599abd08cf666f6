"""Detection scoring against known nuclei (synthetic slides): one-to-one matching within a radius."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.spatial import cKDTree


@dataclass(frozen=True)
class DetectionScore:
    true_positives: int
    false_positives: int
    false_negatives: int

    @property
    def precision(self) -> float:
        d = self.true_positives + self.false_positives
        return self.true_positives / d if d else 0.0

    @property
    def recall(self) -> float:
        d = self.true_positives + self.false_negatives
        return self.true_positives / d if d else 0.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0


def match_detections(pred_xy: np.ndarray, truth_xy: np.ndarray, radius: float) -> tuple[DetectionScore, np.ndarray]:
    """Optimal one-to-one matching of predicted to true points within ``radius`` (same units).

    Returns the score and an (n_matches, 2) array of (pred index, truth index).
    """
    pred_xy = np.asarray(pred_xy, float).reshape(-1, 2)
    truth_xy = np.asarray(truth_xy, float).reshape(-1, 2)
    if len(pred_xy) == 0 or len(truth_xy) == 0:
        return DetectionScore(0, len(pred_xy), len(truth_xy)), np.zeros((0, 2), int)
    pairs = cKDTree(pred_xy).sparse_distance_matrix(cKDTree(truth_xy), radius, output_type="coo_matrix")
    if pairs.nnz == 0:
        return DetectionScore(0, len(pred_xy), len(truth_xy)), np.zeros((0, 2), int)
    # Assignment on the candidate pairs only (unmatched pairs cost more than any real match).
    rows, cols = np.unique(pairs.row), np.unique(pairs.col)
    cost = np.full((len(rows), len(cols)), radius * 10.0)
    cost[np.searchsorted(rows, pairs.row), np.searchsorted(cols, pairs.col)] = pairs.data
    r, c = linear_sum_assignment(cost)
    ok = cost[r, c] <= radius
    matches = np.column_stack([rows[r[ok]], cols[c[ok]]])
    tp = len(matches)
    return DetectionScore(tp, len(pred_xy) - tp, len(truth_xy) - tp), matches
