"""Fixtures of the PACS tests: the mini exam (shared with tests/dicom_write), network-namespace runner."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "dicom_write"))
from zc_mini_exam import MiniExam, make_mini_exam  # noqa: E402


@pytest.fixture(scope="session")
def pacs_exam(tmp_path_factory: pytest.TempPathFactory) -> MiniExam:
    return make_mini_exam(tmp_path_factory.mktemp("pacs_exam"))


@pytest.fixture(scope="session")
def netns():
    """Prefix that runs a command in a private network namespace with only loopback up (skips if impossible)."""
    unshare = shutil.which("unshare")
    if unshare is None:
        pytest.skip("`unshare` (util-linux) is missing: cannot isolate the test PACS in its own network namespace")
    probe = subprocess.run([unshare, "-rn", "sh", "-c", "ip link set lo up"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip("unprivileged network namespaces are not allowed here (`unshare -rn` failed): "
                    "Orthanc 1.10 binds every interface, so it is only started inside one")
    return [unshare, "-rn", "sh", "-c", 'ip link set lo up && exec "$@"', "netns"]
