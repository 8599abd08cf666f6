"""Zero-click whole-slide histology: open -> tissue -> tiles -> stains -> nuclei -> features -> outputs.

Reads top to bottom like the protocol:

1. open the slide with its µm/px (:func:`zeroclick.imaging.slide.open_slide`);
2. find tissue on a thumbnail (:func:`zeroclick.imaging.slide.detect_tissue`);
3. lay a tile grid over the tissue at ``target_mpp`` (:func:`zeroclick.imaging.slide.tile_grid`);
4. estimate the slide's H&E stain vectors (Macenko, Ruifrok fallback) from a few tissue tiles;
5. read tiles ahead in worker processes and run the engine in batches (classical or HoVerNet);
6. count each nucleus once (tile cores), summarise per tile and per slide;
7. write GeoJSON, heatmaps, tables, overlay and metadata.

Example
-------
>>> from zeroclick.pipelines.histology import run
>>> result = run("CMU-1-Small-Region.svs", out_dir="out")  # doctest: +SKIP
>>> round(result.nuclei_density_per_mm2)  # doctest: +SKIP
"""

from __future__ import annotations

import functools
import logging
import math
import os
import platform
import time
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import numpy as np

from zeroclick.imaging import progress
from zeroclick.imaging.engine import select_device
from zeroclick.imaging.errors import InvalidInputError, WeightsError, check_strictness, report_problem
from zeroclick.imaging.slide import (
    CachedTileAssembler,
    Slide,
    Tile,
    TileGrid,
    TileReader,
    TissueMask,
    TissueParams,
    default_workers,
    detect_tissue,
    open_slide,
    read_tile,
    tile_grid,
)
from zeroclick.imaging.slide.open import MissingMppError
from zeroclick.pipelines.histology.features import density_grid, slide_features, tile_table
from zeroclick.pipelines.histology.inputs import check_brightfield_he
from zeroclick.pipelines.histology.nuclei import NUCLEUS_COLUMNS, ClassicalEngine, NucleiParams
from zeroclick.pipelines.histology.result import HistologyResult, NucleiTable, TileTable
from zeroclick.pipelines.histology.stains import StainMatrix, macenko

logger = logging.getLogger(__name__)

ENGINES = ("classical", "hovernet")
MAX_WARNINGS_LISTED = 20
# Largest slide analysed: 50,000 tiles of 512² at 0.5 µm/px hold ~2,500 mm² of tissue, more than a
# 75 x 25 mm glass slide; measured cost ~0.04 CPU-s per tile (CMU-1, classical engine) and ~150 nuclei of
# 96 bytes per tile in the tables.
MAX_TILES = 50_000
SECONDS_PER_TILE_CPU = 0.04
BYTES_PER_TILE = 150 * 96
MAX_LABEL_MPX = 64  # largest label image run(keep_labels=True) builds (tiles, small fields)
OVERLAY_MIN_PX = 1536  # the overlay thumbnail's long side, at least (or the slide's own size)

__all__ = ["ENGINES", "HistologyResult", "NucleiTable", "TileTable", "estimate_stains", "run"]


def run(
    slide: str | os.PathLike | Slide,
    *,
    out_dir: str | os.PathLike | None = None,
    mpp: float | None = None,
    engine: str | Any = "classical",
    target_mpp: float = 0.5,
    tile_px: int = 512,
    overlap_px: int = 64,
    workers: int | None = None,
    prefetch: int = 8,
    batch_size: int = 8,
    device: str = "auto",
    weights: str | os.PathLike | None = None,
    tissue_params: TissueParams | None = None,
    nuclei_params: NucleiParams | None = None,
    strictness: str = "warn",
    scaled_jpeg: bool = True,
    keep_labels: bool = False,
    max_tiles: int = MAX_TILES,
) -> HistologyResult:
    """Analyse one whole-slide image.

    Parameters
    ----------
    slide
        A path (anything OpenSlide opens) or an open :class:`zeroclick.imaging.slide.Slide`.
    out_dir
        Where to write the outputs (see :mod:`zeroclick.pipelines.histology.outputs`); ``None`` writes nothing.
    mpp
        Level-0 µm/px, for slides that do not record it (or to override it).
    engine
        ``"classical"`` (no weights), ``"hovernet"`` (needs ``weights``: a MONAI bundle or state dict), or
        an engine object with ``segment_batch(tiles, rgb_batch, grid)`` (e.g. a configured
        :class:`zeroclick.pipelines.histology.deep.HoVerNetEngine`).
    target_mpp, tile_px, overlap_px
        Analysis resolution and tiles (``overlap_px`` must exceed the largest nucleus, in target pixels).
    workers, prefetch
        Reader processes and the bound on decoded tiles waiting in memory. Default: one per core; at
        most 4 when the engine runs in this process (GPU, HoVerNet), one per core when the classical CPU
        engine runs inside the readers (at most 16). 0 reads and analyses in this process.
    batch_size, device
        Tiles per engine batch; ``"auto"`` picks CUDA > MPS > CPU.
    strictness
        ``"warn"``: corrupt tiles are skipped, counted and listed in ``warnings``; ``"raise"``: the
        first one stops the run.
    scaled_jpeg
        When the level read is a whole factor (2, 4, 8) finer than ``target_mpp`` and its tiles are
        YCbCr JPEG, decode them straight at the target resolution (libjpeg-turbo DCT scaling) instead
        of decoding them whole and averaging pixel blocks: ~25% less reading CPU, pixels ~1 grey level
        apart on average. ``False`` gives tiles identical to :func:`zeroclick.imaging.slide.read_tile`. Recorded
        in the provenance (``grid.scaled_jpeg``).
    keep_labels
        Also return the nuclei as one label image at the analysis resolution
        (``result.nuclei_labels``; label k + 1 is nuclei table row k). For tiles and small fields
        (validation against manual masks); refused above :data:`MAX_LABEL_MPX` megapixels.
    max_tiles
        A slide needing more analysis tiles is refused (``qc["code"] == "resource_bound"``) before any
        is read: see :data:`MAX_TILES`.

    Slides that are not brightfield H&E (fluorescence, greyscale, IHC; see
    :mod:`zeroclick.pipelines.histology.inputs`) are refused with ``qc["status"] == "refused"`` and a
    ``qc["code"]``; a slide without a plausible µm/px raises
    :class:`zeroclick.imaging.slide.open.MissingMppError` (``code``; ``result.json`` written too).
    """
    strictness = check_strictness(strictness)
    if isinstance(engine, str) and engine not in ENGINES:
        raise InvalidInputError(f"engine={engine!r} is not one of {', '.join(ENGINES)}")
    if engine == "hovernet" and weights is None:
        raise WeightsError("engine='hovernet' needs weights= (--weights): a MONAI bundle folder or a HoVerNet "
                           "state dict; engine='classical' needs none")
    timings: dict[str, float] = {}
    t_start = time.perf_counter()
    own = not isinstance(slide, Slide)
    try:
        sl: Slide = slide if isinstance(slide, Slide) else open_slide(slide, mpp=mpp)
    except MissingMppError as exc:  # refused before analysis: say so in result.json too
        if out_dir is not None:
            from zeroclick.pipelines.histology.outputs import write_refusal

            write_refusal(out_dir, slide_name=Path(slide).name, code=exc.code, message=str(exc))  # type: ignore[arg-type]
        raise
    try:
        return _run_open(sl, out_dir=out_dir, engine=engine, target_mpp=target_mpp, tile_px=tile_px,
                         overlap_px=overlap_px, workers=workers, prefetch=prefetch, batch_size=batch_size,
                         device=device, weights=weights, tissue_params=tissue_params,
                         nuclei_params=nuclei_params, strictness=strictness, timings=timings, t_start=t_start,
                         scaled_jpeg=scaled_jpeg, keep_labels=keep_labels, max_tiles=max_tiles)
    finally:
        if own:
            sl.close()


def _run_open(sl: Slide, *, out_dir, engine, target_mpp, tile_px, overlap_px, workers, prefetch, batch_size,
              device, weights, tissue_params, nuclei_params, strictness, timings, t_start,
              scaled_jpeg, keep_labels=False, max_tiles=MAX_TILES) -> HistologyResult:
    warnings: list[str] = []
    meta = sl.meta
    mpp0 = 0.5 * (meta.mpp_x + meta.mpp_y)
    dev = select_device(device)

    t = time.perf_counter()
    tissue = detect_tissue(sl, params=tissue_params)
    thumb, thumb_ds = sl.thumbnail(target_mpp=(tissue_params or TissueParams()).thumbnail_mpp, min_px=OVERLAY_MIN_PX)
    timings["tissue_s"] = time.perf_counter() - t

    level = sl.best_level_for_mpp(target_mpp)
    grid = tile_grid(meta.dimensions, meta.level_downsamples, mpp0, target_mpp=target_mpp, level=level,
                     tile_px=tile_px, overlap_px=overlap_px, tissue=tissue)
    status = "ok"
    code: str | None = None
    brightfield = check_brightfield_he(thumb)
    nuclei = np.zeros((0, len(NUCLEUS_COLUMNS)))
    analysed: set[int] = set()
    failed: list[str] = []
    stains: StainMatrix | None = None
    engine_obj = None
    used_scaled_jpeg = False
    label_shape = (math.ceil(meta.dimensions[1] / grid.scale0), math.ceil(meta.dimensions[0] / grid.scale0))
    if keep_labels and label_shape[0] * label_shape[1] > MAX_LABEL_MPX * 1e6:
        raise InvalidInputError(f"keep_labels=True needs a {label_shape[1]}x{label_shape[0]} label image "
                                f"(> {MAX_LABEL_MPX} Mpx); use it on tiles and small fields only")
    nuclei_labels = np.zeros(label_shape, np.int32) if keep_labels else None
    if brightfield.code is not None:
        status, code = "refused", brightfield.code
        warnings.append(brightfield.message)
    elif len(grid) > max_tiles:
        status, code = "refused", "resource_bound"
        warnings.append(f"the slide needs {len(grid)} analysis tiles at {grid.target_mpp:.3g} µm/px, more than the "
                        f"bound of {max_tiles} (about {max_tiles * SECONDS_PER_TILE_CPU / 3600:.1f} CPU-hours and "
                        f"{max_tiles * BYTES_PER_TILE / 1e9:.1f} GB of nuclei tables); check its µm/px, or raise "
                        "max_tiles / --target-mpp")
    elif tissue.area_mm2 <= 0 or len(grid) == 0:
        status = "no_tissue"
        warnings.append("no tissue detected on the slide (saturation below threshold everywhere); "
                        "nothing was measured. Check the stain, or lower TissueParams.min_saturation.")
    else:
        t = time.perf_counter()
        stains = estimate_stains(sl, grid, tissue)
        timings["stains_s"] = time.perf_counter() - t
        engine_obj = _make_engine(engine, stains, grid.target_mpp, dev, weights, nuclei_params)
        t = time.perf_counter()
        cpu = _cpu_s()
        in_workers = bool(getattr(engine_obj, "runs_in_workers", False))
        n_workers = default_workers(analysis=in_workers) if workers is None else workers
        workers = n_workers  # recorded in the provenance
        used_scaled_jpeg = scaled_jpeg and CachedTileAssembler(sl, grid, scaled_jpeg=True).scaled
        nuclei, analysed, failed = _analyse_tiles(sl, grid, engine_obj, n_workers, prefetch, batch_size,
                                                  strictness, used_scaled_jpeg, nuclei_labels)
        timings["tiles_s"] = time.perf_counter() - t
        timings["tiles_cpu_s"] = _cpu_s() - cpu  # this process and its reader processes
        if failed:
            warnings.append(f"{len(failed)} of {len(grid)} tiles could not be read and were skipped")
            warnings.extend(failed[:MAX_WARNINGS_LISTED])
            status = "partial"
        if not analysed:
            status = "failed"
            warnings.append("no tile could be read: no measurement is valid")
    tiles = tile_table(grid, analysed, nuclei, tissue, mpp0)
    # Density refers to the tissue that was actually analysed (failed tiles excluded).
    analysed_tissue_mm2 = float(np.nansum(
        tiles[:, 7] * (tiles[:, 5] - tiles[:, 3]) * (tiles[:, 6] - tiles[:, 4]))) * (mpp0 / 1000) ** 2 if len(
        tiles) else 0.0
    feats = slide_features(nuclei, analysed_tissue_mm2 if status in ("ok", "partial") else 0.0)
    timings["total_s"] = time.perf_counter() - t_start
    qc = {
        "status": status,
        "fast_path": meta.fast_path,
        "fast_path_max_diff": meta.fast_path_max_diff,
        "mpp_source": meta.mpp_source,
        "level_read": grid.level,
        "level_mpp": meta.level_mpp(grid.level),
        "tissue_fraction": tissue.fraction,
        "tissue_otsu_saturation": tissue.otsu_saturation,
        "tissue_detection": tissue.describe(),
        "code": code,
        "brightfield": brightfield.to_dict(),
        "stain_method": stains.method if stains else None,
        "analysed_tissue_area_mm2": analysed_tissue_mm2,
    }
    provenance = _provenance(meta, engine_obj, stains, dev, grid, timings, workers, batch_size)
    provenance["grid"]["scaled_jpeg"] = used_scaled_jpeg
    result = HistologyResult(
        slide_name=Path(meta.path).name,
        engine=engine if isinstance(engine, str) else str(getattr(engine, "name", type(engine).__name__)),
        target_mpp=grid.target_mpp,
        tissue_area_mm2=tissue.area_mm2,
        tiles_total=len(grid),
        tiles_analysed=len(analysed),
        tiles_failed=len(failed),
        warnings=tuple(warnings),
        qc=qc,
        provenance=provenance,
        nuclei=NucleiTable(nuclei),
        tiles=TileTable(tiles),
        nuclei_labels=nuclei_labels,
        **feats,  # type: ignore[arg-type]
    )
    if out_dir is not None:
        result = _write(out_dir, result, sl, tissue, grid, thumb, thumb_ds, mpp0)
    logger.info("histology: %s, %d nuclei, %d/%d tiles, %.1f s", status, result.nuclei_count,
                result.tiles_analysed, result.tiles_total, timings["total_s"])
    return result


def _make_engine(engine, stains: StainMatrix, mpp: float, dev, weights, nuclei_params):
    if not isinstance(engine, str):
        if getattr(engine, "stains", "absent") is None:
            engine.stains = stains  # a user-built engine gets the slide's stain estimate
        return engine
    if engine == "classical":
        return ClassicalEngine(stains, mpp, device=dev, params=nuclei_params)
    from zeroclick.pipelines.histology.deep import HoVerNetEngine

    return HoVerNetEngine.from_weights(weights, mpp=mpp, device=dev, stains=stains)


def estimate_stains(sl: Slide, grid: TileGrid, tissue: TissueMask, *, n_tiles: int = 8) -> StainMatrix:
    """Macenko stain vectors from up to ``n_tiles`` tiles spread over the tissue (Ruifrok if it fails)."""
    picks = np.linspace(0, len(grid) - 1, min(n_tiles, len(grid))).round().astype(int)
    pixels = []
    for i in sorted(set(picks.tolist())):
        try:
            rgb = read_tile(sl, grid, grid.tiles[i], fast=sl.meta.fast_path)
        except Exception as exc:  # a corrupt tile must not stop the estimate
            logger.debug("stain sample tile %d unreadable: %s", i, exc)
            continue
        pixels.append(rgb[::2, ::2].reshape(-1, 3))
    sample = np.concatenate(pixels) if pixels else np.zeros((0, 3), np.uint8)
    return macenko(sample)


def _analyse_tiles(sl, grid, engine_obj, n_workers, prefetch, batch_size, strictness, scaled_jpeg,
                   label_image: np.ndarray | None = None):
    """Nuclei table, analysed tile indices and failure messages; paints ``label_image`` when given."""
    tables: list[np.ndarray] = []
    tile_labels: list[tuple[Tile, np.ndarray, int]] = []
    analysed: set[int] = set()
    failed: list[str] = []
    keep_labels = label_image is not None

    def skip(read) -> None:
        msg = f"tile {read.tile.index} (col {read.tile.col}, row {read.tile.row}): {read.error}"
        report_problem(msg, strictness, logger=logger)
        failed.append(msg)
        progress.advance(1)

    progress.stage("nuclei: analysing tiles", total=len(grid), unit="tiles")

    def keep(results) -> None:
        results = list(results)
        progress.advance(len(results))
        for res in results:
            tables.append(res.table)
            analysed.add(res.tile.index)
            if keep_labels:
                tile_labels.append((res.tile, res.labels, len(res.table)))

    reader = TileReader(sl, grid, workers=n_workers, prefetch=prefetch, chunk=batch_size, scaled_jpeg=scaled_jpeg)
    if getattr(engine_obj, "runs_in_workers", False):
        # CPU engine: each reader process analyses the tiles it reads (both cores busy, no pixels
        # cross processes); only the nuclei tables come back.
        for batch in reader.map_batches(functools.partial(engine_obj.segment_batch, grid=grid,
                                                          keep_labels=keep_labels)):
            for read in batch.failed:
                skip(read)
            keep(batch.result or ())
    else:  # GPU or network engines run here, fed by the reader processes
        batch_tiles, batch_rgb = [], []
        for read in reader:
            if read.rgb is None:
                skip(read)
                continue
            batch_tiles.append(read.tile)
            batch_rgb.append(read.rgb)
            if len(batch_tiles) >= batch_size:
                keep(engine_obj.segment_batch(batch_tiles, np.stack(batch_rgb), grid, keep_labels=keep_labels))
                batch_tiles, batch_rgb = [], []
        if batch_tiles:
            keep(engine_obj.segment_batch(batch_tiles, np.stack(batch_rgb), grid, keep_labels=keep_labels))
    nuclei = np.concatenate(tables) if tables else np.zeros((0, len(NUCLEUS_COLUMNS)))
    # Reader order depends on process timing: sort so outputs are deterministic.
    order = np.lexsort((nuclei[:, 0], nuclei[:, 1], nuclei[:, NUCLEUS_COLUMNS.index("tile_index")]))
    nuclei = nuclei[order]
    if label_image is not None:
        _paint_labels(label_image, grid, tile_labels, order)
    return nuclei, analysed, failed


def _paint_labels(label_image: np.ndarray, grid: TileGrid, tile_labels: list, order: np.ndarray) -> None:
    """Each tile's kept nuclei into one label image at the analysis resolution, labelled by their row
    (+1) in the sorted nuclei table; tiles in table order, so a later tile wins where two overlap."""
    row_of = np.empty(len(order), np.int64)
    row_of[order] = np.arange(len(order))
    start = 0
    for tile, labels, n in tile_labels:
        lut = np.zeros(n + 1, np.int32)
        lut[1:] = row_of[start:start + n] + 1
        start += n
        ox, oy = grid.level_origin(tile)
        x0, y0 = int(round(ox / grid.scale0)), int(round(oy / grid.scale0))
        # Clip the tile to the image (tiles at the slide's edge reach past it, or start before 0).
        sy, sx = max(0, -y0), max(0, -x0)
        ey = min(labels.shape[0], label_image.shape[0] - y0)
        ex = min(labels.shape[1], label_image.shape[1] - x0)
        if ey <= sy or ex <= sx:
            continue
        sub = lut[labels[sy:ey, sx:ex]]
        dst = label_image[y0 + sy:y0 + ey, x0 + sx:x0 + ex]
        dst[sub > 0] = sub[sub > 0]


def _cpu_s() -> float:
    """CPU seconds of this process and of its finished child processes (``os.times``)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def _versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for d in ("zeroclick", "torch", "monai", "openslide-python", "openslide-bin", "tifffile", "imagecodecs",
              "scikit-image", "scipy", "numpy"):
        try:
            out[d] = importlib_metadata.version(d)
        except importlib_metadata.PackageNotFoundError:
            out[d] = None
    return out


def _provenance(meta, engine_obj, stains, dev, grid, timings, workers, batch_size) -> dict[str, Any]:
    prov: dict[str, Any] = {
        "slide": meta.to_dict(),
        "engine": getattr(engine_obj, "name", None),
        "weights": getattr(engine_obj, "weights_info", None),
        "stains": stains.to_dict() if stains else None,
        "device": str(dev),
        "grid": {"target_mpp": grid.target_mpp, "tile_px": grid.tile_px, "overlap_px": grid.overlap_px,
                 "level": grid.level, "read_px": grid.read_px},
        "workers": workers,
        "batch_size": batch_size,
        "timings_s": {k: round(v, 4) for k, v in timings.items()},
        "versions": _versions(),
        "python": platform.python_version(),
    }
    params = getattr(engine_obj, "params", None)
    if params is not None and hasattr(params, "__dataclass_fields__"):
        prov["engine_params"] = {k: getattr(params, k) for k in params.__dataclass_fields__}
    return prov


def _write(out_dir, result: HistologyResult, sl: Slide, tissue: TissueMask, grid: TileGrid, thumb, thumb_ds,
           mpp0) -> HistologyResult:
    import dataclasses

    from zeroclick.pipelines.histology.outputs import write_outputs, write_result

    nuclei = result.nuclei.data if result.nuclei is not None else np.zeros((0, len(NUCLEUS_COLUMNS)))
    tiles = result.tiles.data if result.tiles is not None else np.zeros((0, 13))
    meta = {"result": {k: v for k, v in result.to_dict().items() if k != "provenance"},
            **result.provenance}
    outputs = write_outputs(
        out_dir, result, nuclei=nuclei, tiles=tiles, density=density_grid(grid, tiles),
        tissue_polygons=tissue.polygons(), thumb=thumb, thumb_ds=thumb_ds,
        core_px0=grid.stride_px * grid.scale0, mpp0=mpp0, metadata=meta,
    )
    result = dataclasses.replace(result, outputs=outputs)
    write_result(out_dir, result)
    return result
