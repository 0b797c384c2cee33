"""The pretrained classifier: one graph (logits, class maps, features) built from the
backbone's registry weights, and the words assets (the labels' words; the words related to
them, where the models folder has them); guarded metric: how often a word of an
image's captions is among its first three labels.

An int8 bundle keeps the classifier's weights in int8 and its activations in float (dynamic
range): full-integer activations need a calibration set as varied as the photographs the
device will meet, and crops of the four calibration photographs are not; on other crops,
full-integer activations change the top class far more often (the figures are in the photos
model card).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from converter.export import Feed, Graph
from converter.exports.base import Export
from edge.analysis.bundle import Bundle
from edge.analysis.models import BundleModels
from edge.analysis.outputs.classify import ClassifyOutput, Vocabulary, label_words, softmax
from models.config import ClassifierConfig, ModelsConfig
from models.data.dataset import Dataset
from models.pretrained.assets import fetch

OUTPUTS = ["logits", "cams", "features"]
WORDS = "words.json"
RELATED = "related.json"


def _config(cfg: ModelsConfig) -> ClassifierConfig:
    assert cfg.classifier is not None
    return cfg.classifier


def _model(cfg: ModelsConfig) -> Any:
    from models.pretrained.mobilenet_v2 import classifier

    files = fetch(_config(cfg).backbone)
    weights = next(p for name, p in files.items() if name.endswith(".pth"))
    return classifier(weights, cfg.image.size)


def top3(vocab: Vocabulary, logits: np.ndarray) -> list[str]:
    """The first three labels of an image's logits, whatever their scores."""
    return [w.word for w in label_words(vocab, softmax(logits.astype(np.float64)), 3, 0.0)]


def hits(labels: list[list[str]], captions: list[list[str]]) -> float:
    """The share of images with a word of one of their captions among their labels."""
    said = [{w.strip(".,").lower() for c in caps for w in c.split()} for caps in captions]
    return float(np.mean([bool(said_i & set(ls)) for ls, said_i in zip(labels, said, strict=True)]))


class ClassifyExport(Export):
    key = "classify"
    guarded = ("labels_top3",)

    def available(self, folder: Path, cfg: ModelsConfig) -> bool:
        return cfg.classifier is not None and (folder / cfg.classifier.words_file).is_file()

    def graphs(self, folder: Path, cfg: ModelsConfig) -> list[Graph]:
        return [Graph("classifier", _model(cfg), OUTPUTS, int8_as="dynamic")]

    def settings(self, cfg: ModelsConfig) -> dict[str, Any]:
        c = _config(cfg)
        return {
            "backbone": c.backbone,
            "top_labels": c.top_labels,
            "min_score": c.min_score,
            "map_classes": c.map_classes,
        }

    def assets(self, folder: Path, cfg: ModelsConfig, out: Path) -> dict[str, str]:
        c = _config(cfg)
        shutil.copy(folder / c.words_file, out / WORDS)
        if not (folder / c.related_file).is_file():
            return {"words": WORDS}
        shutil.copy(folder / c.related_file, out / RELATED)
        return {"words": WORDS, "related": RELATED}

    def feeds(
        self, graphs: dict[str, Graph], images: np.ndarray, max_len: int, limit: int
    ) -> dict[str, list[Feed]]:
        return {"classifier": [{"image": x[None]} for x in images[:limit]]}

    def reference(self, folder: Path, cfg: ModelsConfig, ds: Dataset) -> dict[str, Any]:
        vocab = Vocabulary(json.loads((folder / _config(cfg).words_file).read_text()))
        model = _model(cfg)
        logits = (np.asarray(model(x[None], training=False)[0])[0] for x in ds.images)
        return {"labels_top3": hits([top3(vocab, z) for z in logits], ds.captions)}

    def device(self, bundle: Bundle, models: BundleModels, ds: Dataset) -> dict[str, Any]:
        output = ClassifyOutput(bundle)
        logits = (output.classify(models.runners, x)["logits"] for x in ds.images)
        return {"labels_top3": hits([top3(output.vocab, z) for z in logits], ds.captions)}
