"""The search queries a held-out split asks, with their right answers, and the vocabulary's
typo correction: the model's evaluation and the daemon's (over HTTP) ask the very same ones.

Kinds of query (each with a minimum in `models.search_eval`):
- `words`: every content word and two-word phrase of the references found in 3-80% of the
  images; relevant = the word or phrase is in one of the image's references;
- `typos`: one deterministic one-edit slip of each single word that the vocabulary corrects
  back to it alone;
- `bound`: the noun phrases that name one object (e.g. "red circle", "small blue square"),
  relevant = a reference names that very object, not a red square beside a blue circle.
Numpy only: the daemon's evaluation runs without TensorFlow.
"""

from __future__ import annotations

import itertools
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from core.semantic import correct, late_interaction, within_one_edit, word_maps
from core.tokens import STOP, tokenize
from models.data.instances import grid_regions
from models.data.sample import Span
from models.grounding import word_class

MIN_SHARE, MAX_SHARE = 0.03, 0.80
BOUND_MIN_RELEVANT = 10
"""A bound phrase is asked only where at least this many images have it (precision@10)."""


def typo(word: str, vocab: Sequence[str]) -> str | None:
    """A one-edit slip of `word` (the same every run) that `correct` takes back to it alone."""
    rng = np.random.default_rng(zlib.crc32(word.encode()))
    edits = [word[:i] + word[i + 1 :] for i in range(1, len(word))]
    edits += [word[:i] + word[i + 1] + word[i] + word[i + 2 :] for i in range(1, len(word) - 1)]
    edits += [word[:i] + c + word[i + 1 :] for i in range(1, len(word)) for c in "aeiou"]
    edits += [word[:i] + c + word[i:] for i in range(1, len(word)) for c in "aeiou"]
    for k in rng.permutation(len(edits)):
        slip = edits[int(k)]
        if (
            slip != word
            and slip not in vocab
            and [v for v in vocab if within_one_edit(slip, v)] == [word]
            and correct(slip, vocab) == word  # not a word of its own ("lower" -> "lover")
        ):
            return slip
    return None


def content(tokens: Iterable[str]) -> list[str]:
    return [t for t in tokens if t not in STOP]


def _contains(refs: Sequence[str], words: Sequence[str]) -> bool:
    needle = f" {' '.join(words)} "
    return any(needle in r for r in refs)


@dataclass
class QuerySet:
    """Queries of one split, each with its relevant images (a boolean array over the split)."""

    words: dict[str, np.ndarray] = field(default_factory=dict)
    typos: dict[str, tuple[str, np.ndarray]] = field(default_factory=dict)
    """Typo -> (the word it slips from, relevant)."""
    bound: dict[str, np.ndarray] = field(default_factory=dict)

    def all(self) -> dict[str, dict[str, np.ndarray]]:
        return {
            "words": self.words,
            "typos": {k: v[1] for k, v in self.typos.items()},
            "bound": self.bound,
        }


def build_queries(
    captions: Sequence[Sequence[str]],
    spans: Sequence[Sequence[Sequence[Span] | None]] | None,
    vocab: Sequence[str],
) -> QuerySet:
    """The query set of a split from its references (and their grounding spans, for `bound`)."""
    refs = [[f" {' '.join(tokenize(c))} " for c in caps] for caps in captions]
    grams: set[tuple[str, ...]] = set()
    for caps in captions:
        for c in caps:
            toks = tokenize(c)
            grams.update((t,) for t in content(toks))
            grams.update(
                (a, b) for a, b in itertools.pairwise(toks) if a not in STOP and b not in STOP
            )
    qs = QuerySet()
    for g in sorted(grams):
        hits = np.array([_contains(r, g) for r in refs])
        if MIN_SHARE <= hits.mean() <= MAX_SHARE:
            qs.words[" ".join(g)] = hits
    for q, hits in qs.words.items():
        slip = typo(q, vocab) if " " not in q else None
        if slip:
            qs.typos[slip] = (q, hits)
    for phrase in _object_phrases(captions, spans or []):
        hits = np.array([_contains(r, phrase) for r in refs])
        if hits.sum() >= BOUND_MIN_RELEVANT and len(phrase) > 1:
            qs.bound[" ".join(phrase)] = hits
    return qs


def _object_phrases(
    captions: Sequence[Sequence[str]], spans: Sequence[Sequence[Sequence[Span] | None]]
) -> set[tuple[str, ...]]:
    """Grounded spans naming one instance, whole and without their first word."""
    out: set[tuple[str, ...]] = set()
    for caps, image_spans in zip(captions, spans, strict=False):
        for c, cs in zip(caps, image_spans or [], strict=False):
            toks = tokenize(c)
            for s in cs or []:
                words = tuple(toks[s.start : s.end])
                if len(s.instances) == 1 and len(words) >= 2:
                    out.update({words, words[1:]})
    return out


class Ranker:
    """Query text -> ranking of a fixed set of images, given how to encode a query ((T, D)
    word vectors, (T,) content mask): the Keras encoder or the device's."""

    def __init__(
        self, encode: Callable[[str], tuple[np.ndarray, np.ndarray]], images: np.ndarray
    ) -> None:
        self.encode, self.images = encode, images

    def rank(self, query: str, k: int = 10) -> np.ndarray:
        vecs, mask = self.encode(query)
        if not mask.any():
            return np.zeros(0, np.int64)
        return np.argsort(-late_interaction(vecs, mask, self.images), kind="stable")[:k]


def precision_report(rank: Any, kinds: dict[str, dict[str, np.ndarray]]) -> dict[str, Any]:
    """Per kind: mean precision@10, mean chance, the count and the five worst queries."""
    out: dict[str, Any] = {}
    for kind, queries in kinds.items():
        scores = {q: precision_at(rank(q), rel) for q, rel in queries.items()}
        if not scores:
            continue
        worst = sorted(scores.items(), key=lambda kv: kv[1])[:5]
        out[kind] = {
            "queries": len(scores),
            "p_at_10": float(np.mean(list(scores.values()))),
            "chance": float(np.mean([chance(r) for r in queries.values()])),
            "worst": {q: round(s, 3) for q, s in worst},
        }
    return out


def pointing(ranker: Ranker, ds: Any, domain: str, grid: int) -> dict[str, Any]:
    """Pointing game of single-noun queries: for each image whose references name the noun's
    instance, does the peak of the word's map lie on that instance? Chance: its grid share."""
    if ds.instances is None or ds.grounding is None:
        return {}
    hits: list[bool] = []
    shares: list[float] = []
    for i, (insts, spans) in enumerate(zip(ds.instances, ds.grounding, strict=True)):
        cells = grid_regions(np.stack([c for _, c in insts]), grid) if insts else None
        for word, named in named_nouns(ds.captions[i], spans, domain).items():
            if cells is None:
                continue
            vecs, _ = ranker.encode(word)
            peak = int(np.argmax(word_maps(vecs[:1], ranker.images[i])[0]))
            region = cells[sorted(named)].max(axis=0) > 0
            hits.append(bool(region[peak]))
            shares.append(float(region.mean()))
    return {
        "n": len(hits),
        "pointing": float(np.mean(hits)) if hits else 0.0,
        "chance": float(np.mean(shares)) if shares else 0.0,
    }


def named_nouns(captions: Sequence[str], spans: Any, domain: str) -> dict[str, set[int]]:
    """Noun word -> the instances the image's reference spans containing it name."""
    out: dict[str, set[int]] = {}
    for c, cs in zip(captions, spans or [], strict=False):
        toks = tokenize(c)
        for s in cs or []:
            for w in toks[s.start : s.end]:
                if s.instances and word_class(domain, w) == "noun":
                    out.setdefault(w, set()).update(s.instances)
    return out


def precision_at(ranked: Sequence[int], relevant: np.ndarray, k: int = 10) -> float:
    """Share of the first k results that are relevant (over min(k, |relevant|) when fewer
    images are relevant, so a perfect ranking scores 1)."""
    top = list(ranked)[:k]
    denom = min(k, int(relevant.sum()))
    return float(sum(bool(relevant[i]) for i in top) / denom) if denom else 0.0


def chance(relevant: np.ndarray) -> float:
    """Precision@10 of a random ranking: the relevant share."""
    return float(relevant.mean())
