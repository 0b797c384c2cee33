"""The generators: deterministic, and their captions say what their meta says."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from models.cli import run
from models.data import chest, shapes
from models.data.dataset import write_dataset
from models.metrics import parse_findings, parse_objects, truth_findings


@pytest.mark.parametrize("domain", ["shapes", "chest"])
def test_same_seed_same_bytes_other_seed_other_data(domain: str, tmp_path: Path) -> None:
    a = write_dataset(domain, 12, 3, tmp_path / "a")
    b = write_dataset(domain, 12, 3, tmp_path / "b")
    c = write_dataset(domain, 12, 4, tmp_path / "c")
    for rel in ["captions.json", "meta.json", "images/000005.png", "masks/000005.png"]:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
    assert (a / "images/000005.png").read_bytes() != (c / "images/000005.png").read_bytes()


def test_shapes_captions_name_exactly_the_meta_objects() -> None:
    rng = np.random.default_rng(11)
    for _ in range(200):
        s = shapes.generate(rng, 64)
        truth = sorted((o["size"], o["colour"], o["shape"]) for o in s.meta["objects"])
        assert len(s.captions) == 3
        for caption in s.captions:
            assert sorted(parse_objects(caption).elements()) == truth, caption
        classes = {shapes.CLASS_NAMES.index(o["shape"]) for o in s.meta["objects"]}
        assert set(np.unique(s.mask)) - {0} == classes


def test_shapes_relation_matches_positions() -> None:
    rng = np.random.default_rng(5)
    for _ in range(200):
        s = shapes.generate(rng, 64)
        objs = s.meta["objects"]
        if len(objs) < 2:
            continue
        a, b = objs[0], objs[1]
        rel = "left of" if b["cell"][1] != a["cell"][1] else "above"
        if rel == "left of":
            assert a["bbox"][2] < b["bbox"][0]
        else:
            assert a["bbox"][3] < b["bbox"][1]
        assert f"{a['shape']} {rel} a " in s.captions[0]


def test_chest_captions_name_exactly_the_meta_findings() -> None:
    rng = np.random.default_rng(12)
    seen = set()
    for _ in range(300):
        s = chest.generate(rng, 64)
        truth = truth_findings(s.meta)
        seen |= {f[0] for f in truth} or {"normal"}
        for caption in s.captions:
            assert parse_findings(caption) == truth, caption
        if any(f[0] == "consolidation" for f in truth):
            assert all("pneumonia" in c for c in s.captions)
        if not truth:
            assert all("no acute finding" in c for c in s.captions)
        has_opacity = bool(truth - {("cardiomegaly",)})
        assert (s.mask == chest.CLASS_NAMES.index("opacity")).any() == has_opacity
    assert seen == {"normal", "consolidation", "nodule", "effusion", "cardiomegaly"}


def test_make_data_cli_writes_coco_captions_masks_and_synthetic_meta(tmp_path: Path) -> None:
    out = tmp_path / "chest"
    assert (
        run(["make-data", "--domain", "chest", "--n", "5", "--seed", "1", "--out", str(out)]) == 0
    )
    doc = json.loads((out / "captions.json").read_text())
    assert [im["file_name"] for im in doc["images"]] == [f"images/{i:06d}.png" for i in range(5)]
    assert len(doc["annotations"]) == 15
    meta = json.loads((out / "meta.json").read_text())
    assert "not clinical data" in meta["synthetic"]
    assert all("not clinical data" in m["synthetic"] for m in meta["images"].values())
    assert json.loads((out / "masks/classes.json").read_text()) == list(chest.CLASS_NAMES)


def test_make_data_refuses_a_non_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "keep.txt").write_text("mine")
    assert run(["make-data", "--domain", "shapes", "--n", "2", "--out", str(tmp_path / "x")]) == 1
    assert (tmp_path / "x" / "keep.txt").read_text() == "mine"
