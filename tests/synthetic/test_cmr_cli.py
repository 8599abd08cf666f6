"""``zeroclick synth cmr`` writes an exam and prints its summary as JSON."""

from __future__ import annotations

import json

from zeroclick.imaging.synthetic.cmr import minimum_images


def test_synth_cmr_cli_prints_summary(run_cli, tmp_path):
    out = tmp_path / "exam"
    code, stdout, _ = run_cli("synth", "cmr", str(out), "--images", str(minimum_images()), "--vendor", "ge",
                              "--seed", "4")
    assert code == 0
    summary = json.loads(stdout)
    assert summary["n_images"] == minimum_images() == len(list(out.rglob("*.dcm")))
    assert summary["vendor"] == "ge"
    truth = json.loads((out / "ground_truth.json").read_text())
    assert summary["truth"]["lv_ef_percent"] == truth["lv_ef_percent"]
    assert sum(s["images"] for s in summary["series"]) == summary["n_images"]
