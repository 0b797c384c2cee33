"""The text-image model judged as search: precision@10 of the held-out split's own queries
(words and phrases, typos, bound attributes; `models.queries`) ranked by the model over the
split's images, next to chance, and the pointing game of each query noun's map.

The daemon's evaluation (`bench/search_quality.py`) asks the same queries over HTTP of the
shipped bundle; this one runs the Keras models, so it is the model's ceiling.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras
import numpy as np

from core.semantic import content_mask, parse_query, token_ids
from models.config import ModelsConfig
from models.data.dataset import Dataset
from models.queries import QuerySet, Ranker, build_queries, pointing, precision_report
from models.store import load_captioner, load_embedder

MINIMUMS = {"words": 0.95, "typos": 0.90, "bound": 0.90, "pointing": 0.85}
"""What semantic search must reach (precision@10 per kind; query-noun pointing)."""


def image_vectors(folder: Path, cfg: ModelsConfig, images: np.ndarray) -> np.ndarray:
    """(B, n + 1, D): each image's region vectors and its whole-image vector."""
    encoder = load_captioner(folder, cfg).encoder
    _, projection = load_embedder(folder, cfg)
    out = []
    for i in range(0, len(images), 256):
        regions = encoder(images[i : i + 256], training=False)[0]
        out.append(np.asarray(projection(regions, training=False)))
    return np.concatenate(out)


def keras_encoder(
    text_model: keras.Model, vocab: list[str], max_tokens: int
) -> Callable[[str], tuple[np.ndarray, np.ndarray]]:
    """Query -> ((T, D) word vectors, (T,) content mask) by the Keras text encoder."""
    index = {w: i for i, w in enumerate(vocab)}

    def encode(query: str) -> tuple[np.ndarray, np.ndarray]:
        words = parse_query(query, vocab).words
        ids = token_ids(words, index, max_tokens)[None]
        return np.asarray(text_model(ids, training=False))[0], content_mask(words, max_tokens)

    return encode


def eval_embedder(folder: Path, cfg: ModelsConfig, ds: Dataset) -> dict[str, Any]:
    """The search report of the text-image model on a held-out split."""
    ec = cfg.embedder
    assert ec is not None and cfg.captioner is not None
    text_model, _ = load_embedder(folder, cfg)
    encode = keras_encoder(text_model, ec.vocab, ec.max_tokens)
    ranker = Ranker(encode, image_vectors(folder, cfg, ds.images))
    qs: QuerySet = build_queries(ds.captions, ds.grounding, ec.vocab)
    report = precision_report(ranker.rank, qs.all())
    report["pointing"] = pointing(ranker, ds, cfg.domain, cfg.grid)
    return report


def check(domain: str, report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The minimums that apply: bound attributes on shapes only."""
    out = {}
    for kind, minimum in MINIMUMS.items():
        row = report.get(kind)
        if not row or (kind == "bound" and domain != "shapes"):
            continue
        value = row["pointing"] if kind == "pointing" else row["p_at_10"]
        out[f"embedder.{kind}"] = {"value": value, "minimum": minimum, "ok": value >= minimum}
    return out
