"""`embedding`: the image side of semantic search, at analysis time.

The captioner's encoder regions (its run is shared with the caption output) go through the
embedder's projection into the text-image space: n region vectors and one whole-image vector,
unit length, kept as int8 (x127; a cosine loses under 0.01) in the `regions` blob, 3 KB an
image. The `profile` blob is the image's score for each vocabulary word asked alone (the
word's vector, precomputed by the converter, against the regions): the approximate-nearest-
neighbour index ranks images by it, and the query's own encoder re-ranks the best of them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edge.analysis.outputs.base import Output, OutputFields, Produced
from edge.analysis.runtime import Runner

QUANT = 127.0


class EmbeddingFields(OutputFields):
    top_words: list[str]
    """The vocabulary words this image answers best (a glance at what search will find)."""


def pack(vectors: np.ndarray) -> bytes:
    """Unit vectors (k, D) -> int8 bytes."""
    return np.clip(np.rint(vectors * QUANT), -127, 127).astype(np.int8).tobytes()


def unpack(blob: bytes, dim: int) -> np.ndarray:
    """int8 bytes -> (k, D) float32 vectors."""
    return np.frombuffer(blob, np.int8).reshape(-1, dim).astype(np.float32) / QUANT


class EmbeddingOutput(Output):
    key = "embedding"
    Fields = EmbeddingFields

    def __init__(self, bundle: Any) -> None:
        super().__init__(bundle)
        words = bundle.asset("embedder_words")
        self.vocab: list[str] = words["vocab"]
        self.content: np.ndarray = np.array(words["content"], bool)
        self.word_vectors = np.asarray(words["vectors"], np.float32)

    def vectors(self, runners: dict[str, Runner], x: np.ndarray) -> np.ndarray:
        """(n + 1, D): the image's region vectors and its whole-image vector."""
        regions = runners["captioner_encoder"](image=x[None].astype(np.float32))["regions"]
        return runners["region_projection"](regions=regions)["vectors"][0]

    def profile(self, vectors: np.ndarray) -> np.ndarray:
        """(V,) each vocabulary word's best similarity over the image (0 for stop words)."""
        return np.where(self.content, (self.word_vectors @ vectors.T).max(-1), 0.0)

    def run(self, runners: dict[str, Runner], x: np.ndarray) -> Produced:
        vectors = self.vectors(runners, x)
        prof = self.profile(vectors)
        top = [self.vocab[i] for i in np.argsort(-prof)[:5] if self.content[i]]
        return Produced(
            EmbeddingFields(top_words=top),
            blobs={"regions": pack(vectors), "profile": prof.astype(np.float32).tobytes()},
        )
