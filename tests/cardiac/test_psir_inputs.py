"""Signed PSIR (GE/Philips storage) is brought to the EMIDEC/Siemens convention before the LGE network."""

from __future__ import annotations

import numpy as np
import pytest

from zeroclick.pipelines.cardiac.inputs import PSIR_ZERO_STORED, load_case


@pytest.mark.parametrize("vendor, shifted", [("ge", True), ("siemens", False)])
def test_issue_4_signed_psir_is_shifted_to_the_training_convention(tmp_path, vendor, shifted):
    synthetic = pytest.importorskip("zeroclick.imaging.synthetic.cmr")
    synthetic.generate_exam(tmp_path, n_images=synthetic.minimum_images(), vendor=vendor, seed=3)
    case = load_case(tmp_path / "dicom")
    assert case.series[-1].role == "lge" and case.lge is not None
    notes = [w for w in case.warnings if "signed PSIR" in w]
    lge = np.asarray(case.lge.array)
    if shifted:
        assert len(notes) == 1
        # air is noise about zero signal: after the shift it sits about 2048, as in EMIDEC P087 (2041-2060)
        assert lge.min() >= 0
        assert abs(float(np.median(lge[:, :4, :4])) - PSIR_ZERO_STORED) < 300
    else:
        assert not notes and lge.min() >= 0
