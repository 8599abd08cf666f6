"""Inference engine: device choice, batching, streaming input, labels, precision, memory-based batch size."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from zeroclick.imaging import engine as eng
from zeroclick.imaging.engine import Engine, estimate_sample_bytes, select_device
from zeroclick.imaging.errors import DeviceError


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
    from zeroclick.imaging.volume import Volume
    from zeroclick.pipelines.cardiac.segmentation import prepare_volume

    out = {}
    for name, rel in (("acdc", "acdc/patient101_frame01.nii.gz"), ("acdc_es", "acdc/patient101_frame14.nii.gz"),
                      ("emidec", "emidec/Case_P087.nii.gz")):
        data = np.asarray(nib.load(str(shared_data / "cmr" / rel)).get_fdata())
        out[name] = prepare_volume(Volume(data.transpose(2, 1, 0), affine=np.eye(4), spacing_mm=(1, 1, 1))).inputs
    return out


@pytest.mark.gpu
def test_bf16_agrees_with_fp32_on_real_cases_gpu(shared_data: Path) -> None:
    from zeroclick.weights import store

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


# ------------------------------------------------------------------------------------------- ONNX Runtime
def _small_densenet() -> torch.nn.Module:
    from zeroclick.imaging.networks.fcdensenet import FCDenseNet

    torch.manual_seed(0)
    net = FCDenseNet(n_classes=4, down_blocks=(2, 2), up_blocks=(2, 2), bottleneck_layers=2,
                     first_conv_channels=16).eval()
    with torch.no_grad():  # non-trivial BatchNorm statistics, so the export must carry them over
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
    return net


def test_onnxruntime_runtime_matches_torch_and_caches_the_export(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    net = _small_densenet()
    x = np.random.default_rng(2).random((5, 1, 32, 32), dtype=np.float32)
    ref = Engine(device="cpu", runtime="torch", batch_size=2).predict(net, x)
    ort = Engine(device="cpu", batch_size=2, export_dir=tmp_path, runtime="onnxruntime")
    got = ort.predict(net, x)
    assert ort.info["runtime_used"] == {"FCDenseNet": "onnxruntime"}
    assert got.shape == ref.shape == (5, 4, 32, 32)
    assert float(np.abs(got - ref).max()) < 1e-5
    exported = list(tmp_path.glob("FCDenseNet-*.onnx"))
    assert len(exported) == 1
    stamp = exported[0].stat().st_mtime_ns
    again = Engine(device="cpu", batch_size=3, export_dir=tmp_path, runtime="onnxruntime")  # as a new process
    np.testing.assert_array_equal(again.predict(net, x, output="labels"), ref.argmax(1).astype(np.uint8))
    assert exported[0].stat().st_mtime_ns == stamp  # reused, not exported again
    exported[0].write_bytes(b"not an onnx graph")  # a damaged cache is exported again, not trusted or fatal
    damaged = Engine(device="cpu", export_dir=tmp_path, runtime="onnxruntime")
    np.testing.assert_allclose(damaged.predict(net, x), ref, atol=1e-5)
    assert damaged.info["runtime_used"] == {"FCDenseNet": "onnxruntime"}
    assert exported[0].stat().st_size > 1000
    with torch.no_grad():
        next(net.parameters()).add_(0.5)  # other weights -> another export, never the stale one
    Engine(device="cpu", export_dir=tmp_path, runtime="onnxruntime").predict(net, x[:1])
    assert len(list(tmp_path.glob("FCDenseNet-*.onnx"))) == 2


class _NotExportable(Scorer):
    zeroclick_onnx_export = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # numpy inside forward: the tracer cannot follow it
        return torch.from_numpy(np.ascontiguousarray(super().forward(x).numpy()))


def test_onnxruntime_falls_back_to_torch_under_auto_and_raises_when_asked_for() -> None:
    pytest.importorskip("onnxruntime")
    net = _NotExportable()
    x = _data(3)
    auto = Engine(device="cpu")
    out = auto.predict(net, x)
    np.testing.assert_allclose(out, Engine(device="cpu", runtime="torch").predict(Scorer(), x), atol=1e-6)
    used = auto.info["runtime_used"]["_NotExportable"]
    assert used.startswith("torch (") and "not used" in used  # every exported runtime failed: PyTorch, logged
    assert Engine(device="cpu").wants_onnxruntime(Scorer()) is False  # only networks that opt in
    with pytest.raises(DeviceError, match="fp32 on the CPU only"):
        Engine(device="cpu", precision="bf16", runtime="onnxruntime")
    with pytest.raises(DeviceError, match="runtime must be one of"):
        Engine(device="cpu", runtime="tensorrt")


class _Recording(Scorer):
    def __init__(self) -> None:
        super().__init__()
        self.batch_sizes: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.batch_sizes.append(int(x.shape[0]))
        return super().forward(x)


def test_small_chunks_are_grouped_into_full_batches_in_order() -> None:
    net = _Recording()
    x = _data(8)
    chunks = [x[0:1], x[1:2], x[2:4], x[4:5], x[5:8]]  # e.g. one or two slices per cardiac phase
    out = Engine(device="cpu", batch_size=3).predict(net, iter(chunks))
    assert net.batch_sizes == [3, 3, 2]
    np.testing.assert_allclose(out, Engine(device="cpu", batch_size=8).predict(Scorer(), x), atol=1e-6)


# ------------------------------------------------------------------------------------------------ OpenVINO
def _openvino() -> None:
    pytest.importorskip("openvino")
    from zeroclick.imaging.openvino_runtime import openvino_usable

    usable, why = openvino_usable()
    if not usable:
        pytest.skip(why)


def test_openvino_fp32_matches_torch_and_bf16_agrees_from_the_cached_export(tmp_path: Path) -> None:
    _openvino()
    from zeroclick.imaging.openvino_runtime import OpenVinoRunner, native_bf16

    net = _small_densenet()
    x = np.random.default_rng(3).random((5, 1, 32, 32), dtype=np.float32)
    ref = Engine(device="cpu", runtime="torch", batch_size=2).predict(net, x)
    fp32 = Engine(device="cpu", runtime="openvino", precision="fp32", batch_size=2, export_dir=tmp_path)
    np.testing.assert_allclose(fp32.predict(net, x), ref, atol=1e-4)
    assert fp32.info["runtime_used"] == {"FCDenseNet": "openvino-fp32"}
    exported = list(tmp_path.glob("FCDenseNet-*.onnx"))
    assert len(exported) == 1  # the same cached export ONNX Runtime reads
    assert (exported[0].with_suffix(".openvino-fp32.json")).is_file()  # the passed check is remembered
    if not native_bf16():
        with pytest.raises(DeviceError, match="native bf16"):
            Engine(device="cpu", runtime="openvino", precision="bf16")
        return
    bf16 = Engine(device="cpu", runtime="openvino", batch_size=2, export_dir=tmp_path)  # bf16 by default here
    assert bf16.openvino_precision == "bf16"
    got = bf16.predict(net, x)
    assert float(np.abs(got - ref).max()) < 0.05  # bf16 keeps 8 bits of mantissa
    assert float(np.mean(got.argmax(1) == ref.argmax(1))) >= 0.98
    assert bf16.info["runtime_used"] == {"FCDenseNet": "openvino-bf16"}
    stamp = exported[0].stat().st_mtime_ns

    def no_probe(*_a: object) -> None:
        raise AssertionError("the remembered check must not be run again")

    original = OpenVinoRunner._check
    OpenVinoRunner._check = no_probe  # type: ignore[method-assign]
    try:
        again = Engine(device="cpu", runtime="openvino", batch_size=3, export_dir=tmp_path)
        np.testing.assert_allclose(again.predict(net, x), got, atol=1e-6)
    finally:
        OpenVinoRunner._check = original  # type: ignore[method-assign]
    assert exported[0].stat().st_mtime_ns == stamp


def test_auto_runtime_follows_the_cpu_and_what_is_usable(monkeypatch: pytest.MonkeyPatch) -> None:
    _openvino()
    from zeroclick.imaging import openvino_runtime as ovr

    net = _small_densenet()
    monkeypatch.setattr(ovr, "native_bf16", lambda: True)
    auto = Engine(device="cpu")
    assert (auto.cpu_runtime_for(net), auto.openvino_precision) == ("openvino", "bf16")
    assert auto.cpu_runtime_for(Scorer()) == "torch"  # only networks that opt in
    assert Engine(device="cpu", precision="fp32").openvino_precision == "fp32"  # an explicit fp32 is kept
    monkeypatch.setattr(ovr, "native_bf16", lambda: False)  # e.g. a Zen 3 without AVX512_BF16
    assert Engine(device="cpu").openvino_precision == "fp32"
    monkeypatch.setattr(ovr, "openvino_usable", lambda: (False, "not installed"))
    assert Engine(device="cpu").cpu_runtime_for(net) == "onnxruntime"
    with pytest.raises(DeviceError, match="cannot run here: not installed"):
        Engine(device="cpu", runtime="openvino")


def test_a_failing_openvino_falls_back_to_onnxruntime_under_auto(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    _openvino()
    pytest.importorskip("onnxruntime")
    from zeroclick.imaging.openvino_runtime import OpenVinoRunner

    def broken(*_a: object) -> None:
        raise RuntimeError("plugin refused the graph")

    monkeypatch.setattr(OpenVinoRunner, "_open", broken)
    net = _small_densenet()
    x = np.random.default_rng(4).random((3, 1, 32, 32), dtype=np.float32)
    auto = Engine(device="cpu", export_dir=tmp_path)
    np.testing.assert_allclose(auto.predict(net, x), Engine(device="cpu", runtime="torch").predict(net, x), atol=1e-5)
    used = auto.info["runtime_used"]["FCDenseNet"]
    assert used.startswith("onnxruntime (openvino-") and "plugin refused the graph" in used
    with pytest.raises(RuntimeError, match="plugin refused"):
        Engine(device="cpu", runtime="openvino", precision="fp32").predict(net, x)


JEMALLOC = Path("/usr/lib/x86_64-linux-gnu/libjemalloc.so.2")


def test_openvino_is_refused_not_crashed_under_the_jemalloc_preload() -> None:
    """OpenVINO 2026.4 aborts (munmap_chunk) under LD_PRELOAD=jemalloc: auto must use ONNX Runtime there."""
    _openvino()
    if not JEMALLOC.exists():
        pytest.skip("Debian libjemalloc2 is not installed")
    import os
    import subprocess
    import sys

    code = (
        "import numpy as np, torch\n"
        "from zeroclick.imaging.engine import Engine\n"
        "from zeroclick.imaging.errors import DeviceError\n"
        "from zeroclick.imaging.networks.fcdensenet import FCDenseNet\n"
        "net = FCDenseNet(n_classes=4, down_blocks=(2, 2), up_blocks=(2, 2), bottleneck_layers=2,"
        " first_conv_channels=8).eval()\n"
        "auto = Engine(device='cpu')\n"
        "auto.predict(net, np.zeros((2, 1, 16, 16), np.float32))\n"
        "print(auto.info['runtime_used']['FCDenseNet'])\n"
        "try:\n"
        "    Engine(device='cpu', runtime='openvino')\n"
        "except DeviceError as exc:\n"
        "    print('refused:', exc)\n"
    )
    env = dict(os.environ, LD_PRELOAD=str(JEMALLOC), MALLOC_CONF="dirty_decay_ms:-1,muzzy_decay_ms:-1,retain:true")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.strip().splitlines()
    assert lines[0] in ("onnxruntime", "torch")
    assert lines[1].startswith("refused:") and "jemalloc" in lines[1]


@pytest.mark.slow
def test_issue_16_openvino_accuracy_gate_on_acdc_test_patients(shared_data: Path) -> None:
    """Each alternative CPU runtime against fp32 ONNX Runtime on real patients with manual labels: EF within
    0.5 points, volumes within 1%, label Dice >= 0.98, and no worse against the manual labels."""
    _openvino()
    pytest.importorskip("onnxruntime")
    from zeroclick.benchmarks import runtimes
    from zeroclick.imaging.openvino_runtime import native_bf16
    from zeroclick.weights import store

    if any(s.state != "ok" for s in store.status()):
        pytest.skip("weights not fetched: run `zeroclick weights fetch`")
    folders = [shared_data / "cmr" / "acdc_test" / f"patient{n}" for n in (101, 104)]
    if not all(f.is_dir() for f in folders):
        pytest.skip("the shared ACDC test patients are not here")
    names = ["onnxruntime", "openvino-bf16" if native_bf16() else "openvino-fp32"]
    record = runtimes.compare(folders, names)
    ref = record["runtimes"]["onnxruntime"]
    for name in names[1:]:
        got = record["runtimes"][name]
        assert got["runtime_used"] == name
        assert got["max_ef_change_points"] <= 0.5, got
        assert got["max_volume_change_percent"] <= 1.0, got
        assert got["min_dice_vs_reference"] >= 0.98, got
        assert got["gate_passed"]
        assert got["mean_dice_vs_manual"] >= ref["mean_dice_vs_manual"] - 0.005, (got, ref)
        assert got["mean_dice_vs_manual"] > 0.85  # the manual labels: a sane segmentation, not just agreement
