"""The local runner: manifest, failure isolation, resume, atomic outputs, shards, worker processes, CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cohort_fakes import FAKE, make_cohort, tree_bytes

from zeroclick.pipelines.cohort import merge_manifests, run_cohort

MANIFEST_KEYS = {"id", "status", "outputs", "seconds", "weights_id", "version", "error"}


def _manifest(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_one_corrupt_study_is_a_failed_row_and_the_rest_finish(tmp_path):
    inputs = make_cohort(tmp_path / "in", 5, corrupt=(2,))
    run = run_cohort(FAKE, [inputs], tmp_path / "out")
    rows = _manifest(tmp_path / "out" / "manifest.jsonl")
    assert [r["id"] for r in rows] == [f"study-{i:02d}.txt" for i in range(5)]
    assert all(MANIFEST_KEYS <= set(r) for r in rows)
    assert [r["status"] for r in rows] == ["ok", "ok", "failed", "ok", "ok"]
    assert rows[2]["error"] == "InvalidInputError: the study has no readable images"
    assert rows[2]["outputs"] == [] and not (tmp_path / "out" / "study-02.txt").exists()
    assert rows[0]["outputs"] == ["study-00.txt/masks/labels.bin", "study-00.txt/report.json"]
    assert rows[0]["weights_id"] == "fake-weights:sha256:0000" and rows[0]["version"] == "fake-1.0"
    assert json.loads((tmp_path / "out" / "study-03.txt" / "report.json").read_text())["n_chars"] == len(
        (inputs / "study-03.txt").read_text())
    assert (run.n_ok, run.n_failed) == (4, 1)
    assert not list((tmp_path / "out" / ".partial").iterdir())  # no temporary folder left behind


def test_a_killed_runs_temporary_folders_are_cleared_for_own_units_only(tmp_path):
    inputs = make_cohort(tmp_path / "in", 2)
    partial = tmp_path / "out" / ".partial"
    for name in ("study-00.txt~stale", "study-00.txt.other-shard~busy"):
        (partial / name).mkdir(parents=True)
        (partial / name / "half.bin").write_bytes(b"x")
    run_cohort(FAKE, [inputs], tmp_path / "out")
    assert sorted(p.name for p in partial.iterdir()) == ["study-00.txt.other-shard~busy"]


def test_models_are_loaded_once_per_worker(tmp_path):
    inputs = make_cohort(tmp_path / "in", 4)
    run = run_cohort(FAKE, [inputs], tmp_path / "out")
    assert len({r.summary["load_token"] for r in run.rows}) == 1


def test_resume_skips_done_units_and_reruns_failed_changed_or_deleted(tmp_path, monkeypatch):
    inputs = make_cohort(tmp_path / "in", 4, corrupt=(1,))
    out = tmp_path / "out"
    first = run_cohort(FAKE, [inputs], out)
    (inputs / "study-01.txt").write_text("repaired")
    resumed = run_cohort(FAKE, [inputs], out, resume=True)
    assert resumed.skipped == ("study-00.txt", "study-02.txt", "study-03.txt")
    assert [r.status for r in resumed.rows] == ["ok"] * 4
    assert resumed.rows[0].finished_utc == first.rows[0].finished_utc  # the earlier row, not a new run
    rows = _manifest(out / "manifest.jsonl")
    assert [r["id"] for r in rows] == [f"study-{i:02d}.txt" for i in range(4)]  # one row per unit

    (out / "study-03.txt" / "report.json").unlink()
    again = run_cohort(FAKE, [inputs], out, resume=True)
    assert again.skipped == ("study-00.txt", "study-01.txt", "study-02.txt")

    monkeypatch.setenv("COHORT_FAKE_WEIGHTS", "fake-weights:sha256:1111")
    new_weights = run_cohort(FAKE, [inputs], out, resume=True)
    assert new_weights.skipped == ()
    assert {r["weights_id"] for r in _manifest(out / "manifest.jsonl")} == {"fake-weights:sha256:1111"}


def test_without_resume_every_unit_runs_again(tmp_path):
    inputs = make_cohort(tmp_path / "in", 2)
    run_cohort(FAKE, [inputs], tmp_path / "out")
    again = run_cohort(FAKE, [inputs], tmp_path / "out")
    assert again.skipped == () and len(_manifest(tmp_path / "out" / "manifest.jsonl")) == 2


def test_a_unit_failing_half_way_publishes_nothing_and_keeps_earlier_outputs(tmp_path):
    inputs = make_cohort(tmp_path / "in", 2)
    out = tmp_path / "out"
    run_cohort(FAKE, [inputs], out)
    before = tree_bytes(out)
    (inputs / "study-01.txt").write_text("PARTIAL then failure")
    run = run_cohort(FAKE, [inputs], out)
    assert run.rows[1].status == "failed" and "half-way" in run.rows[1].error
    assert tree_bytes(out) == before  # the earlier complete outputs, not a half-written mix
    (inputs / "study-00.txt").write_text("PARTIAL again")
    fresh = run_cohort(FAKE, [inputs], tmp_path / "fresh")
    assert fresh.rows[0].status == "failed" and not (tmp_path / "fresh" / "study-00.txt").exists()


def test_shards_in_one_folder_equal_one_whole_run_and_merge(tmp_path):
    inputs = make_cohort(tmp_path / "in", 7, corrupt=(4,))
    whole = run_cohort(FAKE, [inputs], tmp_path / "whole")
    ids_per_shard = [[r.id for r in run_cohort(FAKE, [inputs], tmp_path / "sharded", shard=f"{i}/3").rows]
                     for i in range(3)]
    assert sorted(i for ids in ids_per_shard for i in ids) == [r.id for r in whole.rows]
    names = sorted(p.name for p in (tmp_path / "sharded").glob("manifest*.jsonl"))
    assert names == ["manifest.shard-0-of-3.jsonl", "manifest.shard-1-of-3.jsonl", "manifest.shard-2-of-3.jsonl"]
    merged = merge_manifests(tmp_path / "sharded")
    assert [(r.id, r.status) for r in merged] == [(r.id, r.status) for r in whole.rows]
    assert tree_bytes(tmp_path / "sharded") == tree_bytes(tmp_path / "whole")
    # a later unsharded resume sees every shard's rows
    assert len(run_cohort(FAKE, [inputs], tmp_path / "sharded", resume=True).skipped) == 6


def test_more_shards_than_units_gives_empty_shards(tmp_path):
    inputs = make_cohort(tmp_path / "in", 1)
    run = run_cohort(FAKE, [inputs], tmp_path / "out", shard="3/4")
    assert run.rows == () and (tmp_path / "out" / "manifest.shard-3-of-4.jsonl").read_text() == ""


def test_worker_processes_match_one_process_and_survive_a_crash(tmp_path):
    inputs = make_cohort(tmp_path / "in", 6, corrupt=(1,), crash=(3,))
    run = run_cohort(FAKE, [inputs], tmp_path / "out", workers=2)
    status = {r.id: r.status for r in run.rows}
    assert status == {f"study-{i:02d}.txt": ("failed" if i in (1, 3) else "ok") for i in range(6)}
    crash = run.rows[3]
    assert crash.error.startswith("WorkerDied") and "code 7" in crash.error
    assert len({r.summary["load_token"] for r in run.rows if r.ok}) <= 3  # 2 workers + 1 replacement
    assert {r.summary["pid"] for r in run.rows if r.ok} != {os.getpid()}
    (inputs / "study-03.txt").write_text("fine now")
    (inputs / "study-01.txt").write_text("fine too")
    single = run_cohort(FAKE, [inputs], tmp_path / "single")
    run_cohort(FAKE, [inputs], tmp_path / "out", workers=2, resume=True)
    assert tree_bytes(tmp_path / "out") == tree_bytes(tmp_path / "single") != {}
    assert single.n_ok == 6


def test_pipeline_that_cannot_load_is_an_error_not_failed_rows(tmp_path, monkeypatch):
    inputs = make_cohort(tmp_path / "in", 3)
    monkeypatch.setenv("COHORT_FAKE_LOAD_FAILS", "1")
    with pytest.raises(ImportError, match="pip install fake-pipeline"):
        run_cohort(FAKE, [inputs], tmp_path / "out")
    with pytest.raises(ImportError, match="pip install fake-pipeline"):
        run_cohort(FAKE, [inputs], tmp_path / "out2", workers=2)


def test_cli_exit_codes_manifest_and_json(tmp_path, run_cli, fake_kind):
    inputs = make_cohort(tmp_path / "in", 3, corrupt=(0,))
    code, out, err = run_cli("cohort", "fake", str(inputs), "--out", str(tmp_path / "out"), "--json")
    assert code == 4, err
    summary = json.loads(out)
    assert (summary["units"], summary["ok"], summary["failed"]) == (3, 2, 1)
    code, out, _ = run_cli("cohort", "fake", str(inputs), "--out", str(tmp_path / "out"), "--resume",
                           "--shard", "1/2", "--json")
    assert code == 0 and json.loads(out)["skipped"] == 1
    code, out, _ = run_cli("cohort", "merge", str(tmp_path / "out"), "--json")
    assert code == 4 and json.loads(out)["units"] == 3
    code, _, err = run_cli("cohort", "fake", str(inputs), "--out", str(tmp_path / "o"), "--shard", "2/2")
    assert code == 3 and "0 <= i < N" in err
    make_cohort(tmp_path / "bad", 2, corrupt=(0, 1))
    code, _, _ = run_cli("-q", "cohort", "fake", str(tmp_path / "bad"), "--out", str(tmp_path / "o3"))
    assert code == 3


def test_ray_is_never_imported_unless_asked():
    code = ("import sys; from zeroclick.pipelines.cli import build_parser; import zeroclick.pipelines.cohort; build_parser(); "
            "print('ray' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
