"""Deep-learning paths: MONAI HoVerNet nuclei, a WSInfer-style patch classifier, attention-MIL aggregation.

No real H&E weights are reachable offline, so these paths are tested with random or tiny weights for
shapes, stitching and determinism only; no accuracy is claimed for them.

- :class:`HoVerNetEngine` loads a user-supplied MONAI bundle folder (``models/model.pt``) or state-dict
  file into ``monai.networks.nets.HoVerNet``, runs it over each pipeline tile with a sliding window
  whose output crops are stitched edge to edge, and post-processes with MONAI's HoVerNet transforms.
- :class:`PatchClassifierConfig` follows WSInfer's model config (``spacing_um_px``,
  ``patch_size_pixels``, ``class_names``, normalisation); :func:`classify_patches` runs any torch model
  over the tissue tiles at that spacing.
- :class:`AttentionMIL` is gated attention-based multiple-instance pooling (Ilse et al., ICML 2018)
  over per-tile embeddings; :func:`aggregate_slide` returns slide-level scores and tile attention.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from zeroclick.imaging.engine import Precision, batches, default_precision
from zeroclick.imaging.errors import InvalidInputError, WeightsError
from zeroclick.imaging.slide.tiles import Tile, TileGrid
from zeroclick.pipelines.histology.nuclei import NUCLEUS_CLASSES, TileNuclei, measure_nuclei, relabel_kept
from zeroclick.pipelines.histology.stains import StainMatrix, haematoxylin_batch

logger = logging.getLogger(__name__)

# HoVerNet type indices of the public CoNSeP-trained MONAI bundle -> our classes.
CONSEP_TYPES_TO_CLASS = {1: "other", 2: "lymphocyte", 3: "other", 4: "spindle"}
HOVERNET_FAST_OUT_PX = 164


# --------------------------------------------------------------------------------------------- weights


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_state_dict(weights: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """A state dict from a MONAI bundle folder (``models/model.pt``) or a ``.pt``/``.pth`` file.

    Returns the tensors (``module.`` prefixes stripped) and provenance (path, sha256, bundle metadata).
    """
    p = Path(weights)
    info: dict[str, Any] = {}
    if p.is_dir():
        meta = p / "configs" / "metadata.json"
        if meta.exists():
            m = json.loads(meta.read_text())
            info["bundle"] = {k: m.get(k) for k in ("name", "version", "license") if k in m}
        p = p / "models" / "model.pt"
    if not p.is_file():
        raise WeightsError(
            f"HoVerNet weights not found at {p}; pass a MONAI bundle folder (with models/model.pt) or a "
            "state-dict file, e.g. the pathology_nuclei_segmentation_classification bundle"
        )
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise WeightsError(f"could not load {p.name} as a torch state dict: {exc}") from exc
    for key in ("state_dict", "model", "network"):
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(f"{p.name} does not hold a state dict of tensors")
    state = {k.removeprefix("module."): v for k, v in obj.items()}
    info.update(path=str(p), sha256=_sha256(p))
    return state, info


def hovernet_from_state_dict(state: dict[str, torch.Tensor]) -> nn.Module:
    """Build ``monai.networks.nets.HoVerNet`` (FAST mode) matching the state dict's heads, and load it."""
    from monai.networks.nets import HoVerNet

    type_heads = [k for k in state if k.startswith("type_prediction") and k.endswith("conv.weight")]
    out_classes = int(state[sorted(type_heads)[-1]].shape[0]) if type_heads else 0
    model = HoVerNet(mode="fast", in_channels=3, out_classes=out_classes)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise WeightsError(f"the state dict does not fit MONAI HoVerNet (FAST, {out_classes} classes): {exc}") from exc
    return model.eval()


# --------------------------------------------------------------------------------------------- stitching


def sliding_window_stitch(
    model: Callable[[torch.Tensor], dict[str, torch.Tensor]],
    image: torch.Tensor,
    *,
    patch_px: int,
    out_px: int,
    sw_batch_size: int = 4,
) -> dict[str, torch.Tensor]:
    """Run a "valid"-output network (``patch_px`` in -> centre ``out_px`` out) over a whole image.

    ``image`` is (C, H, W); it is reflect-padded by the margin ``(patch_px - out_px) / 2`` so that
    output crops tile the image exactly, edge to edge. Returns each head as (C_k, H, W).
    """
    if (patch_px - out_px) % 2:
        raise InvalidInputError("patch and output sizes must differ by an even number of pixels")
    m = (patch_px - out_px) // 2
    _, h, w = image.shape
    ys = list(range(0, max(1, h - out_px + 1), out_px))
    xs = list(range(0, max(1, w - out_px + 1), out_px))
    if ys[-1] + out_px < h:
        ys.append(h - out_px)
    if xs[-1] + out_px < w:
        xs.append(w - out_px)
    pad_b, pad_r = max(0, out_px - h), max(0, out_px - w)
    padded = torch.nn.functional.pad(image[None], (m, m + pad_r, m, m + pad_b), mode="reflect")[0]
    origins = [(y, x) for y in ys for x in xs]
    out: dict[str, torch.Tensor] = {}
    for sl in batches(len(origins), sw_batch_size):
        batch = torch.stack([padded[:, y : y + patch_px, x : x + patch_px] for y, x in origins[sl]])
        pred = model(batch)
        for name, t in pred.items():
            if t.shape[-1] != out_px:
                raise InvalidInputError(f"head {name} gave {t.shape[-1]} px, expected {out_px}")
            if name not in out:
                out[name] = torch.zeros((t.shape[1], h + pad_b, w + pad_r), dtype=t.dtype, device=t.device)
            for k, (y, x) in enumerate(origins[sl]):
                out[name][:, y : y + out_px, x : x + out_px] = t[k]
    return {k: v[:, :h, :w] for k, v in out.items()}


# --------------------------------------------------------------------------------------------- HoVerNet


@dataclass
class HoVerNetEngine:
    """Nuclei with MONAI HoVerNet; same interface as :class:`zeroclick.pipelines.histology.nuclei.ClassicalEngine`."""

    model: nn.Module
    mpp: float
    stains: StainMatrix | None = None
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    precision: Precision | None = None
    patch_px: int = 256
    out_px: int | None = None  # network output size for patch_px input; None = probe once
    sw_batch_size: int = 4
    types_to_class: dict[int, str] = field(default_factory=lambda: dict(CONSEP_TYPES_TO_CLASS))
    weights_info: dict[str, Any] = field(default_factory=dict)
    name: str = "hovernet"
    params: Any = None

    def __post_init__(self) -> None:
        self.model = self.model.to(self.device).eval()
        self.precision = self.precision or default_precision(self.device)
        if self.out_px is None:
            with torch.no_grad():
                probe = self.model(torch.zeros(1, 3, self.patch_px, self.patch_px, device=self.device))
            self.out_px = int(next(iter(probe.values())).shape[-1])

    @classmethod
    def from_weights(cls, weights: str | os.PathLike | None, *, mpp: float, device: torch.device,
                     stains: StainMatrix | None = None) -> HoVerNetEngine:
        if weights is None:
            raise WeightsError(
                "engine='hovernet' needs weights: pass weights= (--weights) with a MONAI bundle folder or a "
                "HoVerNet state dict; or use engine='classical', which needs none"
            )
        state, info = load_state_dict(weights)
        # MONAI HoVerNet FAST without decoder padding: 256 px in -> 164 px out (no probe pass needed).
        return cls(hovernet_from_state_dict(state), mpp=mpp, stains=stains, device=device, weights_info=info,
                   out_px=HOVERNET_FAST_OUT_PX)

    def predict_tile(self, rgb: np.ndarray) -> dict[str, torch.Tensor]:
        """Stitched HoVerNet heads for one (H, W, 3) uint8 tile, as (C, H, W) float32 CPU tensors."""
        x = torch.from_numpy(np.ascontiguousarray(rgb)).to(self.device).permute(2, 0, 1).float() / 255.0
        assert self.precision is not None
        with torch.no_grad(), self.precision.autocast(self.device):
            maps = sliding_window_stitch(self.model, x, patch_px=self.patch_px, out_px=int(self.out_px or 0),
                                         sw_batch_size=self.sw_batch_size)
        return {k: v.float().cpu() for k, v in maps.items()}

    def segment_batch(self, tiles: list[Tile], rgb_batch: np.ndarray, grid: TileGrid,
                      *, keep_labels: bool = False) -> list[TileNuclei]:
        from monai.apps.pathology.transforms.post.array import (
            HoVerNetInstanceMapPostProcessing,
            HoVerNetNuclearTypePostProcessing,
        )

        inst_post = HoVerNetInstanceMapPostProcessing()
        type_post = HoVerNetNuclearTypePostProcessing(return_type_map=False)
        hae = (haematoxylin_batch(torch.from_numpy(np.ascontiguousarray(rgb_batch)), self.stains).numpy()
               if self.stains is not None else np.zeros(rgb_batch.shape[:3], np.float32))
        out = []
        for i, tile in enumerate(tiles):
            maps = self.predict_tile(rgb_batch[i])
            hv = maps["horizontal_vertical"]
            if float(hv.amax() - hv.amin()) == 0.0:  # flat HV map (e.g. blank tile): MONAI rejects it
                info: dict = {}
                inst = np.zeros(rgb_batch.shape[1:3], np.int32)
            else:
                info, inst_t = inst_post(maps["nucleus_prediction"], hv)
                inst = np.asarray(inst_t)[0].astype(np.int32)
            types = {}
            if "type_prediction" in maps and info:
                info, _ = type_post(maps["type_prediction"], info, inst[None])
                types = {k: int(v.get("type", 0)) for k, v in info.items()}
            ids = np.unique(inst)
            ids = ids[ids > 0]
            lut = np.zeros(int(inst.max()) + 1, np.int32)
            lut[ids] = np.arange(1, len(ids) + 1)
            labels = lut[inst]
            table = measure_nuclei(labels, len(ids), hae[i], self.mpp)
            cls = [NUCLEUS_CLASSES.index(self.types_to_class.get(types.get(int(k), 0), "other")) for k in ids]
            table[:, 9] = np.asarray(cls, float) if len(cls) else table[:, 9]
            ox, oy = grid.level_origin(tile)
            table[:, 0] = ox + (table[:, 0] + 0.5) * grid.scale0
            table[:, 1] = oy + (table[:, 1] + 0.5) * grid.scale0
            keep = ((table[:, 0] >= tile.core_x0) & (table[:, 0] < tile.core_x1)
                    & (table[:, 1] >= tile.core_y0) & (table[:, 1] < tile.core_y1))
            table = table[keep]
            table[:, 10] = tile.index
            out.append(TileNuclei(tile, table, float(table[:, 2].sum()),
                                  relabel_kept(labels, np.flatnonzero(keep) + 1) if keep_labels else None))
        return out


# --------------------------------------------------------------------------------------------- patch classifier


@dataclass(frozen=True)
class PatchClassifierConfig:
    """WSInfer-style model config (units in the names)."""

    spacing_um_px: float
    patch_size_pixels: int
    class_names: tuple[str, ...]
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    architecture: str = ""

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PatchClassifierConfig:
        """Validate a WSInfer ``config.json``-like dict (``transform`` list or ``mean``/``std`` keys)."""
        missing = [k for k in ("spacing_um_px", "patch_size_pixels", "class_names") if k not in d]
        if missing:
            raise InvalidInputError(f"patch classifier config lacks {', '.join(missing)}")
        spacing, size, names = d["spacing_um_px"], d["patch_size_pixels"], d["class_names"]
        if not isinstance(spacing, (int, float)) or not 0.05 <= spacing <= 50:
            raise InvalidInputError(f"spacing_um_px={spacing!r} must be a number of µm/px in 0.05-50")
        if not isinstance(size, int) or not 8 <= size <= 4096:
            raise InvalidInputError(f"patch_size_pixels={size!r} must be an integer in 8-4096")
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            raise InvalidInputError("class_names must be a non-empty list of strings")
        mean, std = d.get("mean"), d.get("std")
        for t in d.get("transform", []):  # WSInfer: [{"name": "Normalize", "arguments": {"mean":..,"std":..}}]
            if isinstance(t, dict) and t.get("name", "").lower() == "normalize":
                mean, std = t["arguments"]["mean"], t["arguments"]["std"]
        kw: dict[str, Any] = {}
        if mean is not None and std is not None:
            if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
                raise InvalidInputError("normalisation needs 3 means and 3 positive standard deviations")
            kw.update(mean=tuple(float(v) for v in mean), std=tuple(float(v) for v in std))
        return cls(float(spacing), int(size), tuple(names), architecture=str(d.get("architecture", "")), **kw)


@dataclass(frozen=True)
class PatchPredictions:
    """Per-tile class probabilities (rows follow ``tiles``) and optional embeddings."""

    tiles: tuple[Tile, ...]
    probabilities: np.ndarray  # (n_tiles, n_classes)
    class_names: tuple[str, ...]
    embeddings: np.ndarray | None = None

    def mean_probability(self) -> dict[str, float]:
        if len(self.probabilities) == 0:
            return {c: float("nan") for c in self.class_names}
        return {c: float(v) for c, v in zip(self.class_names, self.probabilities.mean(axis=0))}


def classify_patches(
    slide,
    model: nn.Module,
    config: PatchClassifierConfig,
    *,
    tissue=None,
    workers: int = 0,
    batch_size: int = 16,
    device: str | torch.device = "auto",
    embed: Callable[[nn.Module, torch.Tensor], torch.Tensor] | None = None,
) -> PatchPredictions:
    """Run a patch classifier over the slide's tissue at the config's spacing (softmax probabilities)."""
    from zeroclick.imaging.engine import select_device
    from zeroclick.imaging.slide import TileReader, detect_tissue, tile_grid

    dev = select_device(device)
    model = model.to(dev).eval()
    tissue = tissue if tissue is not None else detect_tissue(slide)
    meta = slide.meta
    mpp0 = 0.5 * (meta.mpp_x + meta.mpp_y)
    level = slide.best_level_for_mpp(config.spacing_um_px)
    grid = tile_grid(meta.dimensions, meta.level_downsamples, mpp0, target_mpp=config.spacing_um_px, level=level,
                     tile_px=config.patch_size_pixels, overlap_px=0, tissue=tissue, min_tissue_fraction=0.25)
    mean = torch.tensor(config.mean, device=dev).view(1, 3, 1, 1)
    std = torch.tensor(config.std, device=dev).view(1, 3, 1, 1)
    reads = sorted((r for r in TileReader(slide, grid, workers=workers) if r.rgb is not None),
                   key=lambda r: r.tile.index)
    probs, embs = [], []
    for sl in batches(len(reads), batch_size):
        x = torch.from_numpy(np.stack([r.rgb for r in reads[sl] if r.rgb is not None])).to(dev).permute(0, 3, 1, 2).float() / 255.0
        x = (x - mean) / std
        with torch.no_grad():
            probs.append(torch.softmax(model(x), dim=1).cpu().numpy())
            if embed is not None:
                embs.append(embed(model, x).cpu().numpy())
    n_cls = len(config.class_names)
    p = np.concatenate(probs) if probs else np.zeros((0, n_cls))
    if p.shape[1] != n_cls:
        raise WeightsError(f"the model gives {p.shape[1]} outputs but the config names {n_cls} classes")
    return PatchPredictions(tuple(r.tile for r in reads), p, config.class_names,
                            np.concatenate(embs) if embs else None)


# --------------------------------------------------------------------------------------------- attention MIL


class AttentionMIL(nn.Module):
    """Gated attention MIL pooling (Ilse, Tomczak & Welling 2018) over a bag of tile embeddings.

    ``forward(embeddings (N, D)) -> (logits (n_classes,), attention (N,))``; attention sums to 1 and the
    slide score does not depend on the order of the tiles.
    """

    def __init__(self, in_features: int, *, hidden: int = 128, n_classes: int = 1, dropout: float = 0.0) -> None:
        super().__init__()
        self.attention_v = nn.Sequential(nn.Linear(in_features, hidden), nn.Tanh())
        self.attention_u = nn.Sequential(nn.Linear(in_features, hidden), nn.Sigmoid())
        self.attention_w = nn.Linear(hidden, 1)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(in_features, n_classes)

    def forward(self, embeddings: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if embeddings.ndim != 2 or embeddings.shape[0] == 0:
            raise InvalidInputError("attention MIL needs a non-empty (n_tiles, n_features) bag")
        a = self.attention_w(self.attention_v(embeddings) * self.attention_u(embeddings))[:, 0]
        a = torch.softmax(a, dim=0)
        pooled = (a[:, None] * self.dropout(embeddings)).sum(dim=0)
        return self.classifier(pooled), a


@dataclass(frozen=True)
class SlideScore:
    """Slide-level scores from attention MIL, and each tile's attention weight."""

    scores: dict[str, float]
    attention: np.ndarray


def aggregate_slide(model: AttentionMIL, embeddings: np.ndarray | torch.Tensor,
                    class_names: Sequence[str]) -> SlideScore:
    """Slide-level scores (sigmoid for one class, softmax for several) from per-tile embeddings."""
    x = torch.as_tensor(np.asarray(embeddings), dtype=torch.float32)
    model = model.eval()
    with torch.no_grad():
        logits, att = model(x)
    if len(class_names) != logits.shape[0]:
        raise InvalidInputError(f"{len(class_names)} class names for {logits.shape[0]} model outputs")
    p = torch.sigmoid(logits) if logits.shape[0] == 1 else torch.softmax(logits, dim=0)
    return SlideScore({c: float(v) for c, v in zip(class_names, p)}, att.numpy())
