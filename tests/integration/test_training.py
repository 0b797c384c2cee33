"""Training that works on a user's data: a validation split, early stopping with the best
epoch kept, attention supervision from COCO instances (or none without them), and VAE labels
learned from a fraction of the images."""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from core.latent import LatentSpace
from models.captioner_training import fit_captioner
from models.training import EpochLoop, LoopConfig, split_indices
from models.vae_training import fit_vae


def test_early_stopping_keeps_the_best_epoch_and_stops_after_patience() -> None:
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    loop = EpochLoop(
        "t",
        LoopConfig(epochs=50, learning_rate=0.1, min_steps=0, patience=2, progress=False),
        steps_per_epoch=1,
    )
    scores = iter([0.1, 0.5, 0.9, 0.4, 0.3, 0.2, 0.95, 0.99])
    saved: list[list[np.ndarray]] = []

    def step(x: tf.Tensor) -> dict[str, tf.Tensor]:
        model.layers[0].kernel.assign_add(tf.ones((1, 1)))  # each epoch changes the weights
        return {"loss": tf.constant(1.0)}

    history = loop.run(
        lambda _: iter([(np.zeros(1),)]),
        step,
        [model],
        lambda: saved.append(model.get_weights()),
        lambda: {"score": next(scores)},
    )
    assert [h["epoch"] for h in history] == [1, 2, 3, 4, 5]  # 0.9 at 3, then 2 worse: stop
    assert [h.get("best") for h in history] == [1, 1, 1, None, None]
    assert all("val_score" in h and "lr" in h for h in history)
    np.testing.assert_allclose(model.get_weights()[0], saved[-1][0])  # epoch 3's weights


def test_the_validation_split_is_seeded_and_disjoint() -> None:
    train, val = split_indices(1000, 0.1, seed=3)
    assert len(val) == 100 and not set(train) & set(val)
    assert (split_indices(1000, 0.1, seed=3)[1] == val).all()
    assert len(split_indices(9, 0.1, 0)[1]) == 0


def user_folder(root: Path, n: int = 40, instances: bool = True) -> Path:
    """Coloured squares on grey, captioned by colour; optional COCO instances (category
    "square"), and captions that call it a "box" (a synonym) half the time."""
    rng = np.random.default_rng(0)
    (root / "img").mkdir(parents=True)
    images, anns, inst = [], [], []
    for i in range(n):
        colour = ("red", "blue")[i % 2]
        arr = np.full((32, 32, 3), 120, np.uint8)
        x, y = (int(v) for v in rng.integers(0, 16, 2))
        arr[y : y + 12, x : x + 12] = (220, 30, 30) if colour == "red" else (30, 30, 220)
        Image.fromarray(arr).save(root / "img" / f"{i}.png")
        images.append({"id": i, "file_name": f"img/{i}.png"})
        word = "box" if i % 4 < 2 else "square"
        anns.append({"id": i, "image_id": i, "caption": f"a {colour} {word}"})
        inst.append({"id": i + 1, "image_id": i, "category_id": 7, "bbox": [x, y, 12, 12]})
    (root / "captions.json").write_text(json.dumps({"images": images, "annotations": anns}))
    if instances:
        (root / "instances.json").write_text(
            json.dumps({"categories": [{"id": 7, "name": "square"}], "annotations": inst})
        )
    return root


@pytest.mark.slow
@pytest.mark.parametrize("instances", [True, False])
def test_captioner_supervision_comes_from_user_instances_and_synonyms(
    tmp_path: Path, instances: bool
) -> None:
    data = user_folder(tmp_path / "data", instances=instances)
    out = tmp_path / "models"
    history = fit_captioner(
        data, out, epochs=2, progress=False, size=32, channels=3, synonyms={"square": ["box"]}
    )
    doc = json.loads((out / "history_captioner.json").read_text())
    assert doc["validation"] == 4 and doc["images"] == 36
    assert doc["grounded_words"] == (40 if instances else 0)  # "square" and "box" alike
    assert all("val_loss" in h and "val_BLEU-4" in h for h in history)
    assert ("grounding" in history[0]) == instances
    cfg = json.loads((out / "config.json").read_text())["captioner"]
    assert cfg["sentinel"] and cfg["synonyms"] == {"square": ["box"]}


@pytest.mark.slow
def test_vae_labels_from_a_fraction_of_the_images(chest_small: Path, tmp_path: Path) -> None:
    out = tmp_path / "vae"
    fit_vae(chest_small, out, epochs=2, progress=False, label_fraction=0.25)
    doc = json.loads((out / "history_vae.json").read_text())
    assert doc["labelled_images"] == 24 and doc["label_fraction"] == 0.25
    space = LatentSpace.load(out)
    assert space.labels == ["cardiomegaly", "consolidation", "effusion", "nodule"]
    assert space.none_label == "normal" and space.counterfactual
    assert space.ood_mse > 0 and space.ood_latent > 0
    got = space.label(np.zeros(4))
    assert got[0][0] == "normal"
