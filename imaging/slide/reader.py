"""Tile reading for the pipelines: one tile at the target resolution, or many through worker processes.

:class:`TileReader` starts ``workers`` processes; each opens the slide itself (OpenSlide handles and
file descriptors are not shared), takes tile indices from a task queue and puts decoded tiles into a
bounded queue of ``prefetch`` tiles, so reading runs ahead of the engine without holding more than
``prefetch`` tiles in memory. A tile that fails to read or decode comes back with its error instead
of pixels: the caller skips and counts it.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import queue
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from imaging.errors import SlideUnreadableError
from imaging.slide.tiles import Tile, TileGrid

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TileRead:
    """A tile's pixels at the target resolution (RGB uint8, tile_px square) or why it has none."""

    tile: Tile
    rgb: np.ndarray | None
    error: str | None = None


def read_tile(slide, grid: TileGrid, tile: Tile, *, fast: bool = True) -> np.ndarray:
    """Read one tile at the grid's target resolution (RGB uint8, ``tile_px`` square)."""
    x, y = grid.level_origin(tile)
    rgb = slide.read_region(x, y, grid.level, grid.read_px, grid.read_px, fast=fast)
    return resize_tile(rgb, grid.tile_px)


def resize_tile(rgb: np.ndarray, size: int) -> np.ndarray:
    """Downsample a square RGB tile to ``size`` (PIL block mean for whole factors, else box filter)."""
    n = rgb.shape[0]
    if n == size:
        return rgb
    img = Image.fromarray(rgb)
    if n % size == 0:
        return np.asarray(img.reduce(n // size))
    return np.asarray(img.resize((size, size), Image.Resampling.BOX))


def _worker(path: str, mpp: float | None, fast: bool, grid: TileGrid, tasks, results) -> None:
    from imaging.slide.open import open_slide

    try:
        slide = open_slide(path, mpp=mpp, fast=fast, verify_tiles=0)
    except Exception as exc:  # report once per queued tile so the consumer never waits forever
        while True:
            i = tasks.get()
            if i is None:
                results.put(None)
                return
            results.put((i, None, f"worker could not open the slide: {exc}"))
    try:
        while True:
            i = tasks.get()
            if i is None:
                break
            try:
                results.put((i, read_tile(slide, grid, grid.tiles[i], fast=fast), None))
            except Exception as exc:
                results.put((i, None, f"{type(exc).__name__}: {exc}"))
    finally:
        slide.close()
        results.put(None)


class TileReader:
    """Iterate over a grid's tiles, read ahead by worker processes through a bounded queue.

    Parameters
    ----------
    slide
        The open :class:`imaging.slide.Slide` (used directly when ``workers == 0``; its path, MPP and
        fast-path decision are passed to the workers otherwise).
    grid
        The tiles to read.
    workers
        Reader processes; 0 reads in this process (no prefetch).
    prefetch
        Largest number of decoded tiles waiting in memory.
    """

    def __init__(self, slide, grid: TileGrid, *, workers: int = 2, prefetch: int = 8) -> None:
        self.slide = slide
        self.grid = grid
        self.workers = max(0, int(workers))
        self.prefetch = max(1, int(prefetch))

    def __len__(self) -> int:
        return len(self.grid)

    def __iter__(self) -> Iterator[TileRead]:
        if self.workers == 0 or len(self.grid) < 2:
            yield from self._serial()
            return
        yield from self._parallel()

    def _serial(self) -> Iterator[TileRead]:
        fast = self.slide.meta.fast_path
        for tile in self.grid.tiles:
            try:
                yield TileRead(tile, read_tile(self.slide, self.grid, tile, fast=fast))
            except SlideUnreadableError as exc:
                yield TileRead(tile, None, f"{type(exc).__name__}: {exc}")

    def _parallel(self) -> Iterator[TileRead]:
        ctx: Any = mp.get_context("fork" if sys.platform.startswith("linux") else "spawn")
        n_workers = min(self.workers, len(self.grid))
        tasks = ctx.Queue()
        results = ctx.Queue(maxsize=self.prefetch)
        for i in range(len(self.grid)):
            tasks.put(i)
        for _ in range(n_workers):
            tasks.put(None)
        meta = self.slide.meta
        mpp = meta.mpp_x if meta.mpp_source == "user" else None
        procs = [
            ctx.Process(target=_worker, args=(meta.path, mpp, meta.fast_path, self.grid, tasks, results),
                        daemon=True)
            for _ in range(n_workers)
        ]
        for p in procs:
            p.start()
        done = 0
        try:
            while done < n_workers:
                try:
                    item = results.get(timeout=60)
                except queue.Empty:
                    if not any(p.is_alive() for p in procs):
                        raise SlideUnreadableError("tile reader processes died without finishing") from None
                    continue
                if item is None:
                    done += 1
                    continue
                i, rgb, err = item
                yield TileRead(self.grid.tiles[i], rgb, err)
        finally:
            for p in procs:
                if p.is_alive():
                    p.terminate()
            for p in procs:
                p.join(timeout=5)
            tasks.close()
            results.close()


def default_workers() -> int:
    """Reader processes to use: one per available core, at most 4 (the engine needs a core too)."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        n = os.cpu_count() or 1
    return max(1, min(4, n))
