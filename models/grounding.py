"""Attention grounding: does each word's attention point at the thing the word names?

Two measures per word, over the captioner's grid of regions, against the ground-truth region
(the cells an instance covers at all):
- the pointing game (Zhang et al., ECCV 2016): the map's peak cell lies in the region;
- the attention mass inside the region, of the map normalised to sum 1.
Chance for both is the region's share of the grid (a random peak, a uniform map).

Which thing a generated word names comes from the references: every span of a reference
caption that names instances (`grounding` in captions.json, or category names) is a phrase;
a generated caption's tokens that repeat a phrase name its instances (longest phrases first).
Words that name nothing are "non-visual" and reported apart, with how much they looked.
Numpy only: the converter and the device pipeline use it without TensorFlow.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from core.tokens import tokenize
from models.data.instances import grid_regions
from models.data.sample import Span

WORD_CLASSES: dict[str, dict[str, frozenset[str]]] = {
    "shapes": {
        "noun": frozenset({"circle", "square", "triangle"}),
        "attribute": frozenset({"small", "large", "red", "green", "blue", "yellow", "purple"}),
    },
    "chest": {
        "noun": frozenset(
            {
                "consolidation",
                "pneumonia",
                "airspace",
                "opacity",
                "nodule",
                "effusion",
                "heart",
                "cardiomegaly",
                "silhouette",
            }
        ),
        "attribute": frozenset(
            {
                "left",
                "right",
                "upper",
                "lower",
                "zone",
                "pleural",
                "pulmonary",
                "rounded",
                "small",
                "enlarged",
                "cardiac",
                "costophrenic",
                "angle",
                "blunting",
            }
        ),
        "anatomy": frozenset({"lungs"}),
    },
}
"""Word classes the minimums speak of: nouns that name a located thing, and the attribute
words of their phrases (size, colour, side, zone...)."""
MINIMUMS = {"noun.pointing": 0.90, "attribute.pointing": 0.80, "noun.mass": 0.50}


@dataclass
class ImageTruth:
    """What an image's references say is where: instance regions and the phrases naming them."""

    regions: np.ndarray
    """(K, n): the share of each grid cell instance k covers."""
    phrases: list[tuple[tuple[str, ...], tuple[int, ...]]]
    """Word sequences that name instances, longest first."""


def image_truth(
    coverage: Sequence[np.ndarray],
    captions: Sequence[str],
    spans: Sequence[Sequence[Span] | None],
    grid: int,
) -> ImageTruth:
    """From one image's instance coverages (uint8, image size) and its references' spans."""
    regions = grid_regions(np.stack(coverage), grid) if len(coverage) else np.zeros((0, grid**2))
    named: dict[tuple[str, ...], set[int]] = defaultdict(set)
    for caption, caption_spans in zip(captions, spans, strict=True):
        tokens = tokenize(caption)
        for s in caption_spans or []:
            if s.instances:
                named[tuple(tokens[s.start : s.end])].update(s.instances)
    phrases = sorted(((w, tuple(sorted(i))) for w, i in named.items()), key=lambda p: -len(p[0]))
    return ImageTruth(regions, phrases)


def assign(tokens: Sequence[str], truth: ImageTruth) -> list[tuple[int, ...] | None]:
    """The instances each generated token names (None: it names nothing of the image)."""
    out: list[tuple[int, ...] | None] = [None] * len(tokens)
    for words, instances in truth.phrases:
        n = len(words)
        for i in range(len(tokens) - n + 1):
            if tuple(tokens[i : i + n]) == words and all(o is None for o in out[i : i + n]):
                out[i : i + n] = [instances] * n
    return out


def word_class(domain: str, word: str, categories: Sequence[str] = ()) -> str:
    for name, words in WORD_CLASSES.get(domain, {}).items():
        if word in words:
            return name
    return "noun" if word in categories else "other"


@dataclass
class _Tally:
    n: int = 0
    hits: float = 0.0
    mass: float = 0.0
    chance: float = 0.0
    visual: float = 0.0

    def add(self, hit: bool, mass: float, chance: float, visual: float) -> None:
        self.n += 1
        self.hits += hit
        self.mass += mass
        self.chance += chance
        self.visual += visual

    def report(self) -> dict[str, float]:
        n = max(self.n, 1)
        return {
            "n": self.n,
            "pointing": self.hits / n,
            "mass": self.mass / n,
            "chance": self.chance / n,
            "visual": self.visual / n,
        }


@dataclass
class GroundingScorer:
    """Accumulates per-word pointing and mass over many captions; `report` sums them up."""

    domain: str
    categories: Sequence[str] = ()
    words: dict[str, _Tally] = field(default_factory=lambda: defaultdict(_Tally))
    classes: dict[str, _Tally] = field(default_factory=lambda: defaultdict(_Tally))
    non_visual: dict[str, _Tally] = field(default_factory=lambda: defaultdict(_Tally))
    named_absent: int = 0
    """Nouns generated for things the image does not have (nothing to point at)."""

    def add(
        self, tokens: Sequence[str], maps: np.ndarray, visual: np.ndarray, truth: ImageTruth
    ) -> None:
        """One caption: its tokens, (L, G, G) attention maps, (L,) visual shares."""
        for word, instances, m, v in zip(tokens, assign(tokens, truth), maps, visual, strict=True):
            cls = word_class(self.domain, word, self.categories)
            if instances is None:
                self.named_absent += cls == "noun"
                if cls == "other":
                    self.non_visual[word].add(False, 0.0, 0.0, float(v))
                continue
            cells = truth.regions[list(instances)].max(axis=0) > 0
            flat = np.asarray(m, dtype=np.float64).reshape(-1)
            total = flat.sum()
            mass = float(flat[cells].sum() / total) if total > 0 else 0.0
            hit = bool(cells[int(np.argmax(flat))]) if total > 0 else False
            chance = float(cells.mean())
            self.words[word].add(hit, mass, chance, float(v))
            self.classes[cls].add(hit, mass, chance, float(v))

    def report(self) -> dict[str, Any]:
        non_visual = _Tally()
        for t in self.non_visual.values():
            non_visual.n += t.n
            non_visual.visual += t.visual
        return {
            "classes": {k: t.report() for k, t in sorted(self.classes.items())},
            "words": {k: t.report() for k, t in sorted(self.words.items())},
            "non_visual": {
                "n": non_visual.n,
                "visual": non_visual.visual / max(non_visual.n, 1),
                "words": {
                    k: {"n": t.n, "visual": t.visual / max(t.n, 1)}
                    for k, t in sorted(self.non_visual.items())
                },
            },
            "nouns_for_absent_things": self.named_absent,
        }


def check(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The grounding minimums (nouns point >= 0.90, attributes >= 0.80, noun mass >= 0.50)."""
    out = {}
    for key, minimum in MINIMUMS.items():
        cls, metric = key.split(".")
        row = report["classes"].get(cls)
        if row and row["n"]:
            value = row[metric]
            out[f"grounding.{key}"] = {"value": value, "minimum": minimum, "ok": value >= minimum}
    return out


def score_captions(
    domain: str, ds: Any, captions: Sequence[Any], grid: int
) -> dict[str, Any] | None:
    """The grounding report of generated captions (each with `tokens`, `attention` maps and
    `visual` shares) on a data set with instances; None when it has none."""
    if ds.instances is None or ds.grounding is None:
        return None
    cats = sorted({c for insts in ds.instances for c, _ in insts})
    scorer = GroundingScorer(domain, cats)
    for i, cap in enumerate(captions):
        cover = [c for _, c in ds.instances[i]]
        if cover:
            truth = image_truth(cover, ds.captions[i], ds.grounding[i], grid)
            scorer.add(cap.tokens, cap.attention, cap.visual, truth)
    return scorer.report()
