"""The segmenter: one graph; mIoU."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from converter.export import Feed, Graph
from converter.exports.base import Export
from edge.analysis.bundle import Bundle
from edge.analysis.models import BundleModels
from edge.analysis.outputs.segmentation import SegmentationOutput
from models import metrics
from models.config import ModelsConfig
from models.data.dataset import Dataset
from models.evaluate import eval_segmenter
from models.store import has_model, load_segmenter


class SegmentationExport(Export):
    key = "segmentation"
    guarded = ("mIoU",)

    def available(self, folder: Path, cfg: ModelsConfig) -> bool:
        return has_model(folder, "segmenter") and cfg.segmenter is not None

    def graphs(self, folder: Path, cfg: ModelsConfig) -> list[Graph]:
        return [Graph("segmenter", load_segmenter(folder, cfg), ["logits"])]

    def settings(self, cfg: ModelsConfig) -> dict[str, Any]:
        assert cfg.segmenter is not None
        return {"class_names": list(cfg.segmenter.class_names)}

    def feeds(
        self, graphs: dict[str, Graph], images: np.ndarray, max_len: int, limit: int
    ) -> dict[str, list[Feed]]:
        return {"segmenter": [{"image": x[None]} for x in images[:limit]]}

    def reference(self, folder: Path, cfg: ModelsConfig, ds: Dataset) -> dict[str, Any]:
        if ds.masks is None or cfg.segmenter is None:
            return {}
        model = load_segmenter(folder, cfg)
        return {"mIoU": eval_segmenter(model, ds, cfg.segmenter.class_names)["mIoU"]}

    def device(self, bundle: Bundle, models: BundleModels, ds: Dataset) -> dict[str, Any]:
        if ds.masks is None:
            return {}
        output = SegmentationOutput(bundle)
        classes = output.class_names
        conf = np.zeros((len(classes), len(classes)), np.int64)
        for x, m in zip(ds.images, ds.masks, strict=True):
            conf += metrics.confusion(output.segment(models.runners, x), m, len(classes))
        return {"mIoU": metrics.iou_scores(conf, classes)["mIoU"]}
