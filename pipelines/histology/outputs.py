"""Viewer-ready outputs: QuPath GeoJSON, heatmap PNG + pyramidal TIFF, features JSON/CSV, overlay, metadata.

Every file is written under a temporary name and renamed, so a reader never sees half a file.

Files in ``out_dir``:

- ``annotations.geojson``  tissue polygons (QuPath annotations, class ``Tissue``) and nuclei (QuPath
  detections: ellipse polygons, class, measurements), level-0 pixel coordinates: File > Import objects.
- ``heatmap.png``          nuclei density per mm² of tissue, one pixel per tile core (viridis, grey = not analysed).
- ``heatmap.tiff``         the same as an RGB pyramidal TIFF whose resolution tags place it on the slide
                           (same physical extent as level 0); the JSON description gives the scale and range.
- ``features.json``        slide features + per-tile rows; ``tiles.csv``, ``nuclei.csv`` the tables.
- ``overlay.png``          slide thumbnail with tissue outline and nuclei coloured by class.
- ``result.json``          the :class:`HistologyResult`; ``run_metadata.json`` versions, device, timings, params.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from zeroclick.pipelines.histology.nuclei import NUCLEUS_CLASSES, NUCLEUS_COLUMNS
from zeroclick.pipelines.histology.result import TILE_COLUMNS, HistologyResult

CLASS_COLOURS = {"lymphocyte": (220, 30, 30), "spindle": (30, 160, 30), "other": (30, 60, 220)}
HEATMAP_UPSCALE = 8  # heatmap.tiff pixels per tile core along each axis (at least)
HEATMAP_MIN_PX = 512  # long side of heatmap.tiff level 0, at least (so it always has a pyramid)


def atomic_write(path: Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_path)`` then rename to ``path``."""
    tmp = path.with_name(f".{path.name}.partial")
    write(tmp)
    os.replace(tmp, path)
    return path


def _write_text(path: Path, text: str) -> Path:
    def write(p: Path) -> None:
        p.write_text(text)

    return atomic_write(path, write)


def write_geojson(path: Path, tissue_polygons: list, nuclei: np.ndarray, *, mpp0: float) -> Path:
    """QuPath-importable FeatureCollection (streamed feature by feature); nuclei as moment ellipses."""
    c = {name: i for i, name in enumerate(NUCLEUS_COLUMNS)}
    t = np.linspace(0, 2 * np.pi, 13)[:-1]

    def write(p: Path) -> None:
        with open(p, "w") as fh:
            fh.write('{"type": "FeatureCollection", "features": [\n')
            first = True
            for k, rings in enumerate(tissue_polygons):
                feat = {
                    "type": "Feature", "id": f"tissue-{k}",
                    "geometry": {"type": "Polygon",
                                 "coordinates": [[[round(x, 1), round(y, 1)] for x, y in r] for r in rings]},
                    "properties": {"objectType": "annotation", "classification": {"name": "Tissue",
                                                                                  "color": [0, 160, 0]}},
                }
                fh.write(("" if first else ",") + json.dumps(feat) + "\n")
                first = False
            for i, row in enumerate(nuclei):
                x, y, th = row[c["x_px"]], row[c["y_px"]], row[c["orientation_rad"]]
                a = 0.5 * row[c["major_axis_um"]] / mpp0
                b = 0.5 * row[c["minor_axis_um"]] / mpp0
                px = x + a * np.cos(t) * math.cos(th) - b * np.sin(t) * math.sin(th)
                py = y + a * np.cos(t) * math.sin(th) + b * np.sin(t) * math.cos(th)
                ring = [[round(float(u), 1), round(float(v), 1)] for u, v in zip(px, py)]
                ring.append(ring[0])
                name = NUCLEUS_CLASSES[int(row[c["class_index"]])]
                feat = {
                    "type": "Feature", "id": f"nucleus-{i}",
                    "geometry": {"type": "Polygon", "coordinates": [ring]},
                    "properties": {
                        "objectType": "detection",
                        "classification": {"name": name, "color": list(CLASS_COLOURS[name])},
                        "measurements": {
                            "Area um^2": round(float(row[c["area_um2"]]), 3),
                            "Perimeter um": round(float(row[c["perimeter_um"]]), 3),
                            "Major axis um": round(float(row[c["major_axis_um"]]), 3),
                            "Minor axis um": round(float(row[c["minor_axis_um"]]), 3),
                            "Eccentricity": round(float(row[c["eccentricity"]]), 4),
                            "Solidity": round(float(row[c["solidity"]]), 4),
                            "Haematoxylin mean": round(float(row[c["mean_haematoxylin"]]), 4),
                        },
                    },
                }
                fh.write(("" if first else ",") + json.dumps(feat) + "\n")
                first = False
            fh.write("]}\n")

    return atomic_write(path, write)


def _table_csv(path: Path, columns: tuple[str, ...], data: np.ndarray, extra: dict[str, list] | None = None) -> Path:
    def write(p: Path) -> None:
        with open(p, "w", newline="") as fh:
            wr = csv.writer(fh)
            wr.writerow(list(columns) + list(extra or {}))
            for i, row in enumerate(data):
                vals = ["" if not np.isfinite(v) else (int(v) if float(v).is_integer() else f"{v:.6g}") for v in row]
                wr.writerow(vals + [col[i] for col in (extra or {}).values()])

    return atomic_write(path, write)


def colourise(values: np.ndarray, vmax: float | None = None) -> tuple[np.ndarray, float]:
    """Viridis RGB uint8 of a 2-D array (NaN -> light grey) and the value mapped to the top colour."""
    import matplotlib

    finite = values[np.isfinite(values)]
    top = float(vmax if vmax is not None else (np.percentile(finite, 99) if finite.size else 1.0)) or 1.0
    lut = (matplotlib.colormaps["viridis"](np.linspace(0, 1, 256))[:, :3] * 255).astype(np.uint8)
    idx = np.clip(np.nan_to_num(values / top, nan=0.0) * 255, 0, 255).astype(np.uint8)
    rgb = lut[idx]
    rgb[~np.isfinite(values)] = (220, 220, 220)
    return rgb, top


def write_heatmap(out_dir: Path, density: np.ndarray, *, core_px0: float, mpp0: float) -> tuple[Path, Path]:
    """heatmap.png (one pixel per tile core) and heatmap.tiff (pyramidal, resolution tags on the slide)."""
    import tifffile

    rgb, top = colourise(density)
    png = atomic_write(out_dir / "heatmap.png", lambda p: Image.fromarray(rgb).save(p, format="PNG"))
    up = max(HEATMAP_UPSCALE, math.ceil(HEATMAP_MIN_PX / max(rgb.shape[:2])))
    big = np.repeat(np.repeat(rgb, up, axis=0), up, axis=1)
    px0 = core_px0 / up  # level-0 pixels per heatmap pixel
    desc = json.dumps({"value": "nuclei_density_per_mm2", "colormap": "viridis", "vmin": 0.0, "vmax": top,
                       "level0_px_per_pixel": px0, "origin_level0_px": [0, 0]})

    def write(p: Path) -> None:
        levels = [big]
        while max(levels[-1].shape[:2]) > 256 and len(levels) < 6:
            levels.append(np.asarray(Image.fromarray(levels[-1]).reduce(2)))
        res = 1e4 / (mpp0 * px0)  # pixels per centimetre
        with tifffile.TiffWriter(p) as tw:
            tw.write(levels[0], tile=(256, 256) if max(big.shape[:2]) >= 256 else None, photometric="rgb",
                     compression="zlib", resolution=(res, res), resolutionunit="CENTIMETER",
                     description=desc, subifds=len(levels) - 1, metadata=None)
            for k, lvl in enumerate(levels[1:], start=1):
                r = res / 2**k
                tw.write(lvl, tile=(256, 256) if max(lvl.shape[:2]) >= 256 else None, photometric="rgb",
                         compression="zlib", resolution=(r, r), resolutionunit="CENTIMETER",
                         subfiletype=1, metadata=None)

    tiff = atomic_write(out_dir / "heatmap.tiff", write)
    return png, tiff


def write_overlay(path: Path, thumb: np.ndarray, thumb_ds: float, tissue_polygons: list, nuclei: np.ndarray) -> Path:
    """Thumbnail with the tissue outline (green) and nuclei dots coloured by class."""
    img = Image.fromarray(thumb).convert("RGB")
    draw = ImageDraw.Draw(img)
    c = {name: i for i, name in enumerate(NUCLEUS_COLUMNS)}
    r = 1 if thumb_ds > 4 else 2
    for row in nuclei:
        x, y = row[c["x_px"]] / thumb_ds, row[c["y_px"]] / thumb_ds
        colour = CLASS_COLOURS[NUCLEUS_CLASSES[int(row[c["class_index"]])]]
        draw.ellipse([x - r, y - r, x + r, y + r], fill=colour)
    for rings in tissue_polygons:
        for ring in rings:
            draw.line([(x / thumb_ds, y / thumb_ds) for x, y in ring], fill=(0, 200, 0), width=2)

    def write(p: Path) -> None:
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        p.write_bytes(buf.getvalue())

    return atomic_write(path, write)


def write_outputs(
    out_dir: str | os.PathLike,
    result: HistologyResult,
    *,
    nuclei: np.ndarray,
    tiles: np.ndarray,
    density: np.ndarray,
    tissue_polygons: list,
    thumb: np.ndarray,
    thumb_ds: float,
    core_px0: float,
    mpp0: float,
    metadata: dict[str, Any],
) -> dict[str, str]:
    """Write every output file; returns {name: path}."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    paths["geojson"] = write_geojson(out / "annotations.geojson", tissue_polygons, nuclei, mpp0=mpp0)
    if len(tiles):
        paths["heatmap_png"], paths["heatmap_tiff"] = write_heatmap(out, density, core_px0=core_px0, mpp0=mpp0)
    paths["nuclei_csv"] = _table_csv(out / "nuclei.csv", NUCLEUS_COLUMNS, nuclei,
                                     {"class": [NUCLEUS_CLASSES[int(k)] for k in nuclei[:, 9]]})
    paths["tiles_csv"] = _table_csv(out / "tiles.csv", TILE_COLUMNS, tiles)
    paths["overlay_png"] = write_overlay(out / "overlay.png", thumb, thumb_ds, tissue_polygons, nuclei)
    paths["run_metadata_json"] = _write_text(out / "run_metadata.json", json.dumps(metadata, indent=2, default=str))
    outputs = {k: str(v) for k, v in paths.items()}
    outputs["features_json"] = str(out / "features.json")
    outputs["result_json"] = str(out / "result.json")
    features = {
        "slide": {k: v for k, v in result.to_dict().items() if k not in ("provenance", "outputs")},
        "tile_columns": list(TILE_COLUMNS),
        "tiles": [[None if not np.isfinite(v) else float(v) for v in row] for row in tiles],
    }
    _write_text(out / "features.json", json.dumps(features, indent=2, default=str))
    return outputs


def write_result(out_dir: str | os.PathLike, result: HistologyResult) -> Path:
    return _write_text(Path(out_dir) / "result.json", result.to_json())


def write_refusal(out_dir: str | os.PathLike, *, slide_name: str, code: str, message: str) -> Path:
    """``result.json`` for a slide refused before analysis (e.g. no plausible µm/px): status and QC code."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    doc = {"slide_name": slide_name, "qc": {"status": "refused", "code": code}, "warnings": [message]}
    return _write_text(out / "result.json", json.dumps(doc, indent=2))
