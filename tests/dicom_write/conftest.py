"""Fixtures of the DICOM writer tests: a small MR exam, a hand-built CardiacResult, dciodvfy."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from zc_mini_exam import MiniExam, build_result, make_mini_exam  # noqa: E402


@pytest.fixture(scope="session")
def mini_exam(tmp_path_factory: pytest.TempPathFactory) -> MiniExam:
    return make_mini_exam(tmp_path_factory.mktemp("mini_exam"))


@pytest.fixture(scope="session")
def dciodvfy_errors():
    """A function running dciodvfy on one file and returning its error lines (skips without dciodvfy)."""
    exe = shutil.which("dciodvfy")
    if exe is None:
        pytest.skip("dciodvfy (Debian package dicom3tools) is not installed: `apt-get install dicom3tools`")

    def run(path: Path) -> list[str]:
        proc = subprocess.run([exe, "-new", str(path)], capture_output=True, text=True, timeout=60)
        lines = (proc.stdout + proc.stderr).splitlines()
        return [line for line in lines if line.startswith("Error")]

    return run


@pytest.fixture(scope="session")
def mini_result(mini_exam):
    return build_result(mini_exam)
