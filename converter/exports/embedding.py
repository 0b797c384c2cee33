"""Semantic search: the region projection (per image, over the captioner encoder's regions)
and the text encoder (per query); the vocabulary with each word's vector as an asset.
Metrics: precision@10 of the held-out split's own queries and the query-noun pointing game,
the device side encoding queries with the converted text encoder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import keras
import numpy as np

from converter.export import Feed, Graph
from converter.exports.base import Export
from core.tokens import STOP
from edge.analysis.bundle import Bundle
from edge.analysis.models import BundleModels
from edge.analysis.outputs.embedding import EmbeddingOutput, pack, unpack
from edge.search.semantic import QueryEncoder
from models.config import ModelsConfig
from models.data.dataset import Dataset
from models.queries import Ranker, build_queries, pointing, precision_report
from models.search_eval import eval_embedder
from models.store import has_model, load_captioner, load_embedder

WORDS_ASSET = "embedder_words.json"
REGIONS_IN_INT8 = "float16"
"""How an int8 bundle stores the region projection. With int8 activations the shapes
projection's whole-image head (2048 -> 192 -> 96 -> 48) loses precision@10 of words through
the daemon (`bench/search_quality.py` measures it); float16 keeps it, and the projection is
small. The captioner encoder it reads from stays int8."""


class EmbeddingExport(Export):
    key = "embedding"
    guarded = ("words_p_at_10",)

    def __init__(self) -> None:
        self.encoder: keras.Model | None = None

    def available(self, folder: Path, cfg: ModelsConfig) -> bool:
        return has_model(folder, "embedder") and cfg.embedder is not None

    def graphs(self, folder: Path, cfg: ModelsConfig) -> list[Graph]:
        text, projection = load_embedder(folder, cfg)
        self.encoder = load_captioner(folder, cfg).encoder
        return [
            Graph("region_projection", projection, ["vectors"], int8_as=REGIONS_IN_INT8),
            Graph("text_encoder", text, ["words"]),
        ]

    def query_models(self) -> list[str]:
        return ["text_encoder"]

    def shared_models(self, folder: Path) -> list[str]:
        return ["captioner_encoder"]

    def settings(self, cfg: ModelsConfig) -> dict[str, Any]:
        assert cfg.embedder is not None
        return {"max_tokens": cfg.embedder.max_tokens, "dim": cfg.embedder.dim, "grid": cfg.grid}

    def assets(self, folder: Path, cfg: ModelsConfig, out: Path) -> dict[str, str]:
        """The vocabulary and each word's vector as the device's text encoder (already
        converted into `out`) computes it, so a one-word query ranks exactly as the
        profile the analysis stores."""
        from edge.analysis.runtime import ModelRunner

        assert cfg.embedder is not None
        ec = cfg.embedder
        runner = ModelRunner(out / "text_encoder.tflite", ["words"], 1)
        ids = range(len(ec.vocab))
        vectors = [runner(tokens=_ids([i], ec.max_tokens))["words"][0, 0] for i in ids]
        content = [w not in STOP and i > 1 for i, w in enumerate(ec.vocab)]
        doc = {
            "vocab": ec.vocab,
            "content": content,
            "vectors": np.round(np.stack(vectors), 5).tolist(),
        }
        (out / WORDS_ASSET).write_text(json.dumps(doc))
        return {"embedder_words": WORDS_ASSET}

    def feeds(
        self, graphs: dict[str, Graph], images: np.ndarray, max_len: int, limit: int
    ) -> dict[str, list[Feed]]:
        assert self.encoder is not None
        regions = np.asarray(self.encoder(images[: max(limit // 4, 1)], training=False)[0])
        text = graphs["text_encoder"].model
        max_tokens, words = text.inputs[0].shape[1], text.get_layer("word").input_dim
        rng = np.random.default_rng(0)  # queries of 1-3 known words
        tokens = [
            _ids(list(rng.integers(2, words, size=int(rng.integers(1, 4)))), max_tokens)
            for _ in range(limit)
        ]
        return {
            "region_projection": [{"regions": r[None]} for r in regions],
            "text_encoder": [{"tokens": t} for t in tokens],
        }

    def reference(self, folder: Path, cfg: ModelsConfig, ds: Dataset) -> dict[str, Any]:
        return _flat(eval_embedder(folder, cfg, ds))

    def device(self, bundle: Bundle, models: BundleModels, ds: Dataset) -> dict[str, Any]:
        output = EmbeddingOutput(bundle)
        dim = int(output.settings["dim"])
        images = np.stack([unpack(pack(output.vectors(models.runners, x)), dim) for x in ds.images])
        encoder = QueryEncoder(bundle, models.runners["text_encoder"])
        ranker = Ranker(lambda q: encoder.encode(q)[1:], images)
        report = precision_report(
            ranker.rank, build_queries(ds.captions, ds.grounding, output.vocab).all()
        )
        report["pointing"] = pointing(ranker, ds, bundle.doc.domain, int(output.settings["grid"]))
        return _flat(report)


def _ids(ids: list[int], max_tokens: int) -> np.ndarray:
    out = np.zeros((1, max_tokens), np.int32)
    out[0, : len(ids)] = ids[:max_tokens]
    return out


def _flat(report: dict[str, Any]) -> dict[str, Any]:
    out = {f"{k}_p_at_10": v["p_at_10"] for k, v in report.items() if "p_at_10" in v}
    if report.get("pointing"):
        out["pointing"] = report["pointing"]["pointing"]
    return out
