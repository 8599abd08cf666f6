"""Turn a scan source (folder, list of paths, .zip, .tar/.tar.gz) into a list of candidate files."""

from __future__ import annotations

import bz2  # noqa: F401 - imported so that a missing module fails here, not inside tarfile
import lzma
import os
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Iterable
from pathlib import Path

from zeroclick.imaging.dicom.limits import Limits, check_count, default_limits
from zeroclick.imaging.errors import InvalidInputError, ResourceLimitError

ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")


def is_archive(path: Path) -> bool:
    name = path.name.lower()
    return path.is_file() and name.endswith(ARCHIVE_SUFFIXES)


def _walk(folder: Path) -> list[str]:
    out: list[str] = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        out.extend(os.path.join(root, f) for f in sorted(files) if not f.startswith("."))
    return out


_CHUNK = 1 << 20


def _expansion_error(path: Path, total: int, limits: Limits) -> ResourceLimitError | None:
    """Why ``total`` uncompressed bytes from the archive ``path`` are too many, or ``None``."""
    packed = max(path.stat().st_size, 1)
    if total > limits.max_archive_bytes:
        return ResourceLimitError(
            f"{path.name} expands to more than {limits.max_archive_bytes} bytes (ceiling max_archive_bytes); "
            "extract it yourself if it is genuine, or raise the limit (ZEROCLICK_LIMITS)", code="archive_too_large")
    if total > 64 * _CHUNK and total / packed > limits.max_archive_ratio:
        return ResourceLimitError(
            f"{path.name} expands {total / packed:.0f}x (ceiling max_archive_ratio={limits.max_archive_ratio:g}): "
            "this looks like a zip bomb; refusing to extract it", code="archive_bomb")
    return None


def _extract_zip(path: Path, into: str, limits: Limits) -> None:
    with zipfile.ZipFile(path) as zf:
        infos = zf.infolist()
        if len(infos) > limits.max_archive_members:
            raise ResourceLimitError(f"{path.name} has {len(infos)} members, more than max_archive_members="
                                     f"{limits.max_archive_members}", code="archive_too_many_members")
        declared = sum(i.file_size for i in infos)
        err = _expansion_error(path, declared, limits)
        if err is not None:
            raise err
        root = os.path.realpath(into)
        total = 0
        for info in infos:
            target = os.path.realpath(os.path.join(into, info.filename))
            if not target.startswith(root + os.sep) and target != root:
                raise InvalidInputError(f"archive member {info.filename!r} points outside the archive; "
                                        "refusing to extract it", code="archive_traversal")
            if info.is_dir():
                os.makedirs(target, exist_ok=True)
                continue
            os.makedirs(os.path.dirname(target), exist_ok=True)
            # copy by chunks and count: a member may claim a small size in its header and inflate to more
            written = 0
            with zf.open(info) as src, open(target, "wb") as dst:
                while chunk := src.read(_CHUNK):
                    total += len(chunk)
                    written += len(chunk)
                    err = _expansion_error(path, total, limits)
                    if err is None and written > info.file_size:
                        err = ResourceLimitError(f"{path.name}: member {info.filename!r} inflates past its declared "
                                                 "size; the archive is corrupt or hostile", code="archive_bomb")
                    if err is not None:
                        raise err
                    dst.write(chunk)


def _extract_tar(path: Path, into: str, limits: Limits) -> None:
    with tarfile.open(path) as tf:
        members: list[tarfile.TarInfo] = []
        total = 0
        while (member := tf.next()) is not None:  # sizes are checked as the stream is read, not after
            members.append(member)
            total += max(member.size, 0)
            if len(members) > limits.max_archive_members:
                raise ResourceLimitError(f"{path.name} has more than max_archive_members="
                                         f"{limits.max_archive_members} members", code="archive_too_many_members")
            err = _expansion_error(path, total, limits)
            if err is not None:
                raise err
        tf.extractall(into, members=members, filter="data")


def extract_archive(path: Path, into: str, *, limits: Limits | None = None) -> None:
    """Extract a .zip or .tar(.gz) safely: no absolute paths, no ``..``, no links outside ``into``, and no more
    than the archive ceilings of :class:`~zeroclick.imaging.dicom.limits.Limits` (members, bytes, ratio)."""
    limits = limits or default_limits()
    name = path.name.lower()
    try:
        if name.endswith(".zip"):
            _extract_zip(path, into, limits)
        else:
            _extract_tar(path, into, limits)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, tarfile.TarError, EOFError, zlib.error, lzma.LZMAError,
            OSError, NotImplementedError, RuntimeError) as exc:
        if isinstance(exc, tarfile.FilterError):
            raise InvalidInputError(f"{path.name}: {exc}; refusing to extract it", code="archive_traversal") from exc
        raise InvalidInputError(f"{path.name} is not a readable .zip/.tar archive ({type(exc).__name__}: {exc}); "
                                "check the file", code="bad_archive") from exc


def collect(source: str | os.PathLike | Iterable[str | os.PathLike], *, limits: Limits | None = None
            ) -> tuple[list[str], list[tempfile.TemporaryDirectory]]:
    """Candidate file paths of ``source`` and the temporary folders that hold extracted archives.

    The caller keeps the temporary folders alive as long as it needs the files (an :class:`Exam` does).
    Raises :class:`~zeroclick.imaging.errors.ResourceLimitError` past the ceilings of ``limits``.
    """
    limits = limits or default_limits()
    temps: list[tempfile.TemporaryDirectory] = []
    items = [source] if isinstance(source, (str, os.PathLike)) else list(source)
    paths: list[str] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            paths.extend(_walk(p))
        elif is_archive(p):
            tmp = tempfile.TemporaryDirectory(prefix="zeroclick-scan-")
            temps.append(tmp)
            try:
                extract_archive(p, tmp.name, limits=limits)
            except BaseException:
                tmp.cleanup()
                raise
            paths.extend(_walk(Path(tmp.name)))
        elif p.exists():
            paths.append(str(p))
        else:
            raise InvalidInputError(f"{p} does not exist; give a folder, files, a .zip or a .tar(.gz)",
                                    code="no_such_input")
        check_count(len(paths), limits)
    return paths, temps
