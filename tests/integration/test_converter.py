"""s3e-convert on tiny trained models: every precision, GPU check, faithfulness, bundle safety."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pytest
import tensorflow as tf

from converter import build
from converter.build import ConversionError, Options, convert, published_entry
from converter.cli import run as convert_cli
from converter.export import Published
from converter.gpu import check_model, check_ops
from converter.tflite_model import OpInfo
from edge.analysis.bundle import BundleError, load_bundle
from models.cli import run as train_cli


@pytest.fixture(scope="module")
def tiny_models(chest_small: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tiny") / "models"
    for model in ("captioner", "segmenter", "vae", "embedder", "domain"):
        args = ["fit", model, "--data", str(chest_small), "--out", str(out), "--max-steps", "2"]
        assert train_cli(args) == 0
    return out


def _opts(models: Path, precision: str, out: Path, data: Path, **kw: object) -> Options:
    return Options(
        models=models,
        precision=precision,
        out=out,
        calibration=data,
        eval_data=data,
        calibration_n=8,
        eval_n=12,
        progress=False,
        **kw,
    )  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def float32_bundle(
    tiny_models: Path, chest_small: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, dict[str, Any]]:
    """One float32 conversion with its ONNX models, shared by the tests that read it (each
    works on a copy when it changes files)."""
    out = tmp_path_factory.mktemp("float32") / "b"
    doc = convert(_opts(tiny_models, "float32", out, chest_small, accept_drop=True, onnx=True))
    return out, doc


@pytest.mark.parametrize(
    ("precision", "quantized_type"),
    [("float32", None), ("float16", "FLOAT16"), ("dynamic", "INT8"), ("int8", "INT8")],
)
def test_every_precision_converts_and_describes_itself(
    tiny_models: Path,
    chest_small: Path,
    tmp_path: Path,
    float32_bundle: tuple[Path, dict[str, Any]],
    precision: str,
    quantized_type: str | None,
) -> None:
    if precision == "float32":
        out, doc = float32_bundle
    else:
        out = tmp_path / f"b-{precision}"
        # the tiny models are barely trained: their task metrics are noise, so drops are accepted
        doc = convert(_opts(tiny_models, precision, out, chest_small, accept_drop=True))
    assert set(doc["models"]) == {
        "captioner_encoder",
        "captioner_step",
        "segmenter",
        "region_projection",
        "text_encoder",
        "vae_encoder",
        "vae_decoder",
    }
    on_disk = json.loads((out / "bundle.json").read_text())
    assert on_disk["precision"] == precision and on_disk["format_version"] == 2
    assert on_disk["outputs"]["embedding"]["models"] == ["captioner_encoder", "region_projection"]
    assert on_disk["outputs"]["embedding"]["query_models"] == ["text_encoder"]
    for name, m in on_disk["models"].items():
        assert (out / m["file"]).stat().st_size == m["bytes"]
        assert all(i["shape"][0] == 1 for i in m["inputs"]), f"{name} is not batch 1"
        assert all(o["dtype"] == "float32" for o in m["outputs"])
        if quantized_type:  # an int8 bundle keeps its recurrent step and projection float16
            kept = name in ("captioner_step", "region_projection")
            want = "FLOAT16" if precision == "int8" and kept else quantized_type
            assert m["tensor_types"].get(want, 0) > 0, (name, m["tensor_types"])
        else:
            assert set(m["tensor_types"]) <= {"FLOAT32", "INT32", "BOOL"}
    step = on_disk["models"]["captioner_step"]
    assert [i["name"] for i in step["inputs"]] == ["token_onehot", "h", "c", "regions", "keys"]
    assert [o["name"] for o in step["outputs"]] == ["logits", "h", "c", "alpha", "beta"]
    faith = on_disk["faithfulness"]
    assert {"caption", "segmentation", "embedding", "vae"} <= set(faith["device"])
    assert faith["drop_points"] and "finding_accuracy" in faith["device"]["caption"]
    assert "words_p_at_10" in faith["device"]["embedding"]
    tolerance = {"float32": 1e-5, "float16": 1e-2, "dynamic": 0.1, "int8": 0.1}[precision]
    for name, m in on_disk["models"].items():
        worst = max(e["mean_abs"] for e in m["error_vs_keras"].values())
        assert worst < tolerance, (name, m["error_vs_keras"])
    load_bundle(out)


def test_onnx_export_is_checked_and_matches_keras(
    float32_bundle: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    out = tmp_path / "b"
    shutil.copytree(float32_bundle[0], out)
    doc = float32_bundle[1]
    for name, m in doc["models"].items():
        assert m["onnx"]["opset"] >= 17 and m["onnx"]["checker"] == "ok"
        assert m["onnx"]["max_abs_error_vs_keras"] < 1e-4, name
        assert (out / m["onnx"]["file"]).exists()
    onnx_file = out / doc["models"]["segmenter"]["onnx"]["file"]
    load_bundle(out)
    onnx_file.write_bytes(onnx_file.read_bytes() + b"x")
    with pytest.raises(BundleError, match=r"segmenter\.onnx: sha256 mismatch"):
        load_bundle(out)


def test_gpu_check_flags_an_unsupported_op_and_passes_supported_ones(tmp_path: Path) -> None:
    inp = keras.Input((8,), name="x")
    top = keras.layers.Lambda(lambda t: tf.math.top_k(t, k=2).values)(inp)
    bad = keras.Model(inp, keras.layers.Lambda(lambda t: tf.math.argmax(t, axis=-1))(top))
    good = keras.Model(inp, keras.layers.Dense(4, activation="softmax")(inp))
    reports = {}
    for name, model in (("bad", bad), ("good", good)):
        conv = tf.lite.TFLiteConverter.from_keras_model(model)
        reports[name] = check_model(conv.convert())
    assert not reports["bad"].delegable
    assert sorted(p.op for p in reports["bad"].fallback) == ["ARG_MAX", "TOPK_V2"]
    assert reports["good"].delegable and reports["good"].fallback == []
    assert "gpu_compatibility.cc" in reports["good"].rules_source


def test_softmax_with_beta_other_than_one_falls_back() -> None:
    def softmax(beta: float) -> OpInfo:
        io = {"dtype": "FLOAT32", "shape": [1, 8], "constant": False}
        return OpInfo("SOFTMAX", 1, 0, {"beta": beta}, [io], [io])

    assert check_ops([softmax(1.0)]).delegable
    report = check_ops([softmax(2.0)])
    assert not report.delegable
    assert "beta = 2.0, must be 1" in report.fallback[0].reason


@pytest.mark.parametrize("name", ["chest-float16", "shapes-float16", "photos-float16"])
def test_shipped_float16_bundles_are_fully_delegable(name: str) -> None:
    bundle = load_bundle(name)
    for model, entry in bundle.doc.models.items():
        report = check_model(bundle.model_path(model).read_bytes())
        assert report.delegable, (model, report.fallback)
        assert entry.gpu["delegable"]


def test_a_tampered_bundle_file_is_refused_by_name(
    float32_bundle: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    out = tmp_path / "b"
    shutil.copytree(float32_bundle[0], out)
    victim = out / "segmenter.tflite"
    original = victim.read_bytes()
    data = bytearray(original)
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    with pytest.raises(BundleError, match=r"segmenter\.tflite: sha256 mismatch"):
        load_bundle(out)
    victim.write_bytes(original)
    load_bundle(out)
    (out / "vocab.json").unlink()
    with pytest.raises(BundleError, match=r"vocab\.json"):
        load_bundle(out)


def _leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir())


def test_a_failed_conversion_leaves_no_partial_bundle(
    tiny_models: Path, chest_small: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "bundles").mkdir()
    monkeypatch.setattr(build, "MAX_DROP_POINTS", -1000.0)  # every measured drop now "fails"
    with pytest.raises(ConversionError, match="--accept-drop"):
        convert(_opts(tiny_models, "float16", tmp_path / "bundles" / "b", chest_small))
    assert _leftovers(tmp_path / "bundles") == []
    doc = convert(
        _opts(tiny_models, "float16", tmp_path / "bundles" / "b", chest_small, accept_drop=True)
    )
    assert doc["faithfulness"]["accepted_drop"] is True
    assert _leftovers(tmp_path / "bundles") == ["b"]


def test_corrupt_weights_fail_naming_the_file(
    tiny_models: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    broken = tmp_path / "models"
    shutil.copytree(tiny_models, broken)
    (broken / "segmenter.weights.h5").write_bytes(b"not an hdf5 file")
    out = tmp_path / "bundles" / "b"
    assert (
        convert_cli(["--models", str(broken), "--precision", "float32", "--out", str(out), "-q"])
        == 1
    )
    assert "segmenter.weights.h5" in caplog.text
    assert not (tmp_path / "bundles").exists() or _leftovers(tmp_path / "bundles") == []


def test_help_explains_the_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        convert_cli(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for word in ("--precision", "float16", "--calibration", "--onnx", "--accept-drop", "GPU"):
        assert word in text


@pytest.mark.parametrize("name", ["chest-int8", "shapes-int8"])
def test_shipped_int8_bundles_stay_close_to_keras(name: str) -> None:
    bundle = load_bundle(name)
    for model, entry in bundle.doc.models.items():
        # the label head's logits are large numbers judged by label macro-F1 (guarded below)
        worst = max(e["mean_abs"] for k, e in entry.error_vs_keras.items() if k != "label_logits")
        assert np.isfinite(worst) and worst < 0.1, (model, entry.error_vs_keras)
    faith = bundle.doc.faithfulness
    assert faith is not None
    task = {k: v for k, v in faith["drop_points"].items() if "CIDEr" not in k}
    assert all(v <= 1.0 for v in task.values()), task
    over = [k for k, v in faith["drop_points"].items() if v > faith["max_drop_points"]]
    assert not over or faith["accepted_drop"] is True


def test_a_published_model_is_carried_as_it_is_and_described(tmp_path: Path) -> None:
    source = load_bundle("photos-int8").model_path("faces")
    entry = published_entry(Published("faces", source, ["boxes", "scores"]), tmp_path, 1)
    assert (tmp_path / "faces.tflite").read_bytes() == source.read_bytes()
    assert [t["name"] for t in entry["outputs"]] == ["boxes", "scores"]
    assert entry["inputs"][0]["shape"] == [1, 192, 192, 3] and entry["error_vs_keras"] == {}
    with pytest.raises(ConversionError, match="2 outputs, but the export names 1"):
        published_entry(Published("faces", source, ["boxes"]), tmp_path, 1)
