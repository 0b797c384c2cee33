"""The bundle loader refuses malformed or incomplete bundles with the file at fault named."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from core.tokens import SPECIALS, Vocabulary
from edge.analysis.bundle import BundleError, load_bundle, sha256_file


def _bundle(root: Path, doc: object) -> Path:
    root.mkdir()
    (root / "m.tflite").write_bytes(b"model")
    (root / "bundle.json").write_text(json.dumps(doc))
    return root


def well_formed(root: Path) -> dict[str, Any]:
    entry = {
        "file": "m.tflite",
        "sha256": sha256_file(root / "m.tflite"),
        "bytes": 5,
        "scheme": "float32",
        "inputs": [],
        "outputs": [],
    }
    return {
        "format_version": 2,
        "name": "b",
        "domain": "custom",
        "precision": "float32",
        "created": "2026-12-01T00:00:00+00:00",
        "models": {"m": entry},
        "preprocessing": {"size": 64, "channels": 1, "color_mode": "L", "scale": 1 / 255},
        "outputs": {"segmentation": {"models": ["m"], "settings": {"class_names": []}}},
    }


def test_a_well_formed_bundle_loads(tmp_path: Path) -> None:
    root = _bundle(tmp_path / "b", {})
    (root / "bundle.json").write_text(json.dumps(well_formed(root)))
    bundle = load_bundle(root)
    assert bundle.model_path("m") == root / "m.tflite"
    assert bundle.doc.outputs["segmentation"].models == ["m"]


def test_an_output_needing_a_model_the_bundle_lacks_is_refused(tmp_path: Path) -> None:
    root = _bundle(tmp_path / "b", {})
    doc = well_formed(root)
    doc["outputs"]["segmentation"]["models"] = ["segmenter"]
    (root / "bundle.json").write_text(json.dumps(doc))
    with pytest.raises(BundleError, match=r"outputs\.segmentation needs model 'segmenter'"):
        load_bundle(root)


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"format_version": 2, "models": {"m": {"file": "m.tflite"}}}, "name: Field required"),
        ([1, 2], "must hold a JSON object"),
        ({"format_version": 9}, "format_version 9"),
    ],
)
def test_malformed_bundle_json_is_a_bundle_error_naming_the_file(
    tmp_path: Path, doc: object, message: str
) -> None:
    root = _bundle(tmp_path / "b", doc)
    with pytest.raises(BundleError) as err:
        load_bundle(root)
    assert message in str(err.value) and "bundle.json" in str(err.value)


def test_unknown_bundle_name_lists_the_shipped_ones() -> None:
    with pytest.raises(BundleError, match="chest-int8"):
        load_bundle("no-such-bundle")


def test_decoded_words_keep_the_step_they_came_from() -> None:
    vocab = Vocabulary([*SPECIALS, "a", "red", "circle"])
    unk, end = vocab.unk_id, vocab.end_id
    words, steps = vocab.decode_positions([4, unk, 5, 6, end, 4])
    assert words == ["a", "red", "circle"] and steps == [0, 2, 3]
