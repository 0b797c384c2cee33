"""The face detector: MediaPipe's published model, carried as it is (`Published`), and the
output's settings. It has no Keras side to compare with, so no metric is guarded: the bundle
holds the very file MediaPipe ships, checked by its sha256 when fetched."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from converter.export import Feed, Graph, Published
from converter.exports.base import Export
from edge.analysis.bundle import Bundle
from edge.analysis.models import BundleModels
from models.config import FacesConfig, ModelsConfig
from models.data.dataset import Dataset
from models.pretrained.assets import fetch

OUTPUTS = ["boxes", "scores"]


def _config(cfg: ModelsConfig) -> FacesConfig:
    assert cfg.faces is not None
    return cfg.faces


class FacesExport(Export):
    key = "faces"

    def available(self, folder: Path, cfg: ModelsConfig) -> bool:
        return cfg.faces is not None

    def graphs(self, folder: Path, cfg: ModelsConfig) -> list[Graph]:
        return []

    def published(self, folder: Path, cfg: ModelsConfig) -> list[Published]:
        files = fetch(_config(cfg).detector)
        model = next(p for name, p in files.items() if name.endswith(".tflite"))
        return [Published("faces", model, OUTPUTS)]

    def settings(self, cfg: ModelsConfig) -> dict[str, Any]:
        return {"detector": _config(cfg).detector, "min_score": _config(cfg).min_score}

    def feeds(
        self, graphs: dict[str, Graph], images: np.ndarray, max_len: int, limit: int
    ) -> dict[str, list[Feed]]:
        return {}

    def reference(self, folder: Path, cfg: ModelsConfig, ds: Dataset) -> dict[str, Any]:
        return {}

    def device(self, bundle: Bundle, models: BundleModels, ds: Dataset) -> dict[str, Any]:
        return {}
