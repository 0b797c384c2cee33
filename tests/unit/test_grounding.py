"""Grounding metrics on hand-made attention maps with known answers, and the instance
annotations the generators write (COCO instances + caption spans)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from core.tokens import tokenize
from models.data.dataset import load_dataset, write_dataset
from models.data.instances import grid_regions, rle_decode, rle_encode, spans_by_name
from models.data.sample import Span
from models.grounding import GroundingScorer, ImageTruth, assign, check, image_truth


def truth_one_object() -> ImageTruth:
    """An 8x8 grid with a 'small red circle' covering cells (1,1) and (1,2)."""
    cover = np.zeros((1, 64), np.float32)
    cover[0, [9, 10]] = 1.0
    return ImageTruth(cover, [(("small", "red", "circle"), (0,))])


def peaked(cell: int, share: float) -> np.ndarray:
    m = np.full(64, (1 - share) / 63, np.float32)
    m[cell] = share
    return m.reshape(8, 8)


def test_pointing_and_mass_on_maps_with_known_answers():
    s = GroundingScorer("shapes")
    tokens = ["a", "small", "red", "circle"]
    maps = np.stack([peaked(0, 0.9), peaked(9, 0.6), peaked(40, 0.5), peaked(10, 0.97)])
    s.add(tokens, maps, np.array([0.1, 1.0, 1.0, 1.0]), truth_one_object())
    r = s.report()
    noun, attr = r["classes"]["noun"], r["classes"]["attribute"]
    assert noun == pytest.approx(
        {"n": 1, "pointing": 1.0, "mass": 0.97 + 0.03 / 63, "chance": 2 / 64, "visual": 1.0}
    )
    assert attr["n"] == 2 and attr["pointing"] == 0.5
    assert attr["mass"] == pytest.approx(((0.6 + 0.4 / 63) + 2 * 0.5 / 63) / 2)
    assert r["non_visual"]["n"] == 1 and r["non_visual"]["visual"] == pytest.approx(0.1)
    assert r["words"]["red"]["pointing"] == 0.0
    assert check(r)["grounding.noun.pointing"]["ok"]
    assert not check(r)["grounding.attribute.pointing"]["ok"]


def test_a_word_naming_a_thing_not_there_is_counted_apart():
    s = GroundingScorer("shapes")
    maps = np.stack([peaked(9, 0.9)] * 3)
    s.add(["large", "blue", "square"], maps, np.ones(3), truth_one_object())
    r = s.report()
    assert r["classes"] == {} and r["nouns_for_absent_things"] == 1


def test_phrases_assign_the_longest_match_first_and_reuse_only_free_tokens():
    truth = ImageTruth(
        np.zeros((2, 64)),
        [(("left", "pleural", "effusion"), (1,)), (("pneumonia",), (0,)), (("effusion",), (1,))],
    )
    got = assign(["left", "pleural", "effusion", "and", "pneumonia", "effusion"], truth)
    assert got == [(1,), (1,), (1,), None, (0,), (1,)]


def test_rle_round_trip_and_grid_coverage():
    rng = np.random.default_rng(0)
    mask = rng.random((40, 30)) > 0.7
    assert (rle_decode(rle_encode(mask)) == mask).all()
    full = np.zeros((1, 64, 64), np.uint8)
    full[0, :8, :16] = 255
    cells = grid_regions(full, 8)
    assert cells[0, :2].tolist() == [1.0, 1.0] and cells[0, 2:].sum() == 0


def test_category_names_and_synonyms_name_instances():
    got = spans_by_name(
        "Two dogs and a puppy near a traffic light", ["dog", "traffic light"], {"dog": ["puppy"]}
    )
    assert got == [(1, 2, "dog"), (4, 5, "dog"), (7, 9, "traffic light")]


@pytest.mark.parametrize("domain", ["shapes", "chest"])
def test_generated_sets_carry_coco_instances_and_spans_naming_them(domain: str, tmp_path: Path):
    root = write_dataset(domain, 40, 5, tmp_path / domain)
    inst = json.loads((root / "instances.json").read_text())
    assert {c["name"] for c in inst["categories"]} >= (
        {"circle", "square", "triangle"} if domain == "shapes" else {"heart", "lungs", "nodule"}
    )
    assert all(
        {"bbox", "segmentation", "category_id", "area"} <= set(a) for a in inst["annotations"]
    )
    ds = load_dataset(root, 64, 3 if domain == "shapes" else 1)
    assert ds.instances is not None and ds.grounding is not None
    named = 0
    for i in range(len(ds)):
        for caption, spans in zip(ds.captions[i], ds.grounding[i], strict=True):
            tokens = tokenize(caption)
            for s in spans or []:
                words = tokens[s.start : s.end]
                cats = {ds.instances[i][k][0] for k in s.instances}
                assert words and cats
                if domain == "shapes":
                    assert cats <= set(words) or cats & {"circle", "square", "triangle"}
                named += 1
        truth = image_truth([c for _, c in ds.instances[i]], ds.captions[i], ds.grounding[i], 8)
        assert truth.regions.shape[1] == 64 and (truth.regions.sum(1) > 0).all()
    assert named > 40


def test_user_instances_without_spans_are_grounded_by_category_name(tmp_path: Path):
    from PIL import Image

    (tmp_path / "img").mkdir()
    Image.new("RGB", (32, 32), (200, 10, 10)).save(tmp_path / "img" / "a.png")
    (tmp_path / "captions.json").write_text(
        json.dumps(
            {
                "images": [{"id": 7, "file_name": "img/a.png"}],
                "annotations": [{"image_id": 7, "caption": "a puppy on a mat"}],
            }
        )
    )
    (tmp_path / "instances.json").write_text(
        json.dumps(
            {
                "categories": [{"id": 1, "name": "dog"}],
                "annotations": [{"id": 3, "image_id": 7, "category_id": 1, "bbox": [0, 0, 16, 16]}],
            }
        )
    )
    ds = load_dataset(tmp_path, 32, 3)
    assert ds.grounding == [[None]]
    ds.ground_by_name({"dog": ["puppy"]})
    assert ds.grounding == [[[Span(1, 2, (0,))]]]
    assert ds.instances[0][0][1][:16, :16].min() == 255
