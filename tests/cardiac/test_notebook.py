"""Issue 13: a CardiacResult in a notebook (short repr, HTML, DataFrame row) and back from report.json."""

import json

import numpy as np
import pytest

from tests.cardiac.test_run import _case
from zeroclick.pipelines.cardiac import CardiacResult, run


@pytest.fixture(scope="module")
def result():
    case, _, _, segs = _case(with_lge=True)
    return run(case, **segs)


def _without_masks(d):
    return {k: v for k, v in d.items() if k != "masks"}


def test_report_json_round_trip(result, tmp_path):
    path = tmp_path / "report.json"
    path.write_text(result.to_json())
    back = CardiacResult.from_json(path)
    assert _without_masks(back.to_dict()) == _without_masks(result.to_dict())
    assert back.function.lv_ef_percent == result.function.lv_ef_percent
    assert back.aha.segment(7).name == "mid anterior"
    assert set(back.lge.segment_transmurality_percent) == set(result.lge.segment_transmurality_percent)
    assert all(isinstance(k, int) for k in back.lge.segment_transmurality_percent)
    assert back.masks.cine_ed is None  # pixels are not in the JSON
    assert CardiacResult.from_json(json.loads(path.read_text())).status == result.status


def _numbers(obj):
    if isinstance(obj, dict):
        for v in obj.values():
            yield from _numbers(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from _numbers(v)
    elif obj is not None and not isinstance(obj, (str, bool)):
        yield obj


def test_values_are_plain_python_numbers(result):
    import dataclasses

    values = list(_numbers(dataclasses.asdict(result.function))) + list(_numbers(dataclasses.asdict(result.aha)))
    values += list(_numbers(dataclasses.asdict(result.lge)))
    assert values and all(type(v) in (int, float) for v in values), {type(v) for v in values}
    assert not any(isinstance(v, np.generic) for v in result.measurements.values())


def test_short_repr_html_and_frame(result):
    text = repr(result)
    assert len(text) < 500 and "array" not in text
    assert f"lv_ef_percent={result.function.lv_ef_percent:.1f}" in text and "status='ok'" in text
    page = result._repr_html_()
    assert "<table>" in page and "LV EF" in page and f"{result.function.lv_ef_percent:.1f}" in page
    frame = result.to_frame()
    assert frame.shape[0] == 1
    assert frame.loc[0, "lv_ef_percent"] == pytest.approx(result.function.lv_ef_percent)
    assert frame.loc[0, "infarct_ml"] == pytest.approx(result.lge.infarct_ml)
