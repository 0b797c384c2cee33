"""The one interface every output of the analysis implements.

An output plug-in is one class in one file: which bundle models it runs (per image, and per
request for a query), how it runs them on a preprocessed image (in an analysis process), the
typed fields it adds to a record, the blobs and derived files it stores, and how those fields
read in every view of a record (labels, searchable text, facets, anomaly, out-of-domain). The
views (`edge.analysis.views`) and the store never name an output; they go through this interface.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict

from edge.analysis.bundle import Bundle
from edge.analysis.runtime import Runner


class OutputFields(BaseModel):
    """An output's part of a record, stored as JSON; unknown keys are kept (a newer writer)."""

    model_config = ConfigDict(extra="allow")


OUT_OF_DOMAIN = "out_of_domain"
"""The label of an image out of the bundle's domain: the one thing search may show of it."""
QUERY_WORD = re.compile(r"[\w'-]+")
"""A word of a `/images/{id}/match` query, as the outputs that answer one read it."""
OOD_ABOVE = 1.0
"""An out-of-domain score above this is the verdict "out of the bundle's domain"."""
ACROSS = "filling the picture"


def place(x: float, y: float) -> str:
    """Where a point (fractions of the image's width and height) sits, as a caption says it:
    the image in thirds each way ("at the top left", "at the right", "in the centre")."""
    row = ("top", "", "bottom")[min(max(int(y * 3), 0), 2)]
    col = ("left", "", "right")[min(max(int(x * 3), 0), 2)]
    said = " ".join(w for w in (row, col) if w)
    return f"at the {said}" if said else "in the centre"


def map_place(m: np.ndarray) -> str:
    """Where a heat-map (G, G) over the whole image peaks, by `place`; ACROSS where more than
    half its cells are at least half its peak (it names no one part of the picture)."""
    if m.max() <= 0 or (m >= m.max() / 2).mean() > 0.5:
        return ACROSS
    r, c = np.unravel_index(int(np.argmax(m)), m.shape)
    return place((c + 0.5) / m.shape[1], (r + 0.5) / m.shape[0])


def article(word: str) -> str:
    """The word as a caption says it: "a cat", "an espresso"; a plural ("clothes", as far
    as its -s says) alone."""
    if word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word
    return f"{'an' if word[:1] in 'aeiou' else 'a'} {word}"


class Label(BaseModel):
    name: str
    score: float
    kind: str


@dataclass
class Produced:
    """What an output made of one image."""

    fields: OutputFields
    blobs: dict[str, bytes] = field(default_factory=dict)
    """Binary data kept beside the record (attention maps, vectors), by name."""
    files: dict[str, bytes] = field(default_factory=dict)
    """Derived files by kind (e.g. "mask"), served by the API."""
    timings: dict[str, float] = field(default_factory=dict)


class Output(ABC):
    """Runs in an analysis process (`run`); reads back anywhere (the class methods)."""

    key: ClassVar[str]
    Fields: ClassVar[type[OutputFields]]
    files: ClassVar[dict[str, tuple[str, str]]] = {}
    """Derived file kind -> (file suffix, media type)."""

    def __init__(self, bundle: Bundle) -> None:
        self.bundle = bundle
        self.settings: dict[str, Any] = bundle.settings(self.key)

    @abstractmethod
    def run(self, runners: dict[str, Runner], x: np.ndarray) -> Produced:
        """Analyse one preprocessed image (H, W, C float32)."""

    # -- views of stored fields (no bundle needed: a record may come from an older one) ------
    @classmethod
    def parse(cls, raw: dict[str, Any]) -> OutputFields:
        return cls.Fields.model_validate(raw)

    @classmethod
    def labels(cls, f: Any) -> list[Label]:
        return []

    @classmethod
    def text(cls, f: Any) -> str:
        """Searchable text (the caption)."""
        return ""

    @classmethod
    def classes(cls, f: Any) -> list[str]:
        """Facet values (segment classes present)."""
        return []

    @classmethod
    def anomaly(cls, f: Any) -> float | None:
        return None

    @classmethod
    def ood_score(cls, f: Any) -> float | None:
        """Above 1: the image is out of the bundle's domain."""
        return None

    VERDICT: tuple[str, ...] = ()
    """The fields that may leave the device for an image out of the bundle's domain (the
    verdict, not what the models made of the image): nothing, unless an output says so."""

    @classmethod
    def withheld(cls, raw: dict[str, Any]) -> dict[str, Any]:
        """The fields as an out-of-domain image's events and sidecars carry them."""
        return {k: v for k, v in raw.items() if k in cls.VERDICT}
