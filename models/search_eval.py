"""The text-image model judged as search: precision@10 of the held-out split's own queries
(words and phrases, typos, bound attributes; `models.queries`) ranked by the model over the
split's images, next to chance, and the pointing game of each query noun's map.

The daemon's evaluation (`bench/search_quality.py`) asks the same queries over HTTP of the
shipped bundle; this one runs the Keras models, so it is the model's ceiling.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np

from models.config import ModelsConfig
from models.data.dataset import Dataset
from models.data.instances import grid_regions
from models.data.tokens import tokenize
from models.grounding import word_class
from models.queries import QuerySet, build_queries, chance, precision_at
from models.semantic import content_mask, late_interaction, parse_query, token_ids, word_maps
from models.store import load_captioner, load_embedder

MINIMUMS = {"words": 0.95, "typos": 0.90, "bound": 0.90, "pointing": 0.85}
"""The semantic-search issue's minimums (precision@10 per kind; query-noun pointing)."""


class Ranker:
    """Query text -> ranking of a fixed set of images, by the Keras text encoder."""

    def __init__(
        self, text_model: keras.Model, images: np.ndarray, vocab: list[str], max_tokens: int
    ):
        self.text_model, self.images = text_model, images
        self.vocab, self.max_tokens = vocab, max_tokens
        self.index = {w: i for i, w in enumerate(vocab)}

    def encode(self, query: str) -> tuple[np.ndarray, np.ndarray]:
        """(T, D) word vectors and (T,) content mask of a query (typos corrected)."""
        words = parse_query(query, self.vocab).words
        ids = token_ids(words, self.index, self.max_tokens)[None]
        return np.asarray(self.text_model(ids, training=False))[0], content_mask(
            words, self.max_tokens
        )

    def rank(self, query: str, k: int = 10) -> np.ndarray:
        vecs, mask = self.encode(query)
        if not mask.any():
            return np.zeros(0, np.int64)
        return np.argsort(-late_interaction(vecs, mask, self.images), kind="stable")[:k]


def image_vectors(folder: Path, cfg: ModelsConfig, images: np.ndarray) -> np.ndarray:
    """(B, n + 1, D): each image's region vectors and its whole-image vector."""
    encoder = load_captioner(folder, cfg).encoder
    _, projection = load_embedder(folder, cfg)
    out = []
    for i in range(0, len(images), 256):
        regions = encoder(images[i : i + 256], training=False)[0]
        out.append(np.asarray(projection(regions, training=False)))
    return np.concatenate(out)


def precision_report(rank: Any, kinds: dict[str, dict[str, np.ndarray]]) -> dict[str, Any]:
    """Per kind: mean precision@10, mean chance, the count and the five worst queries."""
    out: dict[str, Any] = {}
    for kind, queries in kinds.items():
        scores = {q: precision_at(rank(q), rel) for q, rel in queries.items()}
        if not scores:
            continue
        worst = sorted(scores.items(), key=lambda kv: kv[1])[:5]
        out[kind] = {"queries": len(scores), "p_at_10": float(np.mean(list(scores.values()))),
                     "chance": float(np.mean([chance(r) for r in queries.values()])),
                     "worst": {q: round(s, 3) for q, s in worst}}  # fmt: skip
    return out


def pointing(ranker: Ranker, ds: Dataset, domain: str, grid: int) -> dict[str, Any]:
    """Pointing game of single-noun queries: for each image whose references name the noun's
    instance, does the peak of the word's map lie on that instance? Chance: its grid share."""
    if ds.instances is None or ds.grounding is None:
        return {}
    hits: list[bool] = []
    shares: list[float] = []
    for i, (insts, spans) in enumerate(zip(ds.instances, ds.grounding, strict=True)):
        cells = grid_regions(np.stack([c for _, c in insts]), grid) if insts else None
        for word, named in _named_nouns(ds.captions[i], spans, domain).items():
            if cells is None:
                continue
            vecs, _ = ranker.encode(word)
            peak = int(np.argmax(word_maps(vecs[:1], ranker.images[i])[0]))
            region = cells[sorted(named)].max(axis=0) > 0
            hits.append(bool(region[peak]))
            shares.append(float(region.mean()))
    return {"n": len(hits), "pointing": float(np.mean(hits)) if hits else 0.0,
            "chance": float(np.mean(shares)) if shares else 0.0}  # fmt: skip


def _named_nouns(captions: Sequence[str], spans: Any, domain: str) -> dict[str, set[int]]:
    """Noun word -> the instances the image's reference spans containing it name."""
    out: dict[str, set[int]] = {}
    for c, cs in zip(captions, spans or [], strict=False):
        toks = tokenize(c)
        for s in cs or []:
            for w in toks[s.start : s.end]:
                if s.instances and word_class(domain, w) == "noun":
                    out.setdefault(w, set()).update(s.instances)
    return out


def eval_embedder(folder: Path, cfg: ModelsConfig, ds: Dataset) -> dict[str, Any]:
    """The search report of the text-image model on a held-out split."""
    ec = cfg.embedder
    assert ec is not None and cfg.captioner is not None
    text_model, _ = load_embedder(folder, cfg)
    ranker = Ranker(text_model, image_vectors(folder, cfg, ds.images), ec.vocab, ec.max_tokens)
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
