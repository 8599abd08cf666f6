"""Issue 13: the library installs as one package, ``zeroclick``, that a user's own modules cannot shadow.

A wheel is built from this checkout and unpacked into a fresh virtual environment (its dependencies come from
the project venv's site-packages by a path entry, so nothing is downloaded); then, from a folder that holds a
``weights.py`` and a ``benchmarks/`` package of the user's own, ``import zeroclick`` runs the cardiac pipeline
on the real ACDC patient 101.
"""

from __future__ import annotations

import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_issue_13_installed_wheel_from_a_folder_with_weights_py_and_benchmarks(tmp_path, shared_data):
    acdc = shared_data / "cmr" / "acdc"
    if not (acdc / "patient101_Info.cfg").exists():
        pytest.skip(f"{acdc} not found")
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(wheels), str(REPO)], check=True, timeout=300)
    wheel = next(wheels.glob("zeroclick-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "zeroclick/weights/manifest.json" in names and "zeroclick/imaging/engine.py" in names
    assert not any(n.split("/")[0] in ("imaging", "pipelines", "weights", "benchmarks") for n in names)

    env = tmp_path / "venv"
    venv.create(env, with_pip=False)
    python = env / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    zipfile.ZipFile(wheel).extractall(site)
    (site / "zz_project_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")  # torch, monai, ...

    user = tmp_path / "notebook"
    (user / "benchmarks").mkdir(parents=True)
    (user / "benchmarks" / "__init__.py").write_text("raise RuntimeError('the user benchmarks package was imported')\n")
    (user / "weights.py").write_text("raise RuntimeError('the user weights.py was imported')\n")
    code = (
        "import zeroclick, sys\n"
        f"assert zeroclick.__file__.startswith({str(site)!r}), zeroclick.__file__\n"
        f"r = zeroclick.cardiac.run({str(acdc)!r}, device='cpu')\n"
        "print(r.status, round(r.function.lv_ef_percent, 1), r.provenance.weights[0].weights_id)\n"
    )
    proc = subprocess.run([str(python), "-c", code], cwd=user, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    status, ef, weights_id = proc.stdout.split()
    assert status == "ok" and 20.0 < float(ef) < 40.0 and weights_id.startswith("myopari")  # manual EF 29.9 %
