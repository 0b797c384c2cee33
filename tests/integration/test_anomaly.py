"""The anomaly score of the shipped chest bundle, on the device's own path (TFLite int8), on
fresh phantoms: it ranks images with findings above images without, and reads differently for
different images rather than saturating at one value."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edge.analysis.bundle import load_bundle
from edge.analysis.models import BundleModels
from edge.analysis.outputs.vae import VaeOutput
from edge.ingest.imaging import preprocess
from models.data.dataset import write_dataset

FRESH_SEED = 60606


@pytest.fixture(scope="module")
def scores(tmp_path_factory: pytest.TempPathFactory) -> tuple[np.ndarray, np.ndarray]:
    data = write_dataset("chest", 160, FRESH_SEED, tmp_path_factory.mktemp("fresh") / "chest")
    meta = json.loads((data / "meta.json").read_text())["images"]
    bundle = load_bundle("chest-int8")
    vae = VaeOutput(bundle)
    models = BundleModels(bundle, threads=1, names=bundle.doc.outputs["vae"].models)
    spec = bundle.doc.preprocessing.model_dump()
    anomaly, finding = [], []
    for name, m in sorted(meta.items()):
        x = preprocess(Image.open(Path(data) / name), spec)
        anomaly.append(vae.run(models.runners, x).fields.anomaly)  # type: ignore[attr-defined]
        finding.append(bool(m["findings"]))
    return np.array(anomaly), np.array(finding)


def test_images_with_findings_rank_above_normal_ones(scores: tuple[np.ndarray, np.ndarray]) -> None:
    anomaly, finding = scores
    assert finding.any() and (~finding).any()
    pairs = anomaly[finding][:, None] - anomaly[~finding][None, :]
    auroc = float((pairs > 0).mean() + 0.5 * (pairs == 0).mean())
    assert auroc >= 0.95, auroc


def test_the_score_reads_differently_for_different_images(
    scores: tuple[np.ndarray, np.ndarray],
) -> None:
    anomaly, finding = scores
    assert len(np.unique(np.round(anomaly, 3))) >= 0.9 * len(anomaly)
    assert len(np.unique(np.round(anomaly[finding], 3))) >= 0.9 * finding.sum()
