"""The face detector and the selfie segmenter: MediaPipe's published models, carried as they
are (`Published`), and the output's settings. They have no Keras side to compare with, so no
metric is guarded: the bundle holds the very files MediaPipe ships, checked by their sha256
when fetched."""

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
DETECTOR = "face_detection_full_range_sparse.tflite"
SEGMENTER = "selfie_segmentation.tflite"


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
        people = [Published("people", files[SEGMENTER], ["mask"])] if _config(cfg).segmenter else []
        return [Published("faces", files[DETECTOR], OUTPUTS), *people]

    def settings(self, cfg: ModelsConfig) -> dict[str, Any]:
        c = _config(cfg)
        return {"detector": c.detector, "min_score": c.min_score, "segmenter": c.segmenter}

    def feeds(
        self, graphs: dict[str, Graph], images: np.ndarray, max_len: int, limit: int
    ) -> dict[str, list[Feed]]:
        return {}

    def reference(self, folder: Path, cfg: ModelsConfig, ds: Dataset) -> dict[str, Any]:
        return {}

    def device(self, bundle: Bundle, models: BundleModels, ds: Dataset) -> dict[str, Any]:
        return {}
