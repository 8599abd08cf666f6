"""Tissue detection on a slide thumbnail: saturation Otsu + morphology with parameters in microns.

Glass is bright and grey (low saturation); stained tissue is coloured. Otsu's threshold on the HSV
saturation of a thumbnail separates them; closing, hole filling and small-object removal then use
radii and areas in µm / µm² so the result does not depend on the thumbnail's scale.

A small field can be tissue from edge to edge (a tile cut from a slide, a biopsy core photographed
at 40x): there is no glass for Otsu to find, and Otsu then splits the tissue itself. So Otsu is used
only when the thumbnail shows some glass (bright, grey pixels, at least ``min_glass_fraction``);
otherwise the fixed floor ``min_saturation`` decides. The smallest kept object is also capped at a
fraction of the field (a 200 µm field cannot hold a 140 µm speck rule), and so is the largest hole
filled (in a small field, the glass around a speck must not count as its hole). How tissue was found is kept
in :class:`TissueMask` (``method``, ``threshold``, ``glass_fraction``) and reported in the results.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from skimage import filters, measure, morphology

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TissueParams:
    """Tissue detection parameters, in physical units."""

    thumbnail_mpp: float = 8.0  # µm/px of the thumbnail the mask is computed on
    min_saturation: float = 0.06  # below this no pixel counts as stained, whatever Otsu says
    close_radius_um: float = 24.0
    min_object_area_um2: float = 20_000.0  # drop specks smaller than ~140 x 140 µm
    max_hole_area_um2: float = 50_000.0  # fill holes smaller than this
    max_grey: float = 0.92  # brighter than this (0-1) is glass even if tinted
    glass_min_grey: float = 0.8  # glass: at least this bright (0-1) ...
    glass_max_saturation: float = 0.08  # ... and at most this saturated
    min_glass_fraction: float = 0.02  # below this much glass, Otsu is not used (a field full of tissue)
    max_object_field_fraction: float = 0.01  # smallest kept object at most this fraction of the field
    max_hole_field_fraction: float = 0.1  # largest filled hole at most this fraction of the field


@dataclass(frozen=True)
class TissueMask:
    """A boolean tissue mask over the slide at ``downsample`` level-0 pixels per mask pixel."""

    mask: np.ndarray
    downsample: float
    mpp: float  # µm per mask pixel
    otsu_saturation: float
    params: TissueParams
    threshold: float = float("nan")  # saturation threshold used
    method: str = "otsu"  # "otsu" or "no_glass" (fixed floor: the field shows no glass)
    glass_fraction: float = float("nan")  # of the thumbnail

    def describe(self) -> dict:
        """How tissue was found, for results: thumbnail scale, rule, threshold, fractions."""
        return {"thumbnail_downsample": round(self.downsample, 4), "thumbnail_mpp": round(self.mpp, 4),
                "thumbnail_px": [int(self.mask.shape[1]), int(self.mask.shape[0])], "method": self.method,
                "saturation_threshold": round(self.threshold, 4), "otsu_saturation": round(self.otsu_saturation, 4),
                "glass_fraction": round(self.glass_fraction, 4), "tissue_fraction": round(self.fraction, 4)}

    @property
    def area_mm2(self) -> float:
        return float(self.mask.sum()) * (self.mpp / 1000.0) ** 2

    @property
    def fraction(self) -> float:
        return float(self.mask.mean()) if self.mask.size else 0.0

    def fraction_in(self, x0: float, y0: float, x1: float, y1: float) -> float:
        """Fraction of tissue in the level-0 box [x0, x1) x [y0, y1) (0 outside the slide)."""
        h, w = self.mask.shape
        ds = self.downsample
        i0, i1 = int(np.floor(y0 / ds)), int(np.ceil(y1 / ds))
        j0, j1 = int(np.floor(x0 / ds)), int(np.ceil(x1 / ds))
        n = max(1, (i1 - i0) * (j1 - j0))
        sub = self.mask[max(0, i0) : max(0, min(h, i1)), max(0, j0) : max(0, min(w, j1))]
        return float(sub.sum()) / n

    def polygons(self, *, tolerance_px: float = 1.0) -> list[list[list[tuple[float, float]]]]:
        """Tissue outlines as GeoJSON-style polygons in level-0 pixels: [exterior, *holes] per region."""
        out: list[list[list[tuple[float, float]]]] = []
        labels = measure.label(self.mask)
        for region in measure.regionprops(labels):
            r0, c0, r1, c1 = region.bbox
            sub = np.pad(region.image, 1)
            rings = []
            for contour in measure.find_contours(sub.astype(np.uint8), 0.5):
                contour = measure.approximate_polygon(contour, tolerance_px)
                if len(contour) < 4:
                    continue
                ring = [((c + c0 - 1 + 0.5) * self.downsample, (r + r0 - 1 + 0.5) * self.downsample)
                        for r, c in contour]
                if ring[0] != ring[-1]:
                    ring.append(ring[0])
                rings.append(ring)
            if not rings:
                continue
            rings.sort(key=lambda ring: -_ring_area(ring))  # exterior = largest ring
            out.append(rings)
        return out


def _ring_area(ring: list[tuple[float, float]]) -> float:
    x = np.array([p[0] for p in ring])
    y = np.array([p[1] for p in ring])
    return float(abs(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))) / 2)


def saturation(rgb: np.ndarray) -> np.ndarray:
    """HSV saturation in [0, 1] of an RGB uint8 image."""
    f = rgb.astype(np.float32)
    mx = f.max(axis=2)
    mn = f.min(axis=2)
    return np.where(mx > 0, (mx - mn) / np.maximum(mx, 1e-6), 0.0).astype(np.float32)


def detect_tissue_rgb(
    thumb: np.ndarray, *, downsample: float, mpp0: float, params: TissueParams | None = None
) -> TissueMask:
    """Tissue mask of an RGB thumbnail taken at ``downsample`` from a level 0 of ``mpp0`` µm/px."""
    params = params or TissueParams()
    mpp = mpp0 * downsample
    sat = saturation(thumb)
    grey = thumb.astype(np.float32).mean(axis=2) / 255.0
    try:
        otsu = float(filters.threshold_otsu(sat)) if sat.size and sat.max() > sat.min() else 1.0
    except ValueError:
        otsu = 1.0
    glass = float(((grey >= params.glass_min_grey) & (sat <= params.glass_max_saturation)).mean()) if sat.size else 0.0
    if glass >= params.min_glass_fraction:
        method, thr = "otsu", max(otsu, params.min_saturation)
    else:  # no glass to separate from: Otsu would cut the tissue in two
        method, thr = "no_glass", params.min_saturation
    mask = (sat > thr) & (grey < params.max_grey)
    radius = max(1, int(round(params.close_radius_um / mpp)))
    # Closing by distance transforms (O(n) in the radius) on a mask padded with background: unpadded,
    # the erosion would not shrink what the dilation spread over the border (a speck filled a small field).
    mask = morphology.isotropic_closing(np.pad(mask, radius), radius)[radius:-radius, radius:-radius]
    max_hole_px = min(params.max_hole_area_um2 / mpp**2, params.max_hole_field_fraction * mask.size)
    mask = morphology.remove_small_holes(mask, max_size=max(1, int(max_hole_px)))
    min_object_px = min(params.min_object_area_um2 / mpp**2, params.max_object_field_fraction * mask.size)
    mask = morphology.remove_small_objects(mask, max_size=max(1, int(min_object_px)))
    logger.debug("tissue: %s, otsu %.3f, threshold %.3f, glass %.1f%%, %.1f%% of the thumbnail", method, otsu, thr,
                 100 * glass, 100 * mask.mean())
    return TissueMask(mask=mask, downsample=float(downsample), mpp=mpp, otsu_saturation=otsu, params=params,
                      threshold=thr, method=method, glass_fraction=glass)


def detect_tissue(slide, *, params: TissueParams | None = None) -> TissueMask:
    """Tissue mask of an open :class:`zeroclick.imaging.slide.Slide` from its thumbnail."""
    params = params or TissueParams()
    thumb, ds = slide.thumbnail(target_mpp=params.thumbnail_mpp)
    mpp0 = 0.5 * (slide.meta.mpp_x + slide.meta.mpp_y)
    return detect_tissue_rgb(thumb, downsample=ds, mpp0=mpp0, params=params)
