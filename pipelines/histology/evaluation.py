"""Scoring against known nuclei: one-to-one detection matching within a radius; AJI, PQ and Dice of instance masks."""

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


# --------------------------------------------------------------------------------------------- instance masks


@dataclass(frozen=True)
class SegmentationScore:
    """Sums behind AJI, panoptic quality and pixel Dice of one tile; they add up over tiles (pooling).

    AJI (Kumar et al., IEEE TMI 2017): each true nucleus is paired with the predicted one of highest IoU;
    ``aji = aji_intersection / aji_union`` where the union also holds every predicted nucleus paired with
    no true one. Panoptic quality (Kirillov et al., CVPR 2019): one-to-one pairs with IoU > 0.5;
    ``pq = iou_sum / (tp + fp / 2 + fn / 2)``. Dice: on the union of all nuclei, truth vs prediction.
    """

    aji_intersection: float
    aji_union: float
    pq_iou_sum: float
    pq_tp: int
    pq_fp: int
    pq_fn: int
    dice_intersection: float
    dice_total: float

    @property
    def aji(self) -> float:
        return self.aji_intersection / self.aji_union if self.aji_union else 0.0

    @property
    def pq(self) -> float:
        d = self.pq_tp + 0.5 * (self.pq_fp + self.pq_fn)
        return self.pq_iou_sum / d if d else 0.0

    @property
    def dice(self) -> float:
        return 2 * self.dice_intersection / self.dice_total if self.dice_total else 0.0

    def __add__(self, other: SegmentationScore) -> SegmentationScore:
        return SegmentationScore(*(a + b for a, b in zip(_fields(self), _fields(other))))


def _fields(score: SegmentationScore) -> tuple:
    return tuple(getattr(score, f) for f in score.__dataclass_fields__)


def score_instances(truth: np.ndarray, pred: np.ndarray) -> SegmentationScore:
    """AJI, PQ and Dice sums of a predicted instance label image against the true one (same shape).

    Labels need not be consecutive; 0 is background. All overlaps come from one pass over the pixels
    where both are non-zero (``np.unique`` of the label pairs), not one mask per nucleus.
    """
    if truth.shape != pred.shape:
        raise ValueError(f"truth {truth.shape} and prediction {pred.shape} differ in shape")
    t = truth.ravel().astype(np.int64)
    p = pred.ravel().astype(np.int64)
    area_t = np.bincount(t)
    area_p = np.bincount(p)
    true_ids = np.flatnonzero(area_t[1:]) + 1
    pred_ids = np.flatnonzero(area_p[1:]) + 1
    both = (t > 0) & (p > 0)
    pairs, inter = np.unique(t[both] * (len(area_p) + 1) + p[both], return_counts=True)
    pt, pp = np.divmod(pairs, len(area_p) + 1)
    union = area_t[pt] + area_p[pp] - inter
    iou = inter / union
    # AJI: the best prediction of each true nucleus (pairs sorted by truth, then IoU descending).
    order = np.lexsort((-iou, pt))
    first = order[np.r_[True, pt[order][1:] != pt[order][:-1]]] if len(order) else order
    used = np.zeros(len(area_p), bool)
    used[pp[first]] = True
    unpaired_truth = np.setdiff1d(true_ids, pt[first])
    aji_i = float(inter[first].sum())
    aji_u = float(union[first].sum() + area_t[unpaired_truth].sum() + area_p[pred_ids[~used[pred_ids]]].sum())
    # PQ: IoU > 0.5 pairs are unique by construction.
    good = iou > 0.5
    tp = int(good.sum())
    return SegmentationScore(
        aji_intersection=aji_i, aji_union=aji_u, pq_iou_sum=float(iou[good].sum()), pq_tp=tp,
        pq_fp=len(pred_ids) - tp, pq_fn=len(true_ids) - tp,
        dice_intersection=float(both.sum()), dice_total=float((t > 0).sum() + (p > 0).sum()),
    )


def label_centroids(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ids of the non-empty labels and their centroids (x, y) in pixel units, a pixel spanning [i, i + 1)."""
    flat = labels.ravel().astype(np.int64)
    yy, xx = np.divmod(np.arange(flat.size), labels.shape[1])
    area = np.bincount(flat)
    ids = np.flatnonzero(area[1:]) + 1
    cx = np.bincount(flat, xx, len(area))[ids] / area[ids] + 0.5
    cy = np.bincount(flat, yy, len(area))[ids] / area[ids] + 0.5
    return ids, np.column_stack([cx, cy])
