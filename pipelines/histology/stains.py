"""Colour deconvolution: Ruifrok & Johnston H&E vectors, Macenko's per-slide estimate, batched in torch.

Optical density (OD) is ``-log10((I + 1) / 256)`` per channel; a stain matrix ``M`` (rows = stain OD
vectors) gives concentrations ``C = OD @ pinv(M)``. Macenko et al. (ISBI 2009): take the OD of
stained pixels (norm > beta), project it on the plane of its two main singular vectors, and take the
directions at the alpha and (100 - alpha) percentiles of the angle as the two stains.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
from skimage.color import rgb_from_hed

logger = logging.getLogger(__name__)

# Ruifrok & Johnston's H, E (and DAB as third) vectors as scikit-image defines them.
RUIFROK_H = (rgb_from_hed[0] / np.linalg.norm(rgb_from_hed[0])).astype(np.float64)
RUIFROK_E = (rgb_from_hed[1] / np.linalg.norm(rgb_from_hed[1])).astype(np.float64)


@dataclass(frozen=True)
class StainMatrix:
    """Haematoxylin and eosin OD unit vectors (RGB order) and how they were obtained."""

    haematoxylin: tuple[float, float, float]
    eosin: tuple[float, float, float]
    method: str  # "macenko" or "ruifrok"
    max_h_concentration: float  # 99th percentile of H in the estimate sample (for normalisation)

    def matrix(self) -> np.ndarray:
        """3 x 3 stain matrix (H, E, residual = H x E) with unit rows."""
        h, e = np.array(self.haematoxylin), np.array(self.eosin)
        r = np.cross(h, e)
        r /= np.linalg.norm(r) + 1e-12
        return np.stack([h, e, r])

    def to_dict(self) -> dict:
        return {
            "method": self.method,
            "haematoxylin_od": [round(v, 4) for v in self.haematoxylin],
            "eosin_od": [round(v, 4) for v in self.eosin],
            "max_h_concentration": round(self.max_h_concentration, 4),
        }


def rgb_to_od(rgb: np.ndarray) -> np.ndarray:
    """OD (float32, same shape) of uint8 RGB values."""
    return -np.log10((rgb.astype(np.float32) + 1.0) / 256.0)


def ruifrok() -> StainMatrix:
    return StainMatrix(tuple(RUIFROK_H), tuple(RUIFROK_E), "ruifrok", 1.0)  # type: ignore[arg-type]


def macenko(rgb_pixels: np.ndarray, *, beta: float = 0.15, alpha: float = 1.0, min_pixels: int = 500) -> StainMatrix:
    """Estimate H and E vectors from tissue pixels (N x 3 uint8); falls back to Ruifrok when it cannot.

    The fallback is logged and shows as ``method == "ruifrok"``.
    """
    od = rgb_to_od(rgb_pixels.reshape(-1, 3)).astype(np.float64)
    od = od[np.linalg.norm(od, axis=1) > beta]
    if len(od) < min_pixels:
        logger.info("Macenko: %d stained pixels (< %d); using Ruifrok's vectors", len(od), min_pixels)
        return _with_scale(ruifrok(), rgb_pixels)
    try:
        _, eigvecs = np.linalg.eigh(np.cov(od.T))
    except np.linalg.LinAlgError:
        return _with_scale(ruifrok(), rgb_pixels)
    plane = eigvecs[:, [1, 2]]  # two largest eigenvalues
    plane *= np.sign(plane.sum(axis=0, keepdims=True) + 1e-12)  # point into positive OD
    proj = od @ plane
    phi = np.arctan2(proj[:, 1], proj[:, 0])
    lo, hi = np.percentile(phi, [alpha, 100 - alpha])
    v1 = plane @ np.array([np.cos(lo), np.sin(lo)])
    v2 = plane @ np.array([np.cos(hi), np.sin(hi)])
    # Haematoxylin absorbs red more than eosin does: the vector with the larger R component is H.
    h, e = (v1, v2) if v1[0] > v2[0] else (v2, v1)
    h, e = np.abs(h) / np.linalg.norm(h), np.abs(e) / np.linalg.norm(e)
    # Sanity: the estimate must be near H&E (within ~35 degrees of Ruifrok); otherwise do not trust it.
    if float(h @ RUIFROK_H) < 0.82 or float(e @ RUIFROK_E) < 0.82 or float(h @ e) > 0.95:
        logger.info("Macenko estimate far from H&E (cos H %.2f, cos E %.2f); using Ruifrok's vectors",
                    float(h @ RUIFROK_H), float(e @ RUIFROK_E))
        return _with_scale(ruifrok(), rgb_pixels)
    return _with_scale(StainMatrix(tuple(h), tuple(e), "macenko", 1.0), rgb_pixels)  # type: ignore[arg-type]


def _with_scale(stains: StainMatrix, rgb_pixels: np.ndarray) -> StainMatrix:
    conc = rgb_to_od(rgb_pixels.reshape(-1, 3)) @ np.linalg.pinv(stains.matrix()).astype(np.float32)
    p99 = float(np.percentile(conc[:, 0], 99)) if len(conc) else 1.0
    return StainMatrix(stains.haematoxylin, stains.eosin, stains.method, max(p99, 1e-3))


def haematoxylin_luts(stains: StainMatrix) -> np.ndarray:
    """(3, 256) float32 tables: H = sum over channels c of lut[c][I_c] (OD of each grey level x pinv)."""
    inv = np.linalg.pinv(stains.matrix())[:, 0]
    od = -np.log10((np.arange(256) + 1.0) / 256.0)
    return np.stack([od * w for w in inv]).astype(np.float32)


def haematoxylin_batch(rgb: torch.Tensor, stains: StainMatrix) -> torch.Tensor:
    """Haematoxylin concentration (B, H, W) float32 from a (B, H, W, 3) uint8 batch on any device."""
    lut = torch.as_tensor(haematoxylin_luts(stains), device=rgb.device)
    idx = rgb.long()
    return lut[0][idx[..., 0]] + lut[1][idx[..., 1]] + lut[2][idx[..., 2]]
