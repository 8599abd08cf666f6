"""The CI regression check: ratios vs baselines, >30% worse fails with a table, absolute numbers never judged."""

from __future__ import annotations

import json

import pytest

from zeroclick import benchmarks
from zeroclick.benchmarks import regression
from zeroclick.pipelines.commands.bench import EXIT_REGRESSED


@pytest.fixture
def fake_registry(monkeypatch):
    monkeypatch.setitem(benchmarks.REGISTRY, "fake", "fake_bench")
    monkeypatch.setitem(benchmarks.REGISTRY, "absent", "no_such_benchmark_module")
    monkeypatch.setattr(regression, "reference_seconds",
                        lambda repeats=5: {"blas_s": 0.5, "python_s": 0.5, "reference_s": 0.5})


def _config(argv, speedup=4.0, total=4.0, rate=2.5):
    return {"tolerance": 0.3, "benchmarks": {
        "fake": {"argv": argv, "metrics": {
            "speedup_vs_slow": {"kind": "ratio", "baseline": speedup},
            "stages.total_s": {"kind": "seconds", "baseline": total, "enforce": True},
            "tiles_per_s": {"kind": "rate", "baseline": rate, "enforce": True}}},
        "absent": {"argv": [], "metrics": {"x_per_s": {"kind": "rate", "baseline": 1.0}}}}}


def _statuses(record):
    return {(c["benchmark"], c["metric"]): c["status"] for c in record["checks"]}


def test_same_performance_passes_and_absent_benchmarks_are_reported(fake_registry):
    record = regression.check(_config(["--speedup", "4", "--seconds", "2"]), tolerance=0.3)
    assert _statuses(record) == {("fake", "speedup_vs_slow"): "ok", ("fake", "stages.total_s"): "ok",
                                 ("fake", "tiles_per_s"): "ok", ("absent", "x_per_s"): "unavailable"}
    seconds = next(c for c in record["checks"] if c["metric"] == "stages.total_s")
    assert seconds["raw"] == 2.0 and seconds["ratio"] == 4.0  # 2 s over a 0.5 s reference
    assert record["regressed"] == []


@pytest.mark.parametrize(("argv", "regressed"), [
    (["--speedup", "2.9"], []),  # 2.9 / 4.0: 27.5% lower, inside 30%
    (["--speedup", "2.7"], ["fake.speedup_vs_slow"]),  # 32.5% lower
    (["--seconds", "2.7"], ["fake.stages.total_s"]),  # time 35% higher; its rate only 26% lower
    (["--seconds", "3.0"], ["fake.stages.total_s", "fake.tiles_per_s"]),  # 50% slower, rate 33% lower
    (["--seconds", "2.5"], []),  # 25% slower: within tolerance
    (["--speedup", "40", "--seconds", "0.2"], []),  # faster is never a regression
])
def test_more_than_30_percent_worse_regresses(fake_registry, argv, regressed):
    record = regression.check(_config(argv), tolerance=0.3)
    assert record["regressed"] == regressed


def test_normalised_seconds_are_informational_unless_enforced(fake_registry):
    config = _config(["--seconds", "3.0"])
    for spec in config["benchmarks"]["fake"]["metrics"].values():
        spec.pop("enforce", None)
    record = regression.check(config, tolerance=0.3)
    assert record["regressed"] == []
    assert _statuses(record)[("fake", "stages.total_s")] == "worse (informational)"
    assert _statuses(record)[("fake", "tiles_per_s")] == "worse (informational)"


def test_cli_exit_code_table_and_update(fake_registry, tmp_path, run_cli):
    path = tmp_path / "baselines.json"
    path.write_text(json.dumps(_config(["--speedup", "2"])))
    code, out, err = run_cli("bench", "regression", "--baselines", str(path))
    assert code == EXIT_REGRESSED == 6  # distinct from 3 (analysis failed) and 5 (environment)
    assert "REGRESSED" in err and "speedup_vs_slow" in err and "regressed by more than 30%" in err
    assert json.loads(out)["regressed"] == ["fake.speedup_vs_slow"]
    code, _, _ = run_cli("bench", "regression", "--baselines", str(path), "--update")
    assert code == 0
    assert json.loads(path.read_text())["benchmarks"]["fake"]["metrics"]["speedup_vs_slow"]["baseline"] == 2.0
    code, _, err = run_cli("bench", "regression", "--baselines", str(path))
    assert code == 0 and "REGRESSED" not in err


def test_a_configuration_the_benchmark_no_longer_accepts_fails(fake_registry):
    record = regression.check(_config(["--no-such-option"]), tolerance=0.3)
    assert record["regressed"] == ["fake.speedup_vs_slow", "fake.stages.total_s", "fake.tiles_per_s"]
    assert "no longer accepted" in record["checks"][0]["note"]


def test_missing_weights_make_a_benchmark_unavailable_not_a_regression(fake_registry):
    record = regression.check(_config(["--no-weights"]), tolerance=0.3)
    assert record["regressed"] == []
    rows = [c for c in record["checks"] if c["benchmark"] == "fake"]
    assert {c["status"] for c in rows} == {"unavailable"} and "weights fetch" in rows[0]["note"]


def test_a_crashing_benchmark_is_a_failure(fake_registry):
    record = regression.check(_config(["--seconds", "0"]), tolerance=0.3)  # ZeroDivisionError inside
    assert record["regressed"] == ["fake.speedup_vs_slow", "fake.stages.total_s", "fake.tiles_per_s"]
    assert "ZeroDivisionError" in record["checks"][0]["note"]


def test_reference_workload_is_positive_and_combines_both_parts():
    ref = regression.reference_seconds(repeats=1)
    assert ref["blas_s"] > 0 and ref["python_s"] > 0
    assert ref["reference_s"] == pytest.approx((ref["blas_s"] * ref["python_s"]) ** 0.5)


def test_committed_baselines_name_registered_benchmarks_and_known_kinds():
    config = json.loads(regression.BASELINES.read_text())
    assert 0 < config["tolerance"] <= 0.3
    for name, bench in config["benchmarks"].items():
        assert name in benchmarks.REGISTRY
        assert all(m["kind"] in regression.KINDS for m in bench["metrics"].values())


def test_update_envelope_keeps_the_worse_value(fake_registry, tmp_path, run_cli):
    path = tmp_path / "baselines.json"
    path.write_text(json.dumps(_config(["--speedup", "5", "--seconds", "1"], speedup=3.0, total=6.0, rate=1.0)))
    code, _, _ = run_cli("bench", "regression", "--baselines", str(path), "--update", "--envelope")
    assert code == 0
    metrics = json.loads(path.read_text())["benchmarks"]["fake"]["metrics"]
    # speedup 5 > old 3 (higher is better): keep 3; time ratio 1/0.5 = 2 < old 6 (lower is better): keep 6;
    # rate 10 * 0.5 = 5 > old 1: keep 1
    assert (metrics["speedup_vs_slow"]["baseline"], metrics["stages.total_s"]["baseline"],
            metrics["tiles_per_s"]["baseline"]) == (3.0, 6.0, 1.0)
    code, _, _ = run_cli("bench", "regression", "--baselines", str(path), "--update")
    metrics = json.loads(path.read_text())["benchmarks"]["fake"]["metrics"]
    assert (metrics["speedup_vs_slow"]["baseline"], metrics["stages.total_s"]["baseline"]) == (5.0, 2.0)


def test_issue_16_committed_tolerance_fails_an_injected_30_percent_slowdown_and_passes_main(
        fake_registry, tmp_path, run_cli):
    """With the committed tolerance, a fake benchmark 30% slower than its baseline (every ratio) fails with exit
    code 6 and a JSON record naming commit, time, load and runtime; the same benchmark at its baseline passes."""
    tolerance = json.loads(regression.BASELINES.read_text())["tolerance"]
    main = {"speedup": 4.0, "seconds": 2.0}  # speedup 4; 2 s / 0.5 s reference = 4; 5 tiles/s * 0.5 s = 2.5
    config = _config([], speedup=4.0, total=4.0, rate=2.5)
    config["tolerance"] = tolerance
    path = tmp_path / "baselines.json"
    slow = {"speedup": main["speedup"] * 0.7, "seconds": main["seconds"] / 0.7}  # 30% slower
    for argv, want_code in (([f"--speedup={main['speedup']}", f"--seconds={main['seconds']}"], 0),
                            ([f"--speedup={slow['speedup']}", f"--seconds={main['seconds']}"], EXIT_REGRESSED),
                            ([f"--speedup={main['speedup']}", f"--seconds={slow['seconds']}"], EXIT_REGRESSED)):
        config["benchmarks"]["fake"]["argv"] = argv
        path.write_text(json.dumps(config))
        code, out, _err = run_cli("bench", "regression", "--baselines", str(path), "--json")
        assert code == want_code, (argv, tolerance)
        record = json.loads(out.strip().splitlines()[-1])
        assert record["context"]["utc"].endswith("Z") and len(record["context"]["load_average"]) == 3
        assert "commit" in record["context"]
        assert record["ran_with"]["fake"]["runtime_used"] == {"cine": "fake-runtime"}
        if want_code:
            assert record["regressed"]


def test_update_from_recorded_runs_takes_the_median(fake_registry, tmp_path, run_cli):
    path = tmp_path / "baselines.json"
    path.write_text(json.dumps(_config([])))
    runs = []
    for i, speedup in enumerate((3.0, 5.0, 4.0)):  # recorded runs of `bench regression --no-fail --out`
        path_i = tmp_path / f"run{i}.json"
        code, _, _ = run_cli("bench", "regression", "--baselines", str(path), "--no-fail", "--json",
                             "--only", "fake", "--out", str(path_i))
        record = json.loads(path_i.read_text())
        for c in record["checks"]:
            if c["metric"] == "speedup_vs_slow":
                c["ratio"] = speedup
        path_i.write_text(json.dumps(record, indent=2 if i == 1 else None))  # `--out` without --json indents
        runs.append(str(path_i))
    code, _, _ = run_cli("bench", "regression", "--baselines", str(path), "--update-from", *runs)
    assert code == 0
    written = json.loads(path.read_text())
    assert written["benchmarks"]["fake"]["metrics"]["speedup_vs_slow"]["baseline"] == 4.0  # median of 3, 5, 4
    assert written["benchmarks"]["fake"]["metrics"]["stages.total_s"]["baseline"] == 4.0  # 2 s / 0.5 s each run
    assert len(written["measured_on"]["runs"]) == 3 and written["measured_on"]["runs"][0]["utc"]
    (tmp_path / "not_a_run.json").write_text("no json here\n")
    code, _, err = run_cli("bench", "regression", "--baselines", str(path), "--update-from",
                           str(tmp_path / "not_a_run.json"))
    assert code == 3 and "not a recorded run" in err  # a named error, not a traceback
