"""``zeroclick bench slide``: OpenSlide vs direct-tile reading, and the whole histology pipeline.

On a generated slide (default 20,000 x 20,000 px at 0.25 µm/px, JPEG 256² tiles), in one run:

- ``openslide_tiles_per_s``: ``OpenSlide.read_region`` of level-0 256² tiles, one process;
- ``fast_tiles_per_s``: the same tiles through :class:`zeroclick.imaging.slide.TiffTileReader` (raw bytes +
  imagecodecs), one process; ``speedup_fast_vs_openslide`` is their ratio (target >= 3);
- ``pipeline_tiles_per_s``: :func:`zeroclick.pipelines.histology.run` end to end (reader processes + engine),
  counted in the same unit: level-0 256² tiles' worth of pixels read per second of the tile stage
  (target >= 70% of ``fast_tiles_per_s`` on CPU); ``pipeline_analysis_tiles_per_s`` counts the
  pipeline's own tiles (``--tile`` px at ``--target-mpp``);
- ``total_s`` and ``peak_rss_mb`` (this process and its reader processes, max over the run).

Also, to see where the time goes on a loaded or small machine (informational, not targets):
``pipeline_core_tiles_per_s`` (the pipeline's rate without its tile overlaps, which the main rate counts),
``fast_cpu_ms_per_tile`` (CPU time of the fast-path loop per level-0 tile), ``pipeline_cpu_ms_per_tile``
(CPU time of the pipeline process and its reader processes during the tile stage, per level-0 tile's
worth of pixels), and ``pipeline_stage_ms_per_tile``: one process timing the stages of the classical
engine on up to ``--stage-tiles`` analysis tiles (read = decode + reduce + assemble from the tile cache).
``pipeline_scaled_jpeg`` says whether the pipeline decoded JPEG tiles straight at its resolution
(libjpeg-turbo DCT scaling, see :func:`zeroclick.pipelines.histology.run`); the rate counts the same level-0 tiles
either way.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

DESCRIPTION = "whole-slide reading (OpenSlide vs direct tiles) and the histology pipeline on a synthetic slide"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--size", default="20000x20000", help="WIDTHxHEIGHT of the generated slide")
    parser.add_argument("--mpp", type=float, default=0.25, help="µm/px of the generated slide")
    parser.add_argument("--slide", help="benchmark this slide instead of generating one")
    parser.add_argument("--read-tiles", type=int, default=1500, help="level-0 tiles timed per reader")
    parser.add_argument("--target-mpp", type=float, default=0.5)
    parser.add_argument("--tile", type=int, default=512)
    parser.add_argument("--workers", type=int, help="pipeline reader processes (default: per core)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--no-pipeline", action="store_true", help="only the reading benchmarks")
    parser.add_argument("--workdir", help="where to write the slide and outputs (default: a temp folder)")
    parser.add_argument("--stage-tiles", type=int, default=32,
                        help="analysis tiles timed stage by stage in one process (0: skip)")


def _peak_rss_mb() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, children) / 1024.0


def _stage_breakdown(path, *, target_mpp: float, tile_px: int, n_tiles: int) -> dict[str, Any]:
    """Milliseconds per analysis tile of each stage of the classical engine, in this process."""
    from zeroclick.imaging.slide import detect_tissue, open_slide, tile_grid
    from zeroclick.imaging.slide.reader import CachedTileAssembler
    from zeroclick.pipelines.histology import estimate_stains
    from zeroclick.pipelines.histology.nuclei import ClassicalEngine, binary_open3

    with open_slide(path) as slide:
        meta = slide.meta
        tissue = detect_tissue(slide)
        grid = tile_grid(meta.dimensions, meta.level_downsamples, 0.5 * (meta.mpp_x + meta.mpp_y),
                         target_mpp=target_mpp, level=slide.best_level_for_mpp(target_mpp), tile_px=tile_px,
                         overlap_px=64, tissue=tissue)
        engine = ClassicalEngine(estimate_stains(slide, grid, tissue), grid.target_mpp)
        assembler = CachedTileAssembler(slide, grid, scaled_jpeg=True)  # as the pipeline reads by default
        # Consecutive tiles from the middle of the grid, as one reader process walks its band.
        start = max(0, len(grid) // 2 - n_tiles // 2)
        tiles = list(grid.tiles[start:start + n_tiles])
        spent = dict.fromkeys(("read", "deconvolution_smoothing", "opening", "label_split_measure"), 0.0)
        for k in range(0, len(tiles), 8):
            batch = tiles[k:k + 8]
            t = time.perf_counter()
            rgb = np.stack([assembler.read(tile) for tile in batch])
            spent["read"] += time.perf_counter() - t
            t = time.perf_counter()
            hae, mask = engine.foreground(rgb)
            spent["deconvolution_smoothing"] += time.perf_counter() - t
            t = time.perf_counter()
            mask = binary_open3(mask)
            spent["opening"] += time.perf_counter() - t
            t = time.perf_counter()
            for i, tile in enumerate(batch):
                engine.segment_tile(tile, hae[i], mask[i], grid, opened=True)
            spent["label_split_measure"] += time.perf_counter() - t
    n = max(1, len(tiles))
    out = {k: round(1000 * v / n, 2) for k, v in spent.items()}
    out["tiles"] = len(tiles)
    out["slide_tiles_decoded_per_tile"] = round(assembler.decoded / n, 2)
    out["scaled_jpeg"] = assembler.scaled
    return out


def _tissue_tiles(slide, n: int, seed: int = 0) -> list[tuple[int, int]]:
    """Level-0 tile positions on tissue (from the thumbnail), sampled without replacement."""
    from zeroclick.imaging.slide import detect_tissue

    tissue = detect_tissue(slide)
    lay = slide.fast_reader.levels[0]
    cand = [
        (tx, ty)
        for ty in range(lay.tiles_down)
        for tx in range(lay.tiles_across)
        if tissue.fraction_in(tx * lay.tile_w, ty * lay.tile_h, (tx + 1) * lay.tile_w, (ty + 1) * lay.tile_h) > 0.5
    ]
    if not cand:
        cand = [(tx, ty) for ty in range(lay.tiles_down) for tx in range(lay.tiles_across)]
    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(cand))[:n]
    return [cand[i] for i in idx]


def run(args: argparse.Namespace) -> dict[str, Any]:
    from zeroclick.imaging.slide import open_slide

    t_start = time.perf_counter()
    record: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.workdir or tmp)
        work.mkdir(parents=True, exist_ok=True)
        if args.slide:
            path = Path(args.slide)
        else:
            from zeroclick.imaging.synthetic.slide import generate_slide

            width, height = (int(v) for v in args.size.lower().split("x"))
            info = generate_slide(work / "bench.tiff", width=width, height=height, mpp=args.mpp, seed=0)
            path = info.path
            record.update(slide_size=[width, height], slide_mpp=args.mpp, generate_s=round(info.elapsed_s, 2),
                          slide_file_mb=round(info.file_size_mb, 1), truth_nuclei=info.n_nuclei)
        with open_slide(path) as slide:
            fast = slide.fast_reader
            if fast is None:
                raise SystemExit(f"{path} has no direct-tile path (not a tiled TIFF); nothing to compare")
            lay = fast.levels[0]
            tiles = _tissue_tiles(slide, args.read_tiles)
            osr = slide.openslide
            # Warm the page cache once so both readers see the same (warm) file.
            for tx, ty in tiles:
                fast.tile_bytes(0, tx, ty)
            t = time.perf_counter()
            for tx, ty in tiles:
                osr.read_region((tx * lay.tile_w, ty * lay.tile_h), 0, (lay.tile_w, lay.tile_h))
            os_s = time.perf_counter() - t
            t = time.perf_counter()
            cpu = time.process_time()
            for tx, ty in tiles:
                fast.decode_tile(0, tx, ty)
            fast_s = time.perf_counter() - t
            fast_cpu_s = time.process_time() - cpu
        record.update(
            read_tiles=len(tiles),
            tile_px=[lay.tile_w, lay.tile_h],
            openslide_tiles_per_s=round(len(tiles) / os_s, 1),
            fast_tiles_per_s=round(len(tiles) / fast_s, 1),
            speedup_fast_vs_openslide=round(os_s / fast_s, 2),
            fast_cpu_ms_per_tile=round(1000 * fast_cpu_s / len(tiles), 3),
        )
        if not args.no_pipeline:
            from zeroclick.pipelines.histology import run as run_histology

            result = run_histology(path, out_dir=work / "out", target_mpp=args.target_mpp, tile_px=args.tile,
                                   workers=args.workers, device=args.device)
            grid = result.provenance["grid"]
            tiles_s = result.provenance["timings_s"]["tiles_s"]
            native = result.tiles_analysed * (grid["read_px"] / lay.tile_w) * (grid["read_px"] / lay.tile_h)
            record.update(
                pipeline_tiles_per_s=round(native / tiles_s, 1),
                pipeline_analysis_tiles_per_s=round(result.tiles_analysed / tiles_s, 2),
                pipeline_fraction_of_fast=round(native / tiles_s / record["fast_tiles_per_s"], 3),
                # The same without the tile overlaps: each level-0 pixel of the analysed cores once.
                pipeline_core_tiles_per_s=round(native * (1 - grid["overlap_px"] / grid["tile_px"]) ** 2 / tiles_s, 1),
                pipeline_tiles=result.tiles_analysed,
                pipeline_tile=[grid["tile_px"], grid["target_mpp"], grid["level"], grid["read_px"]],
                pipeline_timings_s=result.provenance["timings_s"],
                pipeline_device=result.provenance["device"],
                pipeline_workers=result.provenance["workers"],
                pipeline_scaled_jpeg=grid.get("scaled_jpeg", False),
                nuclei_count=result.nuclei_count,
                nuclei_density_per_mm2=result.nuclei_density_per_mm2,
                pipeline_cpu_ms_per_tile=round(1000 * result.provenance["timings_s"]["tiles_cpu_s"] / max(native, 1e-9), 3),
            )
            if args.stage_tiles > 0 and result.provenance["engine"] == "classical":
                record["pipeline_stage_ms_per_tile"] = _stage_breakdown(
                    path, target_mpp=args.target_mpp, tile_px=args.tile, n_tiles=args.stage_tiles)
    record["total_s"] = round(time.perf_counter() - t_start, 2)
    record["peak_rss_mb"] = round(_peak_rss_mb(), 1)
    return record
