"""Resource ceilings for DICOM input: what one exam may cost before zeroclick refuses it.

A hostile or broken source must not take the machine down: an attacker's header that claims a
65,535 x 65,535 x 1,000,000 image, a zip bomb, a folder of a million files or one 50 GB "image" each end
as a named :class:`~zeroclick.imaging.errors.ResourceLimitError` before anything is allocated.

=============================  ==================  =====================================================
limit                          default             checked
=============================  ==================  =====================================================
``max_files``                  50,000              files found in a source (folder, list, archive)
``max_file_bytes``             2 GiB               size of each file (larger files are rejected)
``max_pixels_per_image``       2**28 (268 M)       Rows x Columns x NumberOfFrames x SamplesPerPixel
``max_pixels_per_series``      2**30 (1.07 G)      pixels of one decoded volume (4.3 GB as float32)
``max_archive_bytes``          16 GiB              total uncompressed size of an archive's members
``max_archive_ratio``          200                 uncompressed / compressed size of an archive
``max_archive_members``        100,000             members of an archive
=============================  ==================  =====================================================

A clinical CMR exam is 300-5,000 files of 0.1-1 MB, images of 256 x 256 (enhanced multi-frame files
up to ~10 M pixels); DICOM files compress 2-6x in a zip. The defaults are 10-100 times above that.
Raise a ceiling per call (``scan(..., limits=Limits(max_files=200_000))``) or for a process with the
environment variable ``ZEROCLICK_LIMITS`` (``max_files=200000,max_archive_ratio=500``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields, replace

from zeroclick.imaging.errors import ResourceLimitError

GIB = 1 << 30


@dataclass(frozen=True)
class Limits:
    """Ceilings on what one scan may read (see the module docstring for defaults and why)."""

    max_files: int = 50_000
    max_file_bytes: int = 2 * GIB
    max_pixels_per_image: int = 1 << 28
    max_pixels_per_series: int = 1 << 30
    max_archive_bytes: int = 16 * GIB
    max_archive_ratio: float = 200.0
    max_archive_members: int = 100_000


def default_limits() -> Limits:
    """:class:`Limits` with the overrides of ``ZEROCLICK_LIMITS`` (``name=value`` pairs, comma-separated)."""
    text = os.environ.get("ZEROCLICK_LIMITS", "").strip()
    if not text:
        return Limits()
    known = {f.name: f.type for f in fields(Limits)}
    changes: dict[str, float | int] = {}
    for item in text.split(","):
        name, _, value = item.partition("=")
        name = name.strip()
        if name not in known:
            raise ResourceLimitError(f"ZEROCLICK_LIMITS names {name!r}; known limits: {', '.join(known)}",
                                     code="bad_limit_setting")
        try:
            changes[name] = float(value) if name == "max_archive_ratio" else int(value)
        except ValueError:
            raise ResourceLimitError(f"ZEROCLICK_LIMITS: {name}={value!r} is not a number",
                                     code="bad_limit_setting") from None
    return replace(Limits(), **changes)  # type: ignore[arg-type]


def check_count(n_files: int, limits: Limits) -> None:
    if n_files > limits.max_files:
        raise ResourceLimitError(
            f"{n_files} files in the source, more than the ceiling of {limits.max_files} files per exam; "
            "give one exam at a time, or raise max_files (ZEROCLICK_LIMITS=max_files=N)", code="too_many_files")


def check_series_pixels(n_images: int, rows: int, cols: int, limits: Limits, *, what: str) -> None:
    """Raise before decoding a volume larger than ``max_pixels_per_series``."""
    n = pixels_of(rows, cols) * int(n_images)
    if n > limits.max_pixels_per_series:
        raise ResourceLimitError(
            f"{what}: {n_images} images of {rows} x {cols} = {n} pixels, more than the ceiling of "
            f"{limits.max_pixels_per_series} per volume (max_pixels_per_series); not decoded. Raise it with "
            "ZEROCLICK_LIMITS if the series is genuine", code="series_too_large")


def pixels_of(rows: int, cols: int, frames: int = 1, samples: int = 1) -> int:
    return int(rows) * int(cols) * max(int(frames), 1) * max(int(samples), 1)
