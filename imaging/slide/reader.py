"""Tile reading for the pipelines: one tile at the target resolution, or many through worker processes.

:class:`TileReader` starts ``workers`` processes; each opens the slide itself (OpenSlide handles and
file descriptors are not shared) and works through runs of consecutive tiles. Decoded tiles come back
through a bounded queue (``prefetch`` tiles), so reading runs ahead of the engine without holding more
than ``prefetch`` tiles in memory; or, with :meth:`TileReader.map_batches`, each worker also runs the
analysis on its batches and only the (small) results come back. A tile that fails to read or decode
comes back with its error instead of pixels: the caller skips and counts it.

Decoding each slide tile once
-----------------------------
Analysis tiles overlap and do not line up with the slide's own tiles: a 1024² read at a stride of 896
touches 5 x 5 = 25 of the slide's 256² JPEG tiles for 16 tiles' worth of pixels. On the direct-tile path
(:class:`zeroclick.imaging.slide.TiffTileReader`) each process therefore keeps the slide tiles it decoded, already
reduced to the target resolution when the level is read at a whole downsample factor (PIL block mean, the
same pixels as reducing the assembled region), in a bounded least-recently-used cache, and assembles its
analysis tiles from them. Each worker walks its own band of consecutive tiles (taking over the end of
another band when its own is done), so tiles shared with the left and upper neighbours are found in its
cache: on the 20,000² benchmark slide ~13 decodes per analysis tile instead of 25.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import queue
import sys
import traceback
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from zeroclick.imaging.errors import AnalysisError, SlideUnreadableError
from zeroclick.imaging.slide.tiles import Tile, TileGrid

logger = logging.getLogger(__name__)

CACHE_MAX_MB = 96  # per process: decoded slide tiles kept for neighbouring analysis tiles (~23 MB used at 20,000² px)


@dataclass(frozen=True)
class TileRead:
    """A tile's pixels at the target resolution (RGB uint8, tile_px square) or why it has none."""

    tile: Tile
    rgb: np.ndarray | None
    error: str | None = None


@dataclass(frozen=True)
class TileBatch:
    """What :meth:`TileReader.map_batches` yields: the tiles read, the function's result for them, and
    the tiles of the batch that could not be read (with their errors)."""

    tiles: tuple[Tile, ...]
    result: Any
    failed: tuple[TileRead, ...] = ()


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


class CachedTileAssembler:
    """Analysis tiles assembled from a cache of decoded (and reduced) slide tiles; see the module notes.

    Gives the same pixels as :func:`read_tile` (tested), or defers to it where it cannot: no direct-tile
    path, a non-integer downsample, or a tile origin off the reduction grid.

    Parameters
    ----------
    slide
        An open :class:`zeroclick.imaging.slide.Slide`.
    grid
        The analysis tiles.
    max_mb
        Bound on the decoded pixels kept.
    scaled_jpeg
        Decode YCbCr JPEG tiles straight at the reduced size (libjpeg-turbo DCT scaling, see
        :meth:`zeroclick.imaging.slide.TiffTileReader.decode_tile_scaled`) instead of decoding them whole and
        averaging blocks: ~25% less reading CPU (8.7 vs 11.8 ms per 512² analysis tile of the 20,000²
        benchmark slide here); pixels within ~1 grey level on average of the block
        mean, so no longer identical to :func:`read_tile`. Checked on one tile when the cache is built.
    """

    def __init__(self, slide, grid: TileGrid, *, max_mb: float = CACHE_MAX_MB, scaled_jpeg: bool = False) -> None:
        self.slide = slide
        self.grid = grid
        fast = slide.fast_reader if slide.meta.fast_path else None
        self.factor = grid.read_px // grid.tile_px if grid.read_px % grid.tile_px == 0 else 0
        lay = fast.levels[grid.level] if fast is not None else None
        self.enabled = bool(
            lay is not None and self.factor >= 1 and lay.tile_w % self.factor == 0 and lay.tile_h % self.factor == 0
        )
        self._fast = fast
        self._cache: OrderedDict[tuple[int, int], np.ndarray] = OrderedDict()
        self.capacity = 0
        if lay is not None and self.enabled:
            tile_bytes = 3 * (lay.tile_w // self.factor) * (lay.tile_h // self.factor)
            # Enough for one row of analysis tiles across the slide (vertical reuse), within max_mb.
            rows = -(-grid.read_px // lay.tile_h) + 1
            self.capacity = max(64, min(lay.tiles_across * rows, int(max_mb * 2**20 // tile_bytes)))
        self.lay = lay
        self.decoded = 0  # slide tiles decoded (cache misses)
        self.requested = 0
        self.scaled = bool(scaled_jpeg and fast is not None and self.enabled
                           and self.factor in fast.scaled_jpeg_factors(grid.level) and self._scaled_decode_agrees())

    def _scaled_decode_agrees(self, max_mean_diff: float = 3.0) -> bool:
        """Compare scaled decoding with decode + block mean on one full tile near the level's centre."""
        lay, fast = self.lay, self._fast
        assert lay is not None and fast is not None  # only called when enabled
        tx, ty = max(0, lay.tiles_across // 2 - 1), max(0, lay.tiles_down // 2 - 1)
        try:
            exact = np.asarray(Image.fromarray(fast.decode_tile(self.grid.level, tx, ty)).reduce(self.factor))
            scaled = fast.decode_tile_scaled(self.grid.level, tx, ty, self.factor)
        except SlideUnreadableError:
            return False
        diff = float(np.abs(exact.astype(np.int16) - scaled).mean())
        if diff > max_mean_diff:
            logger.info("scaled JPEG decoding differs by %.1f grey levels on average; decoding tiles whole", diff)
        return diff <= max_mean_diff

    def read(self, tile: Tile) -> np.ndarray:
        """The tile's RGB pixels at the target resolution (``tile_px`` square)."""
        x, y = self.grid.level_origin(tile)
        ds = self.grid.level_downsample
        lx, ly = int(round(x / ds)), int(round(y / ds))
        f, lay = self.factor, self.lay
        if lay is None or not self.enabled or lx % f or ly % f:
            return read_tile(self.slide, self.grid, tile, fast=self.slide.meta.fast_path)
        size = self.grid.tile_px
        tw, th = lay.tile_w // f, lay.tile_h // f
        # Work in reduced coordinates: the region is [rx, rx + size) x [ry, ry + size).
        rx, ry = lx // f, ly // f
        out = np.full((size, size, 3), 255, np.uint8)
        w_red, h_red = -(-lay.width // f), -(-lay.height // f)
        x0, y0 = max(0, rx), max(0, ry)
        x1, y1 = min(w_red, rx + size), min(h_red, ry + size)
        for ty in range(y0 // th, (y1 - 1) // th + 1) if y1 > y0 else ():
            for tx in range(x0 // tw, (x1 - 1) // tw + 1) if x1 > x0 else ():
                t = self._tile(tx, ty)
                sx0, sy0 = max(x0, tx * tw), max(y0, ty * th)
                sx1, sy1 = min(x1, (tx + 1) * tw), min(y1, (ty + 1) * th)
                out[sy0 - ry : sy1 - ry, sx0 - rx : sx1 - rx] = t[sy0 - ty * th : sy1 - ty * th,
                                                                   sx0 - tx * tw : sx1 - tx * tw]
        return out

    def _tile(self, tx: int, ty: int) -> np.ndarray:
        self.requested += 1
        key = (tx, ty)
        hit = self._cache.get(key)
        if hit is not None:
            self._cache.move_to_end(key)
            return hit
        lay, fast = self.lay, self._fast
        assert lay is not None and fast is not None  # only called when enabled
        self.decoded += 1
        valid_w, valid_h = lay.width - tx * lay.tile_w, lay.height - ty * lay.tile_h
        if self.scaled and valid_w >= lay.tile_w and valid_h >= lay.tile_h:
            arr = fast.decode_tile_scaled(self.grid.level, tx, ty, self.factor)
            self._remember(key, arr)
            return arr
        arr = fast.decode_tile(self.grid.level, tx, ty)  # CorruptTileError propagates
        # Outside the level is white, as in read_region (edge tiles are padded by the encoder).
        if valid_w < lay.tile_w or valid_h < lay.tile_h:
            arr = arr.copy()
            arr[max(0, valid_h):] = 255
            arr[:, max(0, valid_w):] = 255
        if self.factor > 1:
            arr = np.asarray(Image.fromarray(np.ascontiguousarray(arr)).reduce(self.factor))
        self._remember(key, arr)
        return arr

    def _remember(self, key: tuple[int, int], arr: np.ndarray) -> None:
        self._cache[key] = arr
        if len(self._cache) > self.capacity:
            self._cache.popitem(last=False)


def _bands(n_tiles: int, n_workers: int, chunk: int) -> list[list[list[int]]]:
    """Split tile indices 0..n-1 into one band of consecutive chunks per worker."""
    chunks = [list(range(i, min(n_tiles, i + chunk))) for i in range(0, n_tiles, chunk)]
    bounds = np.linspace(0, len(chunks), n_workers + 1).round().astype(int)
    return [chunks[bounds[w]:bounds[w + 1]] for w in range(n_workers)]


def _next_chunk(w: int, bands, front, back, lock) -> list[int] | None:
    """Worker ``w``'s next chunk: the front of its own band, else the back of the longest other band."""
    with lock:
        if front[w] < back[w]:
            front[w] += 1
            return bands[w][front[w] - 1]
        left = [back[v] - front[v] for v in range(len(bands))]
        v = int(np.argmax(left))
        if left[v] <= 0:
            return None
        back[v] -= 1
        return bands[v][back[v]]


def _worker(w: int, path: str, mpp: float | None, fast: bool, grid: TileGrid, bands, front, back, lock,
            results, fn: Callable | None, scaled_jpeg: bool) -> None:
    from zeroclick.imaging.slide.open import open_slide

    try:
        slide = open_slide(path, mpp=mpp, fast=fast, verify_tiles=0)
    except Exception as exc:  # report every tile it takes so the consumer never waits forever
        while (chunk := _next_chunk(w, bands, front, back, lock)) is not None:
            results.put(("reads", [(i, None, f"worker could not open the slide: {exc}") for i in chunk]))
        results.put(None)
        return
    try:
        assembler = CachedTileAssembler(slide, grid, scaled_jpeg=scaled_jpeg)
        while (chunk := _next_chunk(w, bands, front, back, lock)) is not None:
            reads: list[tuple[int, np.ndarray | None, str | None]] = []
            for i in chunk:
                try:
                    reads.append((i, assembler.read(grid.tiles[i]), None))
                except Exception as exc:
                    reads.append((i, None, f"{type(exc).__name__}: {exc}"))
            if fn is None:
                results.put(("reads", reads))
                continue
            ok = [(i, rgb) for i, rgb, _ in reads if rgb is not None]
            bad = [(i, None, err) for i, rgb, err in reads if rgb is None]
            try:
                out = fn([grid.tiles[i] for i, _ in ok], np.stack([rgb for _, rgb in ok])) if ok else None
            except Exception as exc:  # a bug in the analysis, not a bad tile: stop the run with it
                results.put(("error", f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"))
                return
            results.put(("batch", [i for i, _ in ok], out, bad))
        logger.debug("reader %d: %d slide tiles decoded for %d requested", w, assembler.decoded,
                     assembler.requested)
    finally:
        slide.close()
        results.put(None)


class TileReader:
    """Iterate over a grid's tiles, read ahead by worker processes through a bounded queue.

    Parameters
    ----------
    slide
        The open :class:`zeroclick.imaging.slide.Slide` (used directly when ``workers == 0``; its path, MPP and
        fast-path decision are passed to the workers otherwise).
    grid
        The tiles to read.
    workers
        Reader processes; 0 reads in this process (no prefetch).
    prefetch
        Largest number of decoded tiles waiting in memory.
    chunk
        Consecutive tiles a worker takes at a time (and the batch of :meth:`map_batches`).
    scaled_jpeg
        Decode YCbCr JPEG tiles at the target resolution directly (see :class:`CachedTileAssembler`).
    """

    def __init__(self, slide, grid: TileGrid, *, workers: int = 2, prefetch: int = 8, chunk: int = 4,
                 scaled_jpeg: bool = False) -> None:
        self.slide = slide
        self.grid = grid
        self.workers = max(0, int(workers))
        self.prefetch = max(1, int(prefetch))
        self.chunk = max(1, int(chunk))
        self.scaled_jpeg = bool(scaled_jpeg)

    def __len__(self) -> int:
        return len(self.grid)

    def __iter__(self) -> Iterator[TileRead]:
        if self.workers == 0 or len(self.grid) < 2:
            yield from self._serial()
            return
        for item in self._parallel(None):
            for i, rgb, err in item[1]:
                yield TileRead(self.grid.tiles[i], rgb, err)

    def map_batches(self, fn: Callable[[list[Tile], np.ndarray], Any]) -> Iterator[TileBatch]:
        """Run ``fn(tiles, rgb_batch)`` on batches of ``chunk`` consecutive tiles where they are read.

        With workers, ``fn`` runs in the worker processes (it must be picklable where processes are
        spawned rather than forked, and must not use a GPU) and only its result crosses back; with
        ``workers == 0`` it runs here. ``rgb_batch`` is (B, tile_px, tile_px, 3) uint8 of the tiles
        that could be read; the others come back in :attr:`TileBatch.failed`.
        """
        if self.workers == 0 or len(self.grid) < 2:
            assembler = CachedTileAssembler(self.slide, self.grid, scaled_jpeg=self.scaled_jpeg)
            for start in range(0, len(self.grid), self.chunk):
                reads = [self._read_one(assembler, t) for t in self.grid.tiles[start:start + self.chunk]]
                yield self._batch(fn, reads)
            return
        for item in self._parallel(fn):
            if item[0] == "reads":  # the worker could not open the slide
                yield TileBatch((), None, tuple(TileRead(self.grid.tiles[i], None, e) for i, _, e in item[1]))
                continue
            _, ok, out, bad = item
            yield TileBatch(tuple(self.grid.tiles[i] for i in ok), out,
                            tuple(TileRead(self.grid.tiles[i], None, e) for i, _, e in bad))

    @staticmethod
    def _read_one(assembler: CachedTileAssembler, tile: Tile) -> TileRead:
        try:
            return TileRead(tile, assembler.read(tile))
        except SlideUnreadableError as exc:
            return TileRead(tile, None, f"{type(exc).__name__}: {exc}")

    @staticmethod
    def _batch(fn, reads: Sequence[TileRead]) -> TileBatch:
        ok = [r for r in reads if r.rgb is not None]
        out = fn([r.tile for r in ok], np.stack([r.rgb for r in ok if r.rgb is not None])) if ok else None
        return TileBatch(tuple(r.tile for r in ok), out, tuple(r for r in reads if r.rgb is None))

    def _serial(self) -> Iterator[TileRead]:
        assembler = CachedTileAssembler(self.slide, self.grid, scaled_jpeg=self.scaled_jpeg)
        for tile in self.grid.tiles:
            yield self._read_one(assembler, tile)

    def _parallel(self, fn) -> Iterator[tuple]:
        ctx: Any = mp.get_context("fork" if sys.platform.startswith("linux") else "spawn")
        n_workers = min(self.workers, len(self.grid))
        bands = _bands(len(self.grid), n_workers, self.chunk)
        lock = ctx.Lock()
        front = ctx.Array("i", [0] * n_workers, lock=False)
        back = ctx.Array("i", [len(b) for b in bands], lock=False)
        # The queue holds whole chunks: bound it so at most ~prefetch decoded tiles wait.
        results = ctx.Queue(maxsize=max(1, self.prefetch // self.chunk))
        meta = self.slide.meta
        mpp = meta.mpp_x if meta.mpp_source == "user" else None
        procs = [
            ctx.Process(target=_worker, args=(w, meta.path, mpp, meta.fast_path, self.grid, bands, front, back,
                                              lock, results, fn, self.scaled_jpeg), daemon=True)
            for w in range(n_workers)
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
                if item[0] == "error":
                    raise AnalysisError(f"the analysis failed in a reader process: {item[1]}")
                yield item
        finally:
            for p in procs:
                if p.is_alive():
                    p.terminate()
            for p in procs:
                p.join(timeout=5)
            results.close()


def default_workers(*, analysis: bool = False) -> int:
    """Reader processes to use: one per available core, at most 4 when the engine runs in this process
    (it needs a core too); with ``analysis`` (the engine runs in the readers, see :meth:`TileReader.map_batches`)
    one per core, at most 16 (memory: each holds its own tile cache, <= CACHE_MAX_MB)."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        n = os.cpu_count() or 1
    return max(1, min(16 if analysis else 4, n))
