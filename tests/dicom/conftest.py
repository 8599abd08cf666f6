"""Fixtures for the zeroclick.imaging.dicom tests: one small pydicom-made exam per session."""

from __future__ import annotations

import shutil
from pathlib import Path

import dicom_factory
import pytest


@pytest.fixture(scope="session")
def small_exam(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[int, str]]:
    """(folder, series number -> expected class) of a 13-series exam with one series per class."""
    out = tmp_path_factory.mktemp("small_exam")
    expected = dicom_factory.make_exam(out)
    return out, expected


@pytest.fixture
def exam_copy(small_exam, tmp_path: Path) -> Path:
    """A private, writable copy of the small exam (for tests that damage files)."""
    dst = tmp_path / "exam"
    shutil.copytree(small_exam[0], dst)
    return dst
