"""Pixel decoding of the images of one series, only when a volume is asked for.

Uncompressed little-endian pixel data is read straight from the file offset found while scanning
(``np.frombuffer``: ~1.75x faster than ``ds.pixel_array``, which re-parses the header; measured in
/work/shared/FACTS.md). Compressed syntaxes (deflate, RLE, JPEG baseline/lossless, JPEG-LS, JPEG 2000)
go through pydicom's pixel handlers and the pylibjpeg plugins; a missing plugin raises
:class:`~zeroclick.imaging.errors.MissingCodecError` naming the package to install.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pydicom
import pydicom.uid as uids

from zeroclick.imaging.dicom.geometry import Image
from zeroclick.imaging.errors import InvalidDicomError, MissingCodecError

logger = logging.getLogger(__name__)

NATIVE_SYNTAXES = frozenset({uids.ImplicitVRLittleEndian, uids.ExplicitVRLittleEndian})

# transfer syntax -> the package that decodes it (what to pip install when it is missing)
CODEC_PACKAGES: dict[str, str] = {
    **{ts: "pylibjpeg-libjpeg (or python-gdcm)" for ts in uids.JPEGTransferSyntaxes},
    **{ts: "pylibjpeg-libjpeg (or python-gdcm)" for ts in uids.JPEGLSTransferSyntaxes},
    **{ts: "pylibjpeg-openjpeg (or python-gdcm)" for ts in uids.JPEG2000TransferSyntaxes},
    **{ts: "pylibjpeg-rle (or numpy for pydicom's own RLE decoder)" for ts in uids.RLETransferSyntaxes},
}


_KNOWN_SYNTAXES = frozenset(uids.AllTransferSyntaxes) | frozenset(uids.PrivateTransferSyntaxes)


def known_transfer_syntax(uid: str) -> bool:
    """True when pydicom knows ``uid`` as a transfer syntax (whether or not a codec is installed)."""
    return uid in _KNOWN_SYNTAXES


def _native_dtype(bits_allocated: int, signed: bool) -> np.dtype:
    if bits_allocated == 8:
        return np.dtype(np.int8 if signed else np.uint8)
    if bits_allocated == 16:
        return np.dtype("<i2" if signed else "<u2")
    if bits_allocated == 32:
        return np.dtype("<i4" if signed else "<u4")
    raise InvalidDicomError(f"BitsAllocated={bits_allocated} is not supported for MR images; expected 8, 16 or 32")


def _read_native(im: Image, dtype: np.dtype, samples: int) -> np.ndarray:
    n = im.rows * im.cols * samples
    offset = im.pixel_offset + max(im.frame, 0) * n * dtype.itemsize
    with open(im.path, "rb") as fh:
        fh.seek(offset)
        raw = fh.read(n * dtype.itemsize)
    if len(raw) != n * dtype.itemsize:
        raise InvalidDicomError(
            f"pixel data of {im.path} is truncated ({len(raw)} of {n * dtype.itemsize} bytes); re-export the image"
        )
    arr = np.frombuffer(raw, dtype=dtype)
    return arr.reshape(im.rows, im.cols) if samples == 1 else arr.reshape(im.rows, im.cols, samples)


def _read_pydicom(path: str, transfer_syntax: str) -> np.ndarray:
    try:
        ds = pydicom.dcmread(path)
        return ds.pixel_array
    except (NotImplementedError, RuntimeError, ImportError) as exc:
        msg = str(exc).lower()
        if "plugin" in msg or "decoder" in msg or "missing" in msg or "no " in msg or isinstance(exc, ImportError):
            pkg = CODEC_PACKAGES.get(transfer_syntax, "pylibjpeg with its plugins, or python-gdcm")
            name = uids.UID(transfer_syntax).name
            raise MissingCodecError(
                f"no installed decoder for transfer syntax {transfer_syntax} ({name}); install {pkg}"
            ) from exc
        raise InvalidDicomError(f"cannot decode the pixel data of {path}: {exc}") from exc
    except (ValueError, EOFError, OSError) as exc:
        raise InvalidDicomError(f"cannot decode the pixel data of {path}: {exc}") from exc
    except Exception as exc:  # noqa: BLE001 - damaged compressed data trips decoders in many ways; name it
        raise InvalidDicomError(f"cannot decode the pixel data of {path} ({type(exc).__name__}: {exc}); the file "
                                "is damaged: re-send it", code="undecodable_pixel_data") from exc


def decode_images(
    images: Sequence[Image],
    *,
    transfer_syntax: str,
    bits_allocated: int,
    signed: bool,
    samples_per_pixel: int = 1,
    dtype: np.dtype | type = np.float32,
    workers: int | None = None,
) -> np.ndarray:
    """Decode ``images`` (rescale slope/intercept applied) into an ``[n, rows, cols]`` array of ``dtype``."""
    if not images:
        raise InvalidDicomError("no images to decode")
    rows, cols = images[0].rows, images[0].cols
    out = np.empty((len(images), rows, cols), dtype=dtype)
    native = transfer_syntax in NATIVE_SYNTAXES
    raw_dtype = _native_dtype(bits_allocated, signed) if native else None
    cache: dict[str, np.ndarray] = {}

    def pixels(im: Image) -> np.ndarray:
        if native and im.pixel_offset > 0:
            return _read_native(im, raw_dtype, samples_per_pixel)  # type: ignore[arg-type]
        if im.frame >= 0:
            arr = cache.get(im.path)
            if arr is None:
                arr = cache[im.path] = _read_pydicom(im.path, transfer_syntax)
            return arr[im.frame] if arr.ndim >= 3 and arr.shape[0] > im.frame else arr
        return _read_pydicom(im.path, transfer_syntax)

    def fill(i: int) -> None:
        im = images[i]
        arr = pixels(im)
        if samples_per_pixel > 1 and arr.ndim == 3:
            arr = arr.mean(axis=-1)
        if arr.shape != (rows, cols):
            raise InvalidDicomError(f"image {i} is {arr.shape}, expected {(rows, cols)}; the series mixes sizes")
        if im.rescale_slope != 1.0 or im.rescale_intercept != 0.0:
            out[i] = arr * np.float64(im.rescale_slope) + np.float64(im.rescale_intercept)
        else:
            out[i] = arr

    multi_frame = any(im.frame >= 0 for im in images)
    if multi_frame and not native:
        for i in range(len(images)):  # one decode per file, frames from the cache
            fill(i)
    else:
        n_workers = workers or min(8, len(images))
        with ThreadPoolExecutor(max_workers=max(1, n_workers)) as pool:
            list(pool.map(fill, range(len(images))))
    return out
