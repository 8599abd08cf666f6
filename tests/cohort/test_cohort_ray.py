"""The Ray backend on a local cluster (num_cpus=2, no dashboard), started once for the whole module."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from cohort_fakes import FAKE, make_cohort, tree_bytes

from zeroclick.pipelines.cohort import run_cohort

pytestmark = pytest.mark.distributed
ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def ray_cluster():
    here = str(Path(__file__).resolve().parent)
    pythonpath = os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH")) if p)
    # num_gpus=1 is only a schedulable resource here (no CUDA needed): it shows that actors request GPUs.
    ray.init(num_cpus=2, num_gpus=1, include_dashboard=False, logging_level="ERROR", log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": pythonpath}})
    yield
    ray.shutdown()


def test_ray_outputs_are_byte_identical_to_local_and_a_corrupt_study_fails(tmp_path, ray_cluster):
    inputs = make_cohort(tmp_path / "in", 6, corrupt=(2,))
    local = run_cohort(FAKE, [inputs], tmp_path / "local")
    distributed = run_cohort(FAKE, [inputs], tmp_path / "ray", backend="ray", workers=2, gpus_per_worker=0.5)
    assert [(r.id, r.status) for r in distributed.rows] == [(r.id, r.status) for r in local.rows]
    assert distributed.rows[2].error == "InvalidInputError: the study has no readable images"
    assert tree_bytes(tmp_path / "ray") == tree_bytes(tmp_path / "local") != {}
    assert {r.backend for r in distributed.rows} == {"ray"}
    tokens = {r.summary["load_token"] for r in distributed.rows if r.ok}
    pids = {r.summary["pid"] for r in distributed.rows if r.ok}
    assert len(tokens) == len(pids) <= 2 and os.getpid() not in pids  # each actor loaded its models once
    assert {r.summary["cuda_visible_devices"] for r in distributed.rows if r.ok} == {"0"}  # it got the GPU

    (inputs / "study-02.txt").write_text("repaired")
    resumed = run_cohort(FAKE, [inputs], tmp_path / "ray", backend="ray", workers=2, gpus_per_worker=0.5,
                         resume=True)
    assert resumed.skipped == tuple(f"study-{i:02d}.txt" for i in (0, 1, 3, 4, 5))
    assert resumed.n_ok == 6 and (tmp_path / "ray" / "study-02.txt" / "report.json").is_file()


def test_ray_actor_crash_fails_only_its_unit(tmp_path, ray_cluster):
    inputs = make_cohort(tmp_path / "in", 4, crash=(1,))
    run = run_cohort(FAKE, [inputs], tmp_path / "out", backend="ray", workers=2, gpus_per_worker=0.5)
    assert [r.status for r in run.rows] == ["ok", "failed", "ok", "ok"]
    assert run.rows[1].error.startswith("WorkerDied")


def test_real_slide_kind_on_ray_matches_local_on_its_deterministic_files(tmp_path, ray_cluster, shared_data):
    slides = tmp_path / "slides"
    slides.mkdir()
    (slides / "tiny.dcm").symlink_to(shared_data / "slides" / "highdicom_sm_image.dcm")
    (slides / "broken.svs").write_bytes(b"not a slide at all")
    local = run_cohort("slide", [slides], tmp_path / "local", device="cpu")
    distributed = run_cohort("slide", [slides], tmp_path / "ray", device="cpu", backend="ray", workers=2)
    assert [(r.id, r.status) for r in distributed.rows] == [("broken.svs", "failed"), ("tiny.dcm", "ok")]
    assert [r.outputs for r in distributed.rows] == [r.outputs for r in local.rows]

    # result.json and run_metadata.json record each run's own timings; every other file must be identical
    def canonical(root: Path) -> dict[str, bytes]:
        return {k: v for k, v in tree_bytes(root).items() if not k.endswith(("result.json", "run_metadata.json"))}

    assert canonical(tmp_path / "ray") == canonical(tmp_path / "local") != {}
