"""The histology result: one frozen dataclass with unit-suffixed measurements, warnings, QC and provenance."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from zeroclick.pipelines.histology.nuclei import NUCLEUS_CLASSES, NUCLEUS_COLUMNS

TILE_COLUMNS: tuple[str, ...] = (
    "tile_index", "col", "row", "core_x0_px", "core_y0_px", "core_x1_px", "core_y1_px", "tissue_fraction",
    "nuclei_count", "nuclei_density_per_mm2", "lymphocyte_count", "mean_nucleus_area_um2", "cellularity_percent",
)


@dataclass(frozen=True)
class NucleiTable:
    """All nuclei of a slide: one row each, columns :data:`NUCLEUS_COLUMNS` (positions in level-0 pixels)."""

    data: np.ndarray

    def __len__(self) -> int:
        return len(self.data)

    def column(self, name: str) -> np.ndarray:
        return self.data[:, NUCLEUS_COLUMNS.index(name)]

    def class_names(self) -> list[str]:
        return [NUCLEUS_CLASSES[int(k)] for k in self.column("class_index")]


@dataclass(frozen=True)
class TileTable:
    """Per-tile summaries, columns :data:`TILE_COLUMNS`."""

    data: np.ndarray

    def __len__(self) -> int:
        return len(self.data)

    def column(self, name: str) -> np.ndarray:
        return self.data[:, TILE_COLUMNS.index(name)]


@dataclass(frozen=True)
class HistologyResult:
    """Slide-level histology measurements.

    Densities are per mm² of detected tissue. A measurement is ``None`` when its inputs were not valid
    (no tissue, nothing analysed); the reason is in ``warnings`` and ``qc["status"]``.
    """

    slide_name: str
    engine: str
    target_mpp: float
    tissue_area_mm2: float
    tiles_total: int
    tiles_analysed: int
    tiles_failed: int
    nuclei_count: int
    nuclei_density_per_mm2: float | None
    cellularity_percent: float | None
    lymphocyte_count: int
    lymphocyte_density_per_mm2: float | None
    lymphocyte_fraction_percent: float | None
    spindle_fraction_percent: float | None
    mean_nucleus_area_um2: float | None
    median_nucleus_area_um2: float | None
    mean_nucleus_eccentricity: float | None
    warnings: tuple[str, ...]
    qc: dict[str, Any]
    provenance: dict[str, Any]
    outputs: dict[str, str] = field(default_factory=dict)
    nuclei: NucleiTable | None = field(default=None, repr=False, compare=False)
    tiles: TileTable | None = field(default=None, repr=False, compare=False)
    # Nuclei label image at ``target_mpp`` over the whole slide (run(keep_labels=True) only); label k + 1
    # is nuclei table row k.
    nuclei_labels: np.ndarray | None = field(default=None, repr=False, compare=False)

    @property
    def ok(self) -> bool:
        return self.qc.get("status") == "ok"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of the measurements (the nuclei and tile tables are written as files)."""
        out: dict[str, Any] = {}
        for name in self.__dataclass_fields__:
            if name in ("nuclei", "tiles", "nuclei_labels"):
                continue
            value = getattr(self, name)
            if isinstance(value, tuple):
                value = list(value)
            elif isinstance(value, float) and not math.isfinite(value):
                value = None
            out[name] = value
        return out

    def to_json(self, **kwargs: Any) -> str:
        kwargs.setdefault("indent", 2)
        return json.dumps(self.to_dict(), default=_json_default, **kwargs)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return str(obj)
