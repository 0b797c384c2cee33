"""The semantic side of search: a query in the user's words against every image's regions,
the same on the device and in the fleet.

The query: its words corrected to the vocabulary the text encoder learned (one edit away at
most), unknown words dropped and named, then encoded by the bundle's text encoder (TFLite, in
this process, one interpreter behind a lock). The ranking: a backend's word-profile index
gives the images whose regions best answer the query's words each on its own (`profile`),
and the full late interaction of the encoded query (each word in its context, so "red circle"
is one red circle) re-ranks them from their region vectors (`rerank`). Each word's
similarity over an image's regions is its map: where on the image the word matched (`match`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from core.semantic import ParsedQuery, content_mask, parse_query, scored, token_ids
from core.semantic import word_maps as similarity_maps
from edge.analysis.bundle import Bundle
from edge.analysis.outputs.embedding import unpack
from edge.analysis.runtime import CpuAccelerator, Runner

CANDIDATES = 100
"""Images the profile index hands to the re-ranking (more when a page lies deeper)."""
RELATIVE_FLOOR = 0.75
"""Images scoring under this share of the best one are not results: every image has some
similarity to any query, and a list of all of them would bury the answer."""
MAP_TEMPERATURE = 0.1
"""A word's similarities over the regions become its map by a softmax at this temperature
(the one the embedder's grounding was trained with)."""


class Scored(NamedTuple):
    """A place in a ranking: a backend's key (a record's seq, a fleet result id) and score."""

    key: Hashable
    score: float


class QueryEncoder:
    """The bundle's text encoder, for queries."""

    def __init__(self, bundle: Bundle, runner: Runner | None = None) -> None:
        words = bundle.asset("embedder_words")
        self.vocab: list[str] = list(words["vocab"])
        self.index = {w: i for i, w in enumerate(self.vocab)}
        settings = bundle.settings("embedding")
        self.max_tokens, self.grid = int(settings["max_tokens"]), int(settings["grid"])
        self.runner = runner or CpuAccelerator(1).runner(
            bundle.model_path("text_encoder"), ["words"]
        )
        self._lock = threading.Lock()

    def encode(self, text: str) -> tuple[ParsedQuery, np.ndarray, np.ndarray]:
        """(parsed query, (T, D) word vectors, (T,) content mask)."""
        parsed = parse_query(text, self.vocab)
        ids = token_ids(parsed.words, self.index, self.max_tokens)[None]
        with self._lock:
            vectors = self.runner(tokens=ids)["words"][0]
        return parsed, vectors, content_mask(parsed.words, self.max_tokens)

    def profile(self, parsed: ParsedQuery) -> np.ndarray:
        """The query as a word profile: equal weights on its content words, for the profile
        index's first stage."""
        wanted = sorted({self.index[w] for w in parsed.content})
        query = np.zeros(len(self.vocab), np.float32)
        query[wanted] = 1.0 / len(wanted)
        return query


@dataclass
class Ranked:
    """A semantic ranking, best first, and per key each content word's score."""

    parsed: ParsedQuery
    hits: list[Scored]
    words: dict[Hashable, dict[str, float]]


class Encoders:
    """The query encoder of whichever bundle runs now, built once per bundle."""

    def __init__(self, bundle: Callable[[], Bundle]) -> None:
        self.bundle = bundle
        self._encoders: dict[str, QueryEncoder] = {}
        self._lock = threading.Lock()

    def __call__(self) -> QueryEncoder | None:
        """None when the running bundle has no semantic search."""
        bundle = self.bundle()
        if "embedding" not in bundle.doc.outputs:
            return None
        with self._lock:
            if bundle.version not in self._encoders:
                self._encoders = {bundle.version: QueryEncoder(bundle)}
            return self._encoders[bundle.version]


def rerank(
    enc: QueryEncoder,
    encoded: tuple[ParsedQuery, np.ndarray, np.ndarray],
    keys: list[Hashable],
    regions: dict[Hashable, bytes],
    k: int,
) -> Ranked:
    """The k best of `keys` by the late interaction of the encoded query with each one's
    region vectors; keys without vectors of this bundle's shape drop out."""
    parsed, vectors, mask = encoded
    dim, rows = vectors.shape[-1], enc.grid * enc.grid + 1
    keys = [key for key in keys if len(regions.get(key, b"")) == rows * dim]
    if not keys:
        return Ranked(parsed, [], {})
    images = unpack(b"".join(regions[key] for key in keys), dim).reshape(len(keys), rows, dim)
    scores, best = scored(vectors, mask, images)
    order = np.argsort(-scores, kind="stable")[:k]
    order = order[scores[order] >= RELATIVE_FLOOR * scores[order[0]]]
    content = np.flatnonzero(mask)
    names = [parsed.words[i] for i in content]
    ranked = [keys[i] for i in order]
    words = np.round(best[order][:, content].astype(np.float64), 4).tolist()
    return Ranked(
        parsed,
        [Scored(key, score) for key, score in zip(ranked, scores[order].tolist(), strict=True)],
        {key: dict(zip(names, w, strict=True)) for key, w in zip(ranked, words, strict=True)},
    )


def match(enc: QueryEncoder, text: str, regions: bytes) -> dict[str, Any] | None:
    """`/images/{id}/match` of one image's int8 region vectors (None: of another shape)."""
    parsed, vectors, mask = enc.encode(text)
    image = unpack(regions, vectors.shape[-1])
    if len(image) != enc.grid * enc.grid + 1:
        return None  # vectors of another bundle's shape
    sims = similarity_maps(vectors, image)
    words = []
    for t, w in enumerate(parsed.words[: enc.max_tokens]):
        if not mask[t]:
            continue
        z = np.exp((sims[t] - sims[t].max()) / MAP_TEMPERATURE)
        words.append(
            {
                "word": w,
                "map": [round(float(x), 5) for x in z / z.sum()],
                "score": round(float((vectors[t] @ image.T).max()), 4),
            }
        )
    return {
        "grid": enc.grid,
        "words": words,
        "unknown": parsed.unknown,
        "corrected": parsed.corrected,
    }
