"""Inference engine: device choice, batching, streaming input, labels, precision, memory-based batch size."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from imaging import engine as eng
from imaging.engine import Engine, estimate_sample_bytes, select_device
from imaging.errors import DeviceError


class Scorer(torch.nn.Module):
    """Deterministic per-pixel classifier: class scores are fixed linear functions of the two channels."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(2, 3, kernel_size=1)
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]])[:, :, None, None])
            self.conv.bias.zero_()
        self.softmax = torch.nn.Softmax(dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.softmax(self.conv(x))


def _data(n: int = 7) -> np.ndarray:
    return np.random.default_rng(1).normal(size=(n, 2, 8, 8)).astype(np.float32)


def test_device_choice_and_errors() -> None:
    assert select_device("auto").type in ("cuda", "mps", "cpu")
    assert select_device("cpu") == torch.device("cpu")
    with pytest.raises(DeviceError, match="unknown device 'tpu'"):
        select_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="CUDA is not available"):
            Engine(device="cuda")
    with pytest.raises(DeviceError, match="precision 'fp16'"):
        Engine(device="cpu", precision="fp16")
    with pytest.raises(DeviceError, match="batch_size"):
        Engine(device="cpu", batch_size=0)


def test_predict_array_keeps_order_across_uneven_batches() -> None:
    x = _data(7)
    got = Engine(device="cpu", batch_size=3).predict(Scorer(), x)
    logits = np.stack([x[:, 0], x[:, 1], -x[:, 0] - x[:, 1]], axis=1)
    expected = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    assert got.shape == (7, 3, 8, 8) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_streamed_batches_and_labels_on_device() -> None:
    x = _data(9)
    engine = Engine(device="cpu", batch_size=4)
    probs = engine.predict(Scorer(), x)
    labels = engine.predict(Scorer(), (x[i : i + 2] for i in range(0, 9, 2)), output="labels")
    assert labels.shape == (9, 8, 8) and labels.dtype == np.uint8
    np.testing.assert_array_equal(labels, probs.argmax(1))


def test_channels_last_gives_the_same_answer() -> None:
    x = _data(4)
    a = Engine(device="cpu", channels_last=False).predict(Scorer(), x)
    b = Engine(device="cpu", channels_last=True).predict(Scorer(), x)
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_an_error_while_decoding_reaches_the_caller() -> None:
    def source():
        yield _data(2)
        raise OSError("truncated file")

    with pytest.raises(OSError, match="truncated file"):
        Engine(device="cpu", batch_size=2).predict(Scorer(), source())


def test_activation_estimate_and_batch_from_free_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    # Conv2d(2->3) and Softmax on 8x8: two outputs of 3*8*8 float32 values
    assert estimate_sample_bytes(Scorer(), (2, 8, 8)) == 2 * 3 * 64 * 4
    per_sample = 2 * 3 * 64 * 4
    monkeypatch.setattr(eng, "free_memory_bytes", lambda device: int(per_sample * 3 / eng.MEMORY_FRACTION["cpu"]))
    assert Engine(device="cpu").batch_size_for(Scorer(), (2, 8, 8)) == 3
    monkeypatch.setattr(eng, "free_memory_bytes", lambda device: 1 << 40)
    assert Engine(device="cpu").batch_size_for(Scorer(), (2, 8, 8)) == eng.MAX_AUTO_BATCH["cpu"]
    assert Engine(device="cpu", batch_size=5).batch_size_for(Scorer(), (2, 8, 8)) == 5


def test_bf16_agreement_report_on_cpu() -> None:
    report = Engine(device="cpu").agreement(Scorer(), _data(3))
    assert report.precision == "bf16" and report.n_voxels == 3 * 64
    assert 0.95 <= report.label_agreement_fraction <= 1.0
    assert 0.0 < report.max_abs_probability_difference < 0.05  # bf16 has 8 bits of mantissa


def _real_inputs(shared_data: Path) -> dict[str, np.ndarray]:
    nib = pytest.importorskip("nibabel")
    from imaging.volume import Volume
    from pipelines.cardiac.segmentation import prepare_volume

    out = {}
    for name, rel in (("acdc", "acdc/patient101_frame01.nii.gz"), ("acdc_es", "acdc/patient101_frame14.nii.gz"),
                      ("emidec", "emidec/Case_P087.nii.gz")):
        data = np.asarray(nib.load(str(shared_data / "cmr" / rel)).get_fdata())
        out[name] = prepare_volume(Volume(data.transpose(2, 1, 0), affine=np.eye(4), spacing_mm=(1, 1, 1))).inputs
    return out


@pytest.mark.gpu
def test_bf16_agrees_with_fp32_on_real_cases_gpu(shared_data: Path) -> None:
    from weights import store

    if any(s.state != "ok" for s in store.status()):
        pytest.skip("weights not fetched: run `zeroclick weights fetch`")
    inputs = _real_inputs(shared_data)
    gpu = Engine(device="cuda")
    assert gpu.precision.name == "bf16"
    for name, x in inputs.items():
        model = store.load_model("emidec" if name == "emidec" else "acdc").model
        report = gpu.agreement(model, x)
        assert report.label_agreement_fraction >= 0.999, (name, report)
        # fp32 on the GPU (TF32 off) matches the CPU within the parity tolerance
        cpu = Engine(device="cpu", batch_size=8).predict(model, x[:2])
        cuda32 = Engine(device="cuda", precision="fp32").predict(model, x[:2])
        assert float(np.max(np.abs(cpu - cuda32))) < 1e-4
