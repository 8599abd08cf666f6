"""Output folders that never mix two runs: refuse a non-empty folder, or replace it whole (issue 18).

``zeroclick cmr`` and ``zeroclick slide`` write into a fresh temporary sibling of ``--out`` and swap it in at
the end, whether the run succeeded or failed; a folder that already holds files is refused unless
``--overwrite`` is given. So a failing rerun never leaves a ``failed`` report.json beside the previous exam's
measurements.csv, run.json and masks.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from zeroclick.imaging.errors import OutputFolderError

logger = logging.getLogger(__name__)

_TMP_PREFIX = ".zeroclick-new-"
_OLD_PREFIX = ".zeroclick-old-"
#: JSON files at most this large get the temporary folder's path in their text replaced by the final one
_REBASE_MAX_BYTES = 64 << 20


def check_output_folder(out: Path, *, overwrite: bool, inputs: Sequence[str | os.PathLike[str]] = ()) -> None:
    """Raise :class:`OutputFolderError` when ``out`` is a non-empty folder (or a file) and ``overwrite`` is off,
    or when replacing it would remove an input, the current folder or the home folder (``--out`` at or above them).
    """
    if out.exists() and not out.is_dir():
        raise OutputFolderError(f"--out {out} is a file, not a folder; choose another output folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise OutputFolderError(f"--out {out} already holds files (results of an earlier run?); pass --overwrite "
                                "to replace the whole folder, or choose an empty one")
    final = out.resolve()
    for keep in (*inputs, Path.cwd(), Path.home()):
        kept = Path(keep).resolve()
        if final == kept or final in kept.parents:
            raise OutputFolderError(f"--out {out} holds {keep}, which replacing the folder would delete; choose an "
                                    "output folder outside the inputs and the current folder",
                                    code="output_folder_holds_input")


@contextmanager
def staged_output(out: str | os.PathLike[str], *, overwrite: bool) -> Iterator[Path]:
    """Yield an empty temporary sibling of ``out``; when the block ends, it replaces ``out`` whole.

    On success and on a :class:`Exception` alike the new folder is swapped in (a failed run's report is the
    result), then the exception propagates. On ``KeyboardInterrupt`` the new folder is dropped and ``out`` is
    left as it was.
    """
    final = Path(out)
    check_output_folder(final, overwrite=overwrite)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"{_TMP_PREFIX}{final.name}.", dir=final.parent))
    try:
        yield tmp
    except Exception:
        _swap(tmp, final)
        raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _swap(tmp, final)


def _swap(tmp: Path, final: Path) -> None:
    """Replace ``final`` by ``tmp`` (the old folder is renamed aside first, then removed)."""
    _rebase(tmp, str(tmp), str(final))
    old = None
    if final.exists():
        old = Path(tempfile.mkdtemp(prefix=f"{_OLD_PREFIX}{final.name}.", dir=final.parent))
        os.rmdir(old)
        os.rename(final, old)
    try:
        os.rename(tmp, final)
    except OSError:
        if old is not None:  # put the previous results back rather than leave nothing
            os.rename(old, final)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    logger.debug("output folder replaced whole")


def _rebase(folder: Path, old: str, new: str) -> None:
    """Replace the temporary folder's path by the final one in the JSON files that record output paths."""
    for path in folder.rglob("*.json"):
        if not path.is_file() or path.stat().st_size > _REBASE_MAX_BYTES:
            continue
        text = path.read_text(errors="surrogateescape")
        if old in text:
            path.write_text(text.replace(old, new), errors="surrogateescape")


def rebase_text(text: str, tmp: Path, final: str | os.PathLike[str]) -> str:
    """``text`` with the temporary folder's path replaced by the final one (for JSON printed to stdout)."""
    return text.replace(str(tmp), str(Path(final)))
