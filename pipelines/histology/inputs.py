"""Is this a brightfield H&E slide? Checks on the thumbnail before any nucleus is measured.

The nuclei engine reads haematoxylin from transmitted light. Three kinds of slide open fine but would
give numbers without meaning, so they are refused with a named QC code (``result.qc["code"]``):

``not_brightfield_fluorescence``
    A dark background: half the thumbnail darker than ``max_dark_median`` (its brightest channel).
    Brightfield glass and tissue are bright; a fluorescence scan (e.g. DAPI) is black where nothing glows.
``not_he_grayscale``
    No colour: the channels differ by less than ``min_chroma`` grey levels on average and hardly any
    pixel is saturated, yet something is there (``min_content_fraction`` of the pixels darker than
    glass; blank glass is "no tissue", not greyscale). Colour deconvolution has nothing to separate.
``not_he_ihc``
    Haematoxylin and DAB without eosin (an immunohistochemistry slide): in Ruifrok & Johnston's
    H-E-DAB deconvolution of the stained pixels, eosin is below ``max_ihc_eosin_share`` of the total
    and DAB above ``min_ihc_dab_share``.

Measured on the thumbnails here: brightfield H&E (CMU-1 SVS, 7 MoNuSeg and 15 CPM-15 tiles) has a
median brightness of 0.53-0.95 and an eosin share of 0.14-0.40; the Hamamatsu DAPI NDPI 0.055; the
scikit-image IHC sample (``skimage.data.immunohistochemistry``) an eosin share of 0.00.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from skimage.color import rgb2hed

from zeroclick.imaging.slide.tissue import saturation


@dataclass(frozen=True)
class BrightfieldParams:
    max_dark_median: float = 0.25  # median of the brightest channel (0-1) below this: fluorescence
    min_chroma: float = 3.0  # mean |R - G| + |G - B| in grey levels below this ...
    max_saturated_fraction: float = 0.01  # ... and at most this fraction of pixels with saturation > 0.1: grey
    min_content_fraction: float = 0.01  # ... when at least this fraction is darker than 0.8 (not blank glass)
    max_ihc_eosin_share: float = 0.04
    min_ihc_dab_share: float = 0.4


@dataclass(frozen=True)
class BrightfieldCheck:
    """The verdict (``code`` None when the slide looks like brightfield H&E) and what it rests on."""

    code: str | None
    message: str
    measures: dict[str, float]

    def to_dict(self) -> dict:
        return {"code": self.code, "message": self.message, **self.measures}


def check_brightfield_he(thumb: np.ndarray, *, params: BrightfieldParams | None = None) -> BrightfieldCheck:
    """Fluorescence, greyscale or IHC-only slides, from an RGB uint8 thumbnail (see the module)."""
    p = params or BrightfieldParams()
    f = thumb.astype(np.float32) / 255.0
    dark_median = float(np.median(f.max(axis=2))) if f.size else 1.0
    chroma = float(np.abs(f[..., 0] - f[..., 1]).mean() + np.abs(f[..., 1] - f[..., 2]).mean()) * 255 if f.size else 0.0
    sat = saturation(thumb)
    saturated = float((sat > 0.1).mean()) if sat.size else 0.0
    content = float((f.mean(axis=2) < 0.8).mean()) if f.size else 0.0
    measures = {"median_brightness": round(dark_median, 4), "chroma_grey_levels": round(chroma, 3),
                "saturated_fraction": round(saturated, 4), "content_fraction": round(content, 4)}
    if dark_median < p.max_dark_median:
        return BrightfieldCheck(
            "not_brightfield_fluorescence",
            f"the slide is dark where brightfield glass is bright (median brightness {dark_median:.2f}): it looks "
            "like a fluorescence scan, not brightfield H&E; nuclei were not measured", measures)
    if chroma < p.min_chroma and saturated <= p.max_saturated_fraction and content >= p.min_content_fraction:
        return BrightfieldCheck(
            "not_he_grayscale",
            f"the slide has no colour (channels differ by {chroma:.1f} grey levels on average): a greyscale image "
            "cannot be separated into haematoxylin and eosin; nuclei were not measured", measures)
    stained = (sat > 0.06) & (f.mean(axis=2) < 0.92)
    if stained.sum() >= 100:
        hed = np.clip(rgb2hed(thumb[stained][None])[0], 0, None).mean(axis=0)
        total = float(hed.sum()) or 1.0
        eosin, dab = float(hed[1]) / total, float(hed[2]) / total
        measures.update(eosin_share=round(eosin, 4), dab_share=round(dab, 4))
        if eosin < p.max_ihc_eosin_share and dab > p.min_ihc_dab_share:
            return BrightfieldCheck(
                "not_he_ihc",
                f"the stain has no eosin ({100 * eosin:.0f}% of the optical density) and much DAB ({100 * dab:.0f}%): "
                "it looks like immunohistochemistry, not H&E; nuclei were not measured", measures)
    return BrightfieldCheck(None, "brightfield H&E", measures)
