"""The unit a domain generator produces, and captions built from grounded parts."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from core.tokens import tokenize


class Instance(NamedTuple):
    """One located thing in an image: a COCO category and its pixel mask."""

    category: str
    mask: np.ndarray
    """bool (H, W)."""


class Span(NamedTuple):
    """Tokens [start, end) of a caption (as `tokenize` splits it) that name instances."""

    start: int
    end: int
    instances: tuple[int, ...]
    """Indices into the sample's instances; several = the union of their regions."""


Part = tuple[str, int | None]
"""A piece of caption text and the instance it names (None: words that name no region)."""


def compose(parts: Sequence[Part]) -> tuple[str, list[Span]]:
    """Join parts into a caption ("," parts attach without a space) and the token spans of the
    grounded ones, so the words that name a thing are known exactly, not guessed later."""
    text, spans, n = "", [], 0
    for piece, instance in parts:
        if not piece:
            continue
        text = text + piece if piece.startswith(",") or not text else f"{text} {piece}"
        count = len(tokenize(piece))
        if instance is not None and count:
            spans.append(Span(n, n + count, (instance,)))
        n += count
    return text, spans


class Sample(NamedTuple):
    """One generated example."""

    image: np.ndarray
    """uint8, (H, W, 3) for colour domains or (H, W) for grey-scale ones."""
    mask: np.ndarray
    """uint8 (H, W) class ids, indexing the domain's CLASS_NAMES."""
    meta: dict[str, Any]
    """Ground truth the captions were written from; `labels` and `primary_label` always present."""
    captions: list[str]
    """Reference captions, paraphrases of one another; the first is canonical."""
    instances: list[Instance]
    """Every located thing the captions can name."""
    grounding: list[list[Span]]
    """Per caption, the spans of words that name an instance."""
