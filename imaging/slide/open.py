"""Open whole-slide images (SVS, NDPI, MRXS, generic tiled TIFF, DICOM WSI) with physical pixel sizes.

OpenSlide (``openslide-python`` + ``openslide-bin``, no system library) opens every format; TIFF-based
slides additionally get the direct-tile fast path of :mod:`zeroclick.imaging.slide.fastread`, verified against
OpenSlide on a few tiles when the slide is opened.

Example
-------
>>> from zeroclick.imaging.slide import open_slide
>>> with open_slide("CMU-1-Small-Region.svs") as slide:  # doctest: +SKIP
...     level = slide.best_level_for_mpp(0.5)
...     rgb = slide.read_region(0, 0, level, 512, 512)
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from zeroclick.imaging.errors import InvalidInputError, SlideUnreadableError
from zeroclick.imaging.slide.fastread import TiffTileReader

logger = logging.getLogger(__name__)

MIN_THUMBNAIL_PX = 512
_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")


class UnsupportedSlideError(SlideUnreadableError):
    """The file exists but is not a whole-slide format OpenSlide can open."""


class MissingMppError(InvalidInputError):
    """The slide does not say how many microns a pixel covers; pass ``mpp=`` explicitly."""

    code = "mpp_missing"


class ImplausibleMppError(MissingMppError):
    """The µm/px is outside what microscopes give (:data:`MPP_RANGE`); pass ``mpp=`` (``--mpp``)."""

    code = "mpp_implausible"


class DpiDefaultMppError(MissingMppError):
    """The only pixel size is a bare 72/96/300-dpi TIFF resolution tag (a screen or print default, not a
    microscope's) and nothing else says the slide came from a scanner; pass ``mpp=`` (``--mpp``)."""

    code = "mpp_dpi_default"


MPP_RANGE = (0.1, 5.0)  # µm/px a brightfield scan or its pyramid level 0 plausibly has
DPI_DEFAULTS = (72.0, 96.0, 300.0)  # resolution tags image software writes when it knows nothing


@dataclass(frozen=True)
class SlideMeta:
    """What a slide is, in physical units (no patient data)."""

    path: str
    vendor: str
    level_dimensions: tuple[tuple[int, int], ...]
    level_downsamples: tuple[float, ...]
    mpp_x: float
    mpp_y: float
    mpp_source: str  # "slide" (from its metadata) or "user" (mpp= argument)
    objective_power: float | None
    fast_path: bool
    fast_path_max_diff: int | None

    @property
    def dimensions(self) -> tuple[int, int]:
        return self.level_dimensions[0]

    @property
    def level_count(self) -> int:
        return len(self.level_dimensions)

    def level_mpp(self, level: int) -> float:
        """Microns per pixel of ``level`` (mean of x and y)."""
        return 0.5 * (self.mpp_x + self.mpp_y) * self.level_downsamples[level]

    def to_dict(self) -> dict:
        return {
            "vendor": self.vendor,
            "level_dimensions": [list(d) for d in self.level_dimensions],
            "level_downsamples": list(self.level_downsamples),
            "mpp_x": self.mpp_x,
            "mpp_y": self.mpp_y,
            "mpp_source": self.mpp_source,
            "objective_power": self.objective_power,
            "fast_path": self.fast_path,
            "fast_path_max_diff": self.fast_path_max_diff,
        }


class Slide:
    """An open whole-slide image: metadata in µm and RGB reads through the fastest safe path.

    Use :func:`open_slide` to create one. Thread-safe for reads; not picklable (each worker process
    opens its own with :func:`open_slide`).
    """

    def __init__(self, osr, meta: SlideMeta, fast: TiffTileReader | None) -> None:
        self._osr = osr
        self.meta = meta
        self._fast = fast

    # ------------------------------------------------------------------------------------- levels
    def best_level_for_mpp(self, target_mpp: float, *, tolerance: float = 0.05) -> int:
        """The level that decodes the fewest pixels while still at least as fine as ``target_mpp``.

        A level whose µm/px is within ``tolerance`` (relative) of the target counts as fine enough.
        """
        if target_mpp <= 0:
            raise InvalidInputError(f"target µm/px must be positive, got {target_mpp}")
        best = 0
        for level in range(self.meta.level_count):
            if self.meta.level_mpp(level) <= target_mpp * (1 + tolerance):
                best = level if self.meta.level_downsamples[level] >= self.meta.level_downsamples[best] else best
        return best

    # ------------------------------------------------------------------------------------- reads
    def read_region(self, x: int, y: int, level: int, width: int, height: int, *, fast: bool = True) -> np.ndarray:
        """RGB uint8 (height, width, 3). ``x, y`` in level-0 pixels (OpenSlide's convention)."""
        if fast and self._fast is not None:
            ds = self.meta.level_downsamples[level]
            return self._fast.read_region(level, int(round(x / ds)), int(round(y / ds)), width, height)
        return self.read_region_openslide(x, y, level, width, height)

    def read_region_openslide(self, x: int, y: int, level: int, width: int, height: int) -> np.ndarray:
        """The same read through OpenSlide (composited on white)."""
        try:
            rgba = np.asarray(self._osr.read_region((int(x), int(y)), level, (int(width), int(height))))
        except Exception as exc:
            raise SlideUnreadableError(
                f"OpenSlide could not read {width}x{height} at ({x}, {y}) level {level}: {exc}"
            ) from exc
        rgb = rgba[..., :3].astype(np.uint16)
        alpha = rgba[..., 3:4].astype(np.uint16)
        if np.all(alpha == 255):
            return rgba[..., :3].copy()
        return ((rgb * alpha + 255 * (255 - alpha)) // 255).astype(np.uint8)

    def thumbnail(self, *, target_mpp: float = 8.0, max_px: int = 4096,
                  min_px: int = MIN_THUMBNAIL_PX) -> tuple[np.ndarray, float]:
        """An RGB overview at about ``target_mpp`` µm/px (``min_px`` to ``max_px`` on its long side).

        Returns the image and its downsample relative to level 0 (x and y use the same factor).
        """
        w0, h0 = self.meta.dimensions
        mpp0 = 0.5 * (self.meta.mpp_x + self.meta.mpp_y)
        ds = max(1.0, target_mpp / mpp0, max(w0, h0) / max_px)
        ds = min(ds, max(1.0, max(w0, h0) / min_px))  # small slides: keep enough pixels
        size = (max(1, int(round(w0 / ds))), max(1, int(round(h0 / ds))))
        if self._fast is not None:
            # Tile by tile from the finest level no coarser than needed; a corrupt tile stays white
            # (OpenSlide would fail the whole thumbnail and stay in its error state).
            level = max((k for k, d in enumerate(self.meta.level_downsamples) if d <= ds), default=0)
            arr, bad = self._fast.read_level_scaled(level, size)
            if bad:
                logger.warning("thumbnail: %d unreadable tile(s) left white", bad)
            return arr, w0 / arr.shape[1]
        try:
            img = self._osr.get_thumbnail(size).convert("RGB")
        except Exception as exc:
            raise SlideUnreadableError(f"could not build a thumbnail of the slide: {exc}") from exc
        arr = np.asarray(img)
        return arr, w0 / arr.shape[1]

    @property
    def has_fast_path(self) -> bool:
        return self._fast is not None

    @property
    def fast_reader(self) -> TiffTileReader | None:
        return self._fast

    @property
    def openslide(self):
        """The underlying ``openslide.OpenSlide`` (for callers that need OpenSlide itself)."""
        return self._osr

    def close(self) -> None:
        if self._fast is not None:
            self._fast.close()
            self._fast = None
        self._osr.close()

    def __enter__(self) -> Slide:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_slide(
    path: str | os.PathLike,
    *,
    mpp: float | None = None,
    fast: bool = True,
    verify_tiles: int = 3,
    verify_tolerance: int = 2,
) -> Slide:
    """Open a whole-slide image.

    Parameters
    ----------
    path
        SVS, NDPI, MRXS, generic tiled TIFF, DICOM WSI (a file of the series), ... anything OpenSlide opens.
    mpp
        Microns per pixel at level 0. Required when the slide does not record it; when given, it
        overrides the slide's own value (recorded as ``mpp_source="user"``).
    fast
        Use the direct-tile path for TIFF-based slides when it reproduces OpenSlide's pixels.
    verify_tiles, verify_tolerance
        How many tiles to compare with OpenSlide at opening, and the largest difference accepted
        (grey levels); a larger one disables the fast path for this slide (logged).

    Raises
    ------
    SlideUnreadableError
        The file is missing or OpenSlide fails on it.
    UnsupportedSlideError
        The file is not a format OpenSlide supports.
    MissingMppError
        The slide has no microns-per-pixel and ``mpp`` was not given.
    """
    import openslide

    p = Path(path)
    if not p.exists():
        raise SlideUnreadableError(f"slide not found: {p}; check the path")
    if p.is_dir():
        raise UnsupportedSlideError(f"{p} is a folder; give one slide file (for DICOM WSI, any file of the series)")
    try:
        fmt = openslide.OpenSlide.detect_format(str(p))
    except Exception as exc:
        raise SlideUnreadableError(f"cannot read {p.name}: {exc}") from exc
    if fmt is None:
        raise UnsupportedSlideError(
            f"{p.name} is not a whole-slide format OpenSlide recognises (SVS, NDPI, MRXS, tiled TIFF, DICOM WSI, ...)"
            "; convert it to a tiled pyramidal TIFF"
        )
    try:
        osr = openslide.OpenSlide(str(p))
    except Exception as exc:
        raise SlideUnreadableError(f"OpenSlide could not open {p.name} ({fmt}): {exc}") from exc
    props = osr.properties
    try:
        mpp_x, mpp_y, source = _mpp_from(props, mpp, p.name)
    except InvalidInputError:
        osr.close()
        raise
    if mpp_x is None or mpp_y is None:
        osr.close()
        raise MissingMppError(
            f"{p.name} does not record microns per pixel (no openslide.mpp-x/y); "
            "pass mpp= (e.g. mpp=0.25 for a 40x scan, 0.5 for 20x) or --mpp on the command line"
        )
    power = props.get("openslide.objective-power")
    fast_reader, diff = None, None
    if fast and _is_tiff(p):
        fast_reader, diff = _try_fast(p, osr, verify_tiles, verify_tolerance)
    meta = SlideMeta(
        path=str(p),
        vendor=str(props.get("openslide.vendor", fmt)),
        level_dimensions=tuple((int(d[0]), int(d[1])) for d in osr.level_dimensions),
        level_downsamples=tuple(float(d) for d in osr.level_downsamples),
        mpp_x=mpp_x,
        mpp_y=mpp_y,
        mpp_source=source,
        objective_power=float(power) if power else None,
        fast_path=fast_reader is not None,
        fast_path_max_diff=diff,
    )
    logger.info("opened %s slide: %d levels, %.3f µm/px, fast path %s", meta.vendor, meta.level_count,
                meta.mpp_x, meta.fast_path)
    return Slide(osr, meta, fast_reader)


def check_slide_mpp(path: str | os.PathLike, *, mpp: float | None = None) -> tuple[float, float, str] | None:
    """Level-0 µm/px (x, y, source) of a slide from its properties alone, or the error :func:`open_slide`
    would raise (:class:`MissingMppError` and its subclasses): a quick check before heavier work.
    ``None`` when OpenSlide cannot open the file (:func:`open_slide` then explains why)."""
    import openslide

    p = Path(path)
    try:
        osr = openslide.OpenSlide(str(p))
    except Exception:
        return None
    try:
        mpp_x, mpp_y, source = _mpp_from(osr.properties, mpp, p.name)
    finally:
        osr.close()
    if mpp_x is None or mpp_y is None:
        raise MissingMppError(f"{p.name} does not record microns per pixel; pass --mpp (mpp=), e.g. 0.25 for 40x")
    return mpp_x, mpp_y, source


def _mpp_from(props, mpp: float | None, name: str = "the slide") -> tuple[float | None, float | None, str]:
    """Level-0 µm/px (x, y) and where it came from; refuses values no microscope gives."""
    lo, hi = MPP_RANGE
    if mpp is not None:
        if not (math.isfinite(mpp) and mpp > 0):
            raise InvalidInputError(f"mpp={mpp} must be a positive number of microns per pixel")
        if not lo <= mpp <= hi:
            raise ImplausibleMppError(f"mpp={mpp} (--mpp) is outside {lo}-{hi} µm/px, the range of slide "
                                      "scanners; give level 0's µm/px (e.g. 0.25 for 40x, 0.5 for 20x)")
        return float(mpp), float(mpp), "user"
    try:
        mx = float(props["openslide.mpp-x"])
        my = float(props["openslide.mpp-y"])
    except (KeyError, ValueError):
        return None, None, "none"
    if not (mx > 0 and my > 0):
        return None, None, "none"
    if _dpi_default_only(props):
        dpi = float(props.get("tiff.XResolution", "nan"))
        raise DpiDefaultMppError(
            f"{name}: its only pixel size is a {dpi:g}-dpi TIFF resolution tag ({mx:.1f} µm/px), a screen or print "
            "default rather than a microscope's; pass --mpp (mpp=) with level 0's µm/px, e.g. --mpp 0.25 for "
            "a 40x scan, --mpp 0.5 for 20x")
    if not (lo <= mx <= hi and lo <= my <= hi):
        raise ImplausibleMppError(
            f"{name} records {mx:.4g} x {my:.4g} µm/px, outside {lo}-{hi} µm/px (slide scanners); pass --mpp "
            "(mpp=) with level 0's µm/px, e.g. --mpp 0.25 for a 40x scan, --mpp 0.5 for 20x")
    return mx, my, "slide"


def _dpi_default_only(props) -> bool:
    """True when the µm/px can only have come from a 72/96/300 pixels-per-inch TIFF tag: a generic TIFF
    with no objective power and no vendor's microscope metadata."""
    if props.get("openslide.vendor") != "generic-tiff" or props.get("openslide.objective-power"):
        return False
    if str(props.get("tiff.ResolutionUnit", "")).lower() != "inch":
        return False
    try:
        dpi = (float(props["tiff.XResolution"]), float(props["tiff.YResolution"]))
    except (KeyError, ValueError):
        return False
    return any(abs(d - default) < 0.5 for d in dpi for default in DPI_DEFAULTS)


def _is_tiff(p: Path) -> bool:
    try:
        with open(p, "rb") as fh:
            return fh.read(4) in _TIFF_MAGIC
    except OSError:
        return False


def _try_fast(p: Path, osr, n_tiles: int, tolerance: int) -> tuple[TiffTileReader | None, int | None]:
    try:
        reader = TiffTileReader(p, tuple((int(d[0]), int(d[1])) for d in osr.level_dimensions))
    except Exception as exc:  # not eligible: OpenSlide stays the reader
        logger.debug("direct-tile path not used for %s: %s", p.name, exc)
        return None, None
    try:
        diff = reader.verify_against(osr, n_tiles=n_tiles)
    except Exception as exc:
        logger.info("direct-tile path disabled for %s: verification failed (%s)", p.name, exc)
        reader.close()
        return None, None
    if diff > tolerance:
        logger.info("direct-tile path disabled for %s: differs from OpenSlide by %d grey levels", p.name, diff)
        reader.close()
        return None, diff
    return reader, diff
