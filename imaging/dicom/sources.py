"""Turn a scan source (folder, list of paths, .zip, .tar/.tar.gz) into a list of candidate files."""

from __future__ import annotations

import os
import tarfile
import tempfile
import zipfile
from collections.abc import Iterable
from pathlib import Path

from zeroclick.imaging.errors import InvalidInputError

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


def extract_archive(path: Path, into: str) -> None:
    """Extract a .zip or .tar(.gz) safely (no absolute paths, no ``..``, no links outside ``into``)."""
    name = path.name.lower()
    try:
        if name.endswith(".zip"):
            with zipfile.ZipFile(path) as zf:
                root = os.path.realpath(into)
                for info in zf.infolist():
                    target = os.path.realpath(os.path.join(into, info.filename))
                    if not target.startswith(root + os.sep) and target != root:
                        raise InvalidInputError(f"archive member {info.filename!r} points outside the archive; "
                                                "refusing to extract it")
                zf.extractall(into)
        else:
            with tarfile.open(path) as tf:
                tf.extractall(into, filter="data")
    except (zipfile.BadZipFile, tarfile.TarError, EOFError) as exc:
        raise InvalidInputError(f"{path.name} is not a readable .zip/.tar archive ({exc}); check the file") from exc


def collect(source: str | os.PathLike | Iterable[str | os.PathLike]) -> tuple[list[str], list[tempfile.TemporaryDirectory]]:
    """Candidate file paths of ``source`` and the temporary folders that hold extracted archives.

    The caller keeps the temporary folders alive as long as it needs the files (an :class:`Exam` does).
    """
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
            extract_archive(p, tmp.name)
            paths.extend(_walk(Path(tmp.name)))
        elif p.exists():
            paths.append(str(p))
        else:
            raise InvalidInputError(f"{p} does not exist; give a folder, files, a .zip or a .tar(.gz)")
    return paths, temps
