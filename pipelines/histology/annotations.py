"""Annotated nuclei tiles for validation: folder layouts that give an image, its µm/px and a true label image.

Two layouts are built in:

``monuseg``
    ``NAME.tif`` (or ``.png``) + ``NAME.xml``: Aperio ImageScope XML, one ``Region`` of ``Vertex X= Y=``
    per nucleus (image pixels), µm/px in the root's ``MicronsPerPixel`` (MoNuSeg 2018).
``instance-mask``
    ``NAME.png`` (or ``.tif``) + ``NAME_mask.txt|png|tif|npy``: an instance label image (0 background).
    ``.txt`` is the CPM challenge's ASCII format (``width height``, then one label per pixel, x fastest).
    µm/px from ``mpp.json`` (``{"NAME": 0.25, ...}``, ``"*"`` for all) or, failing that, from a
    CPM-style ``README*.txt`` table of ``NAME.png  40x`` lines (20x = 0.5, 40x = 0.25 µm/px). A mask whose
    shape does not fit its image is swapped with the unused mask that fits (CPM-15's image04 and
    image05 masks are swapped in some copies), and a warning says so.

To add another layout, write a function ``load(folder) -> list[NucleiCase]`` and a test
``detect(folder) -> bool`` and register them: ``register_layout(Layout("mine", detect, load))``.
Layouts are tried in registration order; ``layout=`` (``--layout``) picks one by name.

File names are only ever matched among the files listed in the folder given by the user (never built
from annotation contents).
"""

from __future__ import annotations

import json
import logging
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from skimage.draw import polygon as fill_polygon

from zeroclick.imaging.errors import InvalidInputError

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".tif", ".tiff", ".png")
MASK_SUFFIXES = (".txt", ".png", ".tif", ".tiff", ".npy")
MPP_BY_MAGNIFICATION = {20: 0.5, 40: 0.25}


@dataclass(frozen=True)
class NucleiCase:
    """One annotated tile: RGB pixels, their µm/px and the true nuclei as an instance label image."""

    name: str
    rgb: np.ndarray = field(repr=False)  # (H, W, 3) uint8
    mpp: float
    truth: np.ndarray = field(repr=False)  # (H, W) int32, 0 = background
    layout: str
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Layout:
    name: str
    detect: Callable[[Path], bool]
    load: Callable[[Path], list[NucleiCase]]


LAYOUTS: list[Layout] = []


def register_layout(layout: Layout) -> None:
    """Add a layout (tried after the built-in ones); replaces one of the same name."""
    LAYOUTS[:] = [x for x in LAYOUTS if x.name != layout.name] + [layout]


def load_cases(folder: str | Path, *, layout: str | None = None) -> tuple[str, list[NucleiCase]]:
    """The layout's name and the annotated tiles of ``folder``, sorted by name."""
    root = Path(folder)
    if not root.is_dir():
        raise InvalidInputError(f"{root} is not a folder of annotated tiles; give the folder that holds them")
    names = [x.name for x in LAYOUTS]
    if layout is not None:
        chosen = [x for x in LAYOUTS if x.name == layout]
        if not chosen:
            raise InvalidInputError(f"layout={layout!r} is not one of {', '.join(names)}")
    else:
        chosen = [x for x in LAYOUTS if x.detect(root)][:1]
        if not chosen:
            raise InvalidInputError(
                f"{root.name}: no annotated tiles found (layouts tried: {', '.join(names)}); see "
                "zeroclick.pipelines.histology.annotations for the layouts and how to add one")
    cases = sorted(chosen[0].load(root), key=lambda c: c.name)
    if not cases:
        raise InvalidInputError(f"{root.name}: the {chosen[0].name} layout found no complete tile (image + labels)")
    return chosen[0].name, cases


def read_rgb(path: Path) -> np.ndarray:
    """An image file as (H, W, 3) uint8 RGB (alpha dropped, grey repeated)."""
    if path.suffix.lower() in (".tif", ".tiff"):
        import tifffile

        arr = tifffile.imread(path)
    else:
        from PIL import Image

        with Image.open(path) as im:
            arr = np.asarray(im.convert("RGB"))
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    if arr.dtype != np.uint8:
        raise InvalidInputError(f"{path.name}: {arr.dtype} pixels; annotated tiles must be 8-bit RGB")
    return np.ascontiguousarray(arr[..., :3])


# --------------------------------------------------------------------------------------------- MoNuSeg


def _pairs(root: Path, suffixes: tuple[str, ...], label_suffix: str) -> list[tuple[Path, Path]]:
    files = {p.name: p for p in root.iterdir() if p.is_file()}
    out = []
    for name, p in sorted(files.items()):
        if not name.endswith(label_suffix):
            continue
        stem = name[: -len(label_suffix)]
        for suffix in suffixes:
            if stem + suffix in files:
                out.append((files[stem + suffix], p))
                break
    return out


def _detect_monuseg(root: Path) -> bool:
    return bool(_pairs(root, IMAGE_SUFFIXES, ".xml"))


def read_aperio_xml(path: Path, shape: tuple[int, int]) -> tuple[np.ndarray, float | None]:
    """Instance labels rasterised from an Aperio XML (later regions drawn over earlier ones) and its µm/px."""
    root = ET.parse(path).getroot()
    mpp = root.get("MicronsPerPixel")
    labels = np.zeros(shape, np.int32)
    k = 0
    for region in root.iter("Region"):
        xy = np.array([(float(v.get("X", "nan")), float(v.get("Y", "nan"))) for v in region.iter("Vertex")])
        if len(xy) < 3 or not np.isfinite(xy).all():
            continue
        rr, cc = fill_polygon(xy[:, 1], xy[:, 0], shape)
        if len(rr):
            k += 1
            labels[rr, cc] = k
    return labels, float(mpp) if mpp else None


def _load_monuseg(root: Path) -> list[NucleiCase]:
    cases = []
    for image, xml in _pairs(root, IMAGE_SUFFIXES, ".xml"):
        rgb = read_rgb(image)
        truth, mpp = read_aperio_xml(xml, rgb.shape[:2])
        if mpp is None or mpp <= 0:
            raise InvalidInputError(f"{xml.name} has no MicronsPerPixel in its root element")
        cases.append(NucleiCase(image.stem, rgb, mpp, truth, "monuseg"))
    return cases


# --------------------------------------------------------------------------------------------- instance masks


def read_label_image(path: Path) -> np.ndarray:
    """An instance label file (CPM ASCII ``.txt``, ``.npy``, 16/32-bit ``.png``/``.tif``) as int32."""
    suffix = path.suffix.lower()
    if suffix == ".txt":
        values = np.array(path.read_text().split(), dtype=np.int64)
        if len(values) < 2 or len(values) != 2 + values[0] * values[1]:
            raise InvalidInputError(f"{path.name}: expected 'width height' then width x height labels")
        width, height = int(values[0]), int(values[1])
        return values[2:].reshape(height, width).astype(np.int32)
    if suffix == ".npy":
        arr = np.load(path, allow_pickle=False)
    elif suffix in (".tif", ".tiff"):
        import tifffile

        arr = tifffile.imread(path)
    else:
        from PIL import Image

        with Image.open(path) as im:
            arr = np.asarray(im)
    if arr.ndim != 2:
        raise InvalidInputError(f"{path.name}: a label image must be 2-D, got shape {arr.shape}")
    return arr.astype(np.int32)


def _mask_pairs(root: Path) -> list[tuple[Path, Path]]:
    pairs: dict[str, tuple[Path, Path]] = {}
    for suffix in MASK_SUFFIXES:
        for image, mask in _pairs(root, IMAGE_SUFFIXES, "_mask" + suffix):
            pairs.setdefault(image.name, (image, mask))
    return [pairs[k] for k in sorted(pairs)]


def _detect_instance_mask(root: Path) -> bool:
    return bool(_mask_pairs(root))


def _mpp_table(root: Path) -> dict[str, float]:
    """µm/px per image stem from ``mpp.json``, else from a CPM-style README's magnification table."""
    table: dict[str, float] = {}
    for readme in sorted(root.glob("README*.txt")):
        for m in re.finditer(r"^\s*(\S+?)\.(?:png|tif|tiff)\s+(\d+)x\s*$", readme.read_text(errors="replace"),
                             re.MULTILINE | re.IGNORECASE):
            mag = int(m.group(2))
            if mag in MPP_BY_MAGNIFICATION:
                table[m.group(1)] = MPP_BY_MAGNIFICATION[mag]
    manifest = root / "mpp.json"
    if manifest.is_file():
        table.update({str(k): float(v) for k, v in json.loads(manifest.read_text()).items()})
    return table


def _load_instance_mask(root: Path) -> list[NucleiCase]:
    pairs = _mask_pairs(root)
    mpps = _mpp_table(root)
    images = {image.stem: read_rgb(image) for image, _ in pairs}
    masks = {image.stem: read_label_image(mask) for image, mask in pairs}
    notes: dict[str, list[str]] = {k: [] for k in images}
    # Masks that do not fit their image: take the unused one that does (swapped files).
    wrong = [k for k in images if masks[k].shape != images[k].shape[:2]]
    spare = {k: masks[k] for k in wrong}
    for k in wrong:
        fits = [j for j, m in spare.items() if m.shape == images[k].shape[:2]]
        if not fits:
            raise InvalidInputError(f"{k}: its mask is {masks[k].shape[::-1]} (w x h), the image "
                                    f"{images[k].shape[1::-1]}, and no other mask fits")
        masks[k] = spare.pop(fits[0])
        msg = f"{k}: the mask file of {fits[0]} fits this image (mask files swapped); used it"
        notes[k].append(msg)
        logger.warning(msg)
    cases = []
    for k in sorted(images):
        mpp = mpps.get(k, mpps.get("*"))
        if mpp is None:
            raise InvalidInputError(f"{k}: no µm/px known; add mpp.json ({{\"{k}\": 0.25}}) to the folder")
        cases.append(NucleiCase(k, images[k], mpp, masks[k], "instance-mask", tuple(notes[k])))
    return cases


register_layout(Layout("monuseg", _detect_monuseg, _load_monuseg))
register_layout(Layout("instance-mask", _detect_instance_mask, _load_instance_mask))
