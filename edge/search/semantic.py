"""Semantic search on the device: a query in the user's words against every image's regions.

The query: its words corrected to the vocabulary the text encoder learned (one edit away at
most), unknown words dropped and named, then encoded by the bundle's text encoder (TFLite, in
this process, one interpreter behind a lock). The ranking: the profile index (`edge.search.vectors`)
gives the images whose regions best answer the query's words each on its own, and the full
late interaction of the encoded query (each word in its context, so "red circle" is one red
circle) re-ranks them from their stored region vectors. Each word's similarity over an
image's regions is its map: where on the image the word matched.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from core.semantic import ParsedQuery, content_mask, parse_query, scored, token_ids
from core.semantic import word_maps as similarity_maps
from edge.analysis.bundle import Bundle
from edge.analysis.outputs.embedding import unpack
from edge.analysis.runtime import CpuAccelerator, Runner
from edge.search.vectors import VectorIndex
from edge.store.store import Store

CANDIDATES = 100
"""Images the profile index hands to the re-ranking (more when a page lies deeper)."""
RELATIVE_FLOOR = 0.75
"""Images scoring under this share of the best one are not results: every image has some
similarity to any query, and a list of all of them would bury the answer."""
MAP_TEMPERATURE = 0.1
"""A word's similarities over the regions become its map by a softmax at this temperature
(the one the embedder's grounding was trained with)."""


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


@dataclass
class Ranked:
    """A semantic ranking: (key, score) best first, and per key each content word's score
    (keys: record seqs on the device, result ids in the fleet)."""

    parsed: ParsedQuery
    hits: list[tuple[Any, float]]
    words: dict[Any, dict[str, float]]


class SemanticSearch:
    """Ranking and maps over the store, for whichever bundle runs now."""

    def __init__(self, store: Store, profile: VectorIndex, bundle: Callable[[], Bundle]) -> None:
        self.store, self.profile, self.bundle = store, profile, bundle
        self._encoders: dict[str, QueryEncoder] = {}
        self._lock = threading.Lock()

    def encoder(self) -> QueryEncoder | None:
        """The running bundle's query encoder; None when it has no semantic search."""
        bundle = self.bundle()
        if "embedding" not in bundle.doc.outputs:
            return None
        with self._lock:
            if bundle.version not in self._encoders:
                self._encoders = {bundle.version: QueryEncoder(bundle)}
            return self._encoders[bundle.version]

    def rank(self, text: str, k: int) -> Ranked | None:
        """The k best images for `text` (fewer if the index holds fewer); None without a
        semantic model."""
        enc = self.encoder()
        if enc is None:
            return None
        parsed, vectors, mask = enc.encode(text)
        if not mask.any():
            return Ranked(parsed, [], {})
        wanted = sorted({enc.index[w] for w in parsed.content})
        query = np.zeros(len(enc.vocab), np.float32)
        query[wanted] = 1.0 / len(wanted)
        self.profile.refresh()
        seqs = [s for s, _ in self.profile.search(query, max(CANDIDATES, k))]
        blobs = self.store.blobs(seqs, "regions") if seqs else {}
        dim, rows = vectors.shape[-1], enc.grid * enc.grid + 1
        seqs = [s for s in seqs if len(blobs.get(s, b"")) == rows * dim]  # this bundle's shape
        if not seqs:
            return Ranked(parsed, [], {})
        images = unpack(b"".join(blobs[s] for s in seqs), dim).reshape(len(seqs), rows, dim)
        scores, best = scored(vectors, mask, images)
        order = np.argsort(-scores, kind="stable")[:k]
        order = order[scores[order] >= RELATIVE_FLOOR * scores[order[0]]]
        content = np.flatnonzero(mask)
        names = [parsed.words[i] for i in content]
        keys = [seqs[i] for i in order]
        words = np.round(best[order][:, content].astype(np.float64), 4).tolist()
        return Ranked(
            parsed,
            list(zip(keys, scores[order].tolist(), strict=True)),
            {k: dict(zip(names, w, strict=True)) for k, w in zip(keys, words, strict=True)},
        )

    def match(self, rid: str, text: str) -> dict[str, Any] | None:
        """Each content word of `text`: its map over the image's grid and its score; None
        when the image has no semantic vectors (not analysed, or by a bundle without them)."""
        enc = self.encoder()
        blob = self.store.blob(rid, "regions")
        return match(enc, text, blob) if enc is not None and blob is not None else None


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
