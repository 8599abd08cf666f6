"""Our PyTorch FC-DenseNet vs ONNX Runtime on the original ONNX files, on real preprocessed slices."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from zeroclick.imaging.engine import Engine
from zeroclick.imaging.volume import Volume
from zeroclick.pipelines.cardiac.segmentation import prepare_volume
from zeroclick.weights import store

CASES = [
    ("acdc", "acdc/patient101_frame01.nii.gz", [4, 5]),
    ("emidec", "emidec/Case_P087.nii.gz", [2, 3]),
]


def _inputs(path: Path, slices: list[int]) -> np.ndarray:
    nib = pytest.importorskip("nibabel")
    img = nib.load(str(path))
    vol = Volume(np.asarray(img.get_fdata()).transpose(2, 1, 0), affine=np.eye(4), spacing_mm=(10.0, 1.0, 1.0))
    return prepare_volume(vol, slices).inputs


@pytest.mark.slow
@pytest.mark.parametrize(("name", "relpath", "slices"), CASES)
def test_pytorch_matches_onnxruntime_fp32(name: str, relpath: str, slices: list[int], shared_data: Path,
                                          fetched_cache: Path) -> None:
    ort = pytest.importorskip("onnxruntime")
    x = _inputs(shared_data / "cmr" / relpath, slices)
    assert x.shape == (len(slices), 1, 256, 256)
    entry = store.resolve(name)
    session = ort.InferenceSession(str(store.onnx_cache_path(entry, fetched_cache)), providers=["CPUExecutionProvider"])
    expected = session.run(None, {session.get_inputs()[0].name: x})[0]
    model = store.load_model(name, cache=fetched_cache).model
    got = Engine(device="cpu", precision="fp32", batch_size=len(slices)).predict(model, x)
    assert got.shape == expected.shape == (len(slices), entry.n_classes, 256, 256)
    assert float(np.max(np.abs(got - expected))) < 1e-4
    # the slices are real hearts: every foreground class of the model appears in them
    assert set(np.unique(got.argmax(1))) >= {0, 1, 2}
