"""``zeroclick validate nuclei DATA --out DIR``: the histology pipeline measured against manual nuclei.

Each annotated tile (:mod:`zeroclick.pipelines.histology.annotations`) goes through the path a user's
slide takes: it is written as a tiled TIFF with its µm/px and analysed by
:func:`zeroclick.pipelines.histology.run` (tissue detection, stain estimate, tiles at ``target_mpp``, the
engine), asking only for the nuclei label image as well. Then, per tile and pooled over tiles:

- detection precision / recall / F1: predicted and true nucleus centroids matched one-to-one within
  ``radius_um`` (6 µm; optimal assignment);
- AJI, panoptic quality (PQ, IoU > 0.5) and pixel Dice of the instance masks (the prediction brought to
  the annotation's pixel grid, nearest neighbour);
- count error (predicted - true) in nuclei and percent.

Pooled values add the counts and pixel sums of all tiles (not a mean of per-tile values). Tiles are
split in a fixed way to tune parameters on one half only: sorted by name, even positions (0, 2, ...)
are ``train``, odd positions ``held_out``; both are reported apart.

Outputs: ``per_tile.csv``, ``summary.json`` and ``overlays/NAME.png`` (truth outlines green,
prediction outlines yellow, missed true nuclei red dots, unmatched predictions cyan dots).

Example
-------
>>> from zeroclick.pipelines.histology.validation import validate_nuclei
>>> v = validate_nuclei("../shared/data/slides/nuclei/monuseg", out_dir="val")  # doctest: +SKIP
>>> v.pooled["f1"]  # doctest: +SKIP
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from zeroclick.pipelines.histology.annotations import NucleiCase, load_cases
from zeroclick.pipelines.histology.evaluation import (
    DetectionScore,
    SegmentationScore,
    label_centroids,
    match_detections,
    score_instances,
)

logger = logging.getLogger(__name__)

RADIUS_UM = 6.0
SPLIT_RULE = "tiles sorted by name; even positions (0, 2, 4, ...) train, odd positions held_out"
N_WORST = 3
TILE_FIELDS = ("name", "split", "mpp", "status", "tissue_fraction", "true_count", "pred_count",
               "count_error", "count_error_percent", "tp", "fp", "fn", "precision", "recall", "f1",
               "aji", "pq", "dice", "seconds")


@dataclass(frozen=True)
class TileValidation:
    """One tile's agreement with its annotation (scores as sums, so tiles pool exactly)."""

    name: str
    split: str  # "train" or "held_out"
    mpp: float
    status: str  # the pipeline's qc status ("ok", "no_tissue", ...)
    tissue_fraction: float
    detection: DetectionScore
    segmentation: SegmentationScore
    seconds: float
    notes: tuple[str, ...] = ()
    overlay: np.ndarray | None = field(default=None, repr=False, compare=False)

    def row(self) -> dict[str, Any]:
        d, s = self.detection, self.segmentation
        true_n, pred_n = d.true_positives + d.false_negatives, d.true_positives + d.false_positives
        return {
            "name": self.name, "split": self.split, "mpp": self.mpp, "status": self.status,
            "tissue_fraction": round(self.tissue_fraction, 4), "true_count": true_n, "pred_count": pred_n,
            "count_error": pred_n - true_n,
            "count_error_percent": round(100.0 * (pred_n - true_n) / true_n, 2) if true_n else None,
            "tp": d.true_positives, "fp": d.false_positives, "fn": d.false_negatives,
            "precision": round(d.precision, 4), "recall": round(d.recall, 4), "f1": round(d.f1, 4),
            "aji": round(s.aji, 4), "pq": round(s.pq, 4), "dice": round(s.dice, 4),
            "seconds": round(self.seconds, 2),
        }


@dataclass(frozen=True)
class NucleiValidation:
    """Per-tile and pooled agreement of the pipeline with manual nuclei annotations."""

    data: str
    layout: str
    radius_um: float
    engine: str
    target_mpp: float
    tiles: tuple[TileValidation, ...]
    pooled: dict[str, Any]
    train: dict[str, Any]
    held_out: dict[str, Any]
    mean_per_tile: dict[str, Any]
    worst_tiles: tuple[dict[str, Any], ...]
    outputs: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "data": self.data, "layout": self.layout, "radius_um": self.radius_um, "engine": self.engine,
            "target_mpp": self.target_mpp, "tiles": len(self.tiles), "split": SPLIT_RULE,
            "pooled": self.pooled, "train": self.train, "held_out": self.held_out,
            "mean_per_tile": self.mean_per_tile, "worst_tiles": list(self.worst_tiles),
            "per_tile": [t.row() for t in self.tiles], "outputs": self.outputs,
        }


def pooled_scores(tiles: list[TileValidation] | tuple[TileValidation, ...]) -> dict[str, Any]:
    """Detection and segmentation scores of several tiles from their summed counts and pixel sums."""
    if not tiles:
        return {"tiles": 0}
    d = DetectionScore(sum(t.detection.true_positives for t in tiles),
                       sum(t.detection.false_positives for t in tiles),
                       sum(t.detection.false_negatives for t in tiles))
    s = tiles[0].segmentation
    for t in tiles[1:]:
        s = s + t.segmentation
    true_n, pred_n = d.true_positives + d.false_negatives, d.true_positives + d.false_positives
    return {
        "tiles": len(tiles), "true_count": true_n, "pred_count": pred_n, "count_error": pred_n - true_n,
        "count_error_percent": round(100.0 * (pred_n - true_n) / true_n, 2) if true_n else None,
        "precision": round(d.precision, 4), "recall": round(d.recall, 4), "f1": round(d.f1, 4),
        "aji": round(s.aji, 4), "pq": round(s.pq, 4), "dice": round(s.dice, 4),
        "no_tissue_tiles": [t.name for t in tiles if t.status == "no_tissue"],
    }


def _mean_scores(tiles: tuple[TileValidation, ...]) -> dict[str, Any]:
    rows = [t.row() for t in tiles]
    return {k: round(float(np.mean([r[k] for r in rows])), 4) for k in ("precision", "recall", "f1", "aji", "pq",
                                                                            "dice")} if rows else {}


def validate_case(case: NucleiCase, *, split: str = "train", engine: str = "classical", target_mpp: float = 0.5,
                  radius_um: float = RADIUS_UM, nuclei_params=None, tissue_params=None, workers: int = 0,
                  overlay: bool = False) -> TileValidation:
    """Run the pipeline on one annotated tile (as a tiled TIFF with its µm/px) and score it."""
    from zeroclick.pipelines.histology import run

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="zc-nuclei-") as tmp:
        path = Path(tmp) / "tile.tif"
        write_tile_tiff(path, case.rgb, case.mpp)
        result = run(path, mpp=case.mpp, engine=engine, target_mpp=target_mpp, workers=workers,
                     nuclei_params=nuclei_params, tissue_params=tissue_params, keep_labels=True)
    seconds = time.perf_counter() - t0
    h, w = case.truth.shape
    if result.nuclei_labels is not None:
        scale0 = result.target_mpp / case.mpp  # level-0 (annotation) pixels per analysis pixel
        lab = result.nuclei_labels
        rows = np.minimum(((np.arange(h) + 0.5) / scale0).astype(np.int64), lab.shape[0] - 1)
        cols = np.minimum(((np.arange(w) + 0.5) / scale0).astype(np.int64), lab.shape[1] - 1)
        pred = lab[rows[:, None], cols[None, :]]
    else:
        pred = np.zeros((h, w), np.int32)
    pred_xy = (np.column_stack([result.nuclei.column("x_px"), result.nuclei.column("y_px")])
               if result.nuclei is not None and len(result.nuclei) else np.zeros((0, 2)))
    _, truth_xy = label_centroids(case.truth)
    detection, matches = match_detections(pred_xy, truth_xy, radius_um / case.mpp)
    segmentation = score_instances(case.truth, pred)
    picture = draw_overlay(case.rgb, case.truth, pred, pred_xy, truth_xy, matches) if overlay else None
    return TileValidation(case.name, split, case.mpp, str(result.qc.get("status")),
                          float(result.qc.get("tissue_fraction") or 0.0), detection, segmentation, seconds,
                          case.notes, picture)


def validate_nuclei(data: str | os.PathLike, *, out_dir: str | os.PathLike | None = None, layout: str | None = None,
                    engine: str = "classical", target_mpp: float = 0.5, radius_um: float = RADIUS_UM,
                    nuclei_params=None, tissue_params=None, workers: int = 0) -> NucleiValidation:
    """Validate the nuclei pipeline on every annotated tile of ``data``; write outputs when ``out_dir``.

    ``workers=0`` analyses each tile in this process (one tile is one or two analysis tiles: reader
    processes would only add their start-up time; the nuclei found are the same).
    """
    layout_name, cases = load_cases(data, layout=layout)
    tiles = []
    for i, case in enumerate(cases):
        tv = validate_case(case, split="train" if i % 2 == 0 else "held_out", engine=engine,
                           target_mpp=target_mpp, radius_um=radius_um, nuclei_params=nuclei_params,
                           tissue_params=tissue_params, workers=workers, overlay=out_dir is not None)
        logger.info("%s: F1 %.3f, AJI %.3f (%s)", tv.name, tv.detection.f1, tv.segmentation.aji, tv.status)
        tiles.append(tv)
    worst = sorted(tiles, key=lambda t: (t.detection.f1, t.segmentation.aji))[:N_WORST]
    result = NucleiValidation(
        data=str(data), layout=layout_name, radius_um=radius_um, engine=engine, target_mpp=target_mpp,
        tiles=tuple(tiles), pooled=pooled_scores(tiles),
        train=pooled_scores([t for t in tiles if t.split == "train"]),
        held_out=pooled_scores([t for t in tiles if t.split == "held_out"]),
        mean_per_tile=_mean_scores(tuple(tiles)),
        worst_tiles=tuple({"name": t.name, "f1": round(t.detection.f1, 4), "aji": round(t.segmentation.aji, 4),
                           "status": t.status} for t in worst),
    )
    if out_dir is not None:
        result = write_validation(out_dir, result)
    return result


# --------------------------------------------------------------------------------------------- files


def write_tile_tiff(path: Path, rgb: np.ndarray, mpp: float, *, tile_px: int = 256) -> Path:
    """A one-level tiled RGB TIFF (deflate) with its resolution in pixels per centimetre (OpenSlide's µm/px)."""
    import tifffile

    px_per_cm = 1e4 / mpp
    tifffile.imwrite(path, rgb, photometric="rgb", tile=(tile_px, tile_px), compression="zlib",
                     resolution=(px_per_cm, px_per_cm), resolutionunit="CENTIMETER")
    return path


def draw_overlay(rgb: np.ndarray, truth: np.ndarray, pred: np.ndarray, pred_xy: np.ndarray, truth_xy: np.ndarray,
                 matches: np.ndarray) -> np.ndarray:
    """Truth outlines green, prediction outlines yellow; missed true nuclei red dots, unmatched
    predictions cyan dots (on the tile's own pixels)."""
    from skimage.draw import disk
    from skimage.segmentation import find_boundaries

    out = rgb.copy()
    out[find_boundaries(truth, mode="inner")] = (0, 220, 0)
    out[find_boundaries(pred, mode="inner")] = (255, 230, 0)
    missed = np.setdiff1d(np.arange(len(truth_xy)), matches[:, 1])
    extra = np.setdiff1d(np.arange(len(pred_xy)), matches[:, 0])
    for xy, colour in ((truth_xy[missed], (230, 0, 0)), (pred_xy[extra], (0, 200, 255))):
        for x, y in xy:
            rr, cc = disk((y, x), 3, shape=out.shape[:2])
            out[rr, cc] = colour
    return out


def write_validation(out_dir: str | os.PathLike, v: NucleiValidation) -> NucleiValidation:
    """``per_tile.csv``, ``summary.json`` and one overlay PNG per tile (each written atomically)."""
    import dataclasses

    from PIL import Image

    from zeroclick.pipelines.histology.outputs import atomic_write

    out = Path(out_dir)
    (out / "overlays").mkdir(parents=True, exist_ok=True)
    outputs: dict[str, str] = {}
    for i, t in enumerate(v.tiles):
        if t.overlay is not None:
            # Overlay names from the tile's position, not from annotation file names.
            p = out / "overlays" / f"tile{i:03d}.png"
            atomic_write(p, lambda q, a=t.overlay: Image.fromarray(a).save(q, format="PNG"))
            outputs[f"overlay:{t.name}"] = str(p)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=TILE_FIELDS, lineterminator="\n")
    writer.writeheader()
    for t in v.tiles:
        writer.writerow(t.row())
    outputs["per_tile_csv"] = str(atomic_write(out / "per_tile.csv", lambda q: q.write_text(buf.getvalue())))
    outputs["summary_json"] = str(out / "summary.json")
    v = dataclasses.replace(v, outputs=outputs)
    atomic_write(out / "summary.json", lambda q: q.write_text(json.dumps(v.to_dict(), indent=2) + "\n"))
    return v


def format_table(v: NucleiValidation) -> str:
    """A plain-text table of the tiles and the pooled rows, for the terminal."""
    head = f"{'tile':<28} {'split':<8} {'status':<9} {'true':>5} {'pred':>5} {'P':>6} {'R':>6} {'F1':>6} " \
           f"{'AJI':>6} {'PQ':>6} {'Dice':>6}"
    lines = [head]
    for t in v.tiles:
        r = t.row()
        lines.append(f"{r['name'][:28]:<28} {r['split']:<8} {r['status']:<9} {r['true_count']:>5} "
                     f"{r['pred_count']:>5} {r['precision']:>6.3f} {r['recall']:>6.3f} {r['f1']:>6.3f} "
                     f"{r['aji']:>6.3f} {r['pq']:>6.3f} {r['dice']:>6.3f}")
    for label, p in (("pooled", v.pooled), ("train", v.train), ("held_out", v.held_out)):
        if p.get("tiles"):
            lines.append(f"{label:<28} {'':<8} {'':<9} {p['true_count']:>5} {p['pred_count']:>5} "
                         f"{p['precision']:>6.3f} {p['recall']:>6.3f} {p['f1']:>6.3f} {p['aji']:>6.3f} "
                         f"{p['pq']:>6.3f} {p['dice']:>6.3f}")
    return "\n".join(lines) + "\n"


def cli_main(args: argparse.Namespace) -> int:
    """``zeroclick validate nuclei``: 0 when every tile was analysed, 3 when a tile had no tissue or failed."""
    v = validate_nuclei(args.data, out_dir=args.out, layout=getattr(args, "layout", None),
                        engine=getattr(args, "engine", "classical"),
                        target_mpp=getattr(args, "target_mpp", 0.5), radius_um=getattr(args, "radius_um", RADIUS_UM))
    if args.json:
        sys.stdout.write(json.dumps(v.to_dict(), indent=2) + "\n")
    else:
        sys.stdout.write(format_table(v))
        where = f"; outputs in {args.out}" if args.out else ""
        sys.stdout.write(f"worst: {', '.join(w['name'] for w in v.worst_tiles)}{where}\n")
    bad = [t.name for t in v.tiles if t.status not in ("ok", "partial")]
    if bad:
        sys.stderr.write(f"zeroclick: {len(bad)} tile(s) not analysed: {', '.join(bad)}\n")
        return 3
    return 0
