"""`s3e-train reproduce` end to end, on a tiny recipe (the real one takes ~40 min a domain)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from models import reproduce
from models.cli import run


def test_reproduce_makes_data_trains_everything_and_writes_metrics_and_card(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tiny = reproduce.Recipe(
        48, 24, 11, 12, 1, 1, 1, 48, 32, 1, 1, 48, layout_cells=8, layout_hidden=(24, 12)
    )
    monkeypatch.setitem(reproduce.RECIPES, "chest", tiny)
    # the shipped captioner's variant, two levers apart and the baseline: every kind of
    # variant the ablation trains, at a third of its captioners
    ablations = {
        k: reproduce.ABLATIONS[k] for k in ("bahdanau", "bahdanau+both", "luong+both", "none")
    }
    monkeypatch.setattr(reproduce, "ABLATIONS", ablations)
    monkeypatch.setattr(reproduce, "LABEL_FRACTIONS", (0.1, 1.0))
    out = tmp_path / "models" / "chest"
    args = ["reproduce", "--domain", "chest", "--out", str(out), "--work", str(tmp_path / "data")]
    assert run(args) == 0
    for name in (
        "captioner_step.weights.h5",
        "segmenter.weights.h5",
        "vae_encoder.weights.h5",
        "text_encoder.weights.h5",
        "region_projection.weights.h5",
        "ablation/luong+both/captioner_step.weights.h5",
        "ablation/none/config.json",
    ):
        assert (out / name).exists(), name
    metrics = json.loads((out / "metrics.json").read_text())
    assert {
        "captioner",
        "segmenter",
        "vae",
        "embedder",
        "ablation",
        "label_study",
        "minimums",
        "train_seconds",
    } <= set(metrics)
    assert set(metrics["ablation"]) >= {"bahdanau", "luong+both", "none"}
    assert metrics["embedder"]["words"]["queries"] > 0  # evaluated: the weights loaded back
    embedder = json.loads((out / "config.json").read_text())["embedder"]
    assert (embedder["layout_cells"], embedder["layout_hidden"]) == (8, [24, 12])
    assert 0.0 <= metrics["embedder"]["pointing"]["pointing"] <= 1.0
    card = (out / "MODEL_CARD.md").read_text()
    assert "s3e-train reproduce --domain chest --out models/chest" in card
    assert "not clinical data" in card and "| captioner finding_accuracy |" in card
    assert "## Semantic search" in card and "| words |" in card
    held_out = json.loads((tmp_path / "data/chest/test/captions.json").read_text())["info"]
    assert held_out["seed"] == 12 and held_out["n"] == 24
