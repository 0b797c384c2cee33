"""Semantic search at query time, numpy only (the daemon runs it without TensorFlow): a query's
words against the vocabulary the text encoder knows (with one-edit typo correction), their
token ids, and the late-interaction score of the word vectors against an image's regions.

An image's vectors are its n grid regions then one whole-image vector (the embedder's
projection); a word's map over the image is its similarity over the n regions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from core.english import inflected, is_english
from core.tokens import STOP, tokenize

UNK_ID = 1
"""Token id of an unknown word (0 pads)."""


def within_one_edit(a: str, b: str) -> bool:
    """Damerau-Levenshtein distance <= 1 (one insertion, deletion, substitution or swap of
    neighbours), as Tantivy's fuzzy terms count it."""
    if a == b:
        return True
    la, lb = len(a), len(b)
    if abs(la - lb) > 1:
        return False
    i = 0
    while i < min(la, lb) and a[i] == b[i]:
        i += 1
    if la == lb:
        return a[i + 1 :] == b[i + 1 :] or (
            a[i : i + 2] == b[i : i + 2][::-1] and a[i + 2 :] == b[i + 2 :]
        )
    short, long = (a, b) if la < lb else (b, a)
    return short[i:] == long[i + 1 :]


def correct(word: str, vocab: Sequence[str]) -> str | None:
    """The vocabulary word a query word means: itself, or the first (the vocabulary is in
    order of frequency) within one edit; None: nothing near. Words under 3 letters are taken
    as they are or not at all, and an ordinary English word is corrected only to another
    form of itself (a plural, a past tense)."""
    if word in vocab:
        return word
    if len(word) < 3:
        return None
    english = is_english(word)
    return next(
        (
            v
            for v in vocab
            if v[:1].isalnum() and within_one_edit(word, v) and (not english or inflected(word, v))
        ),
        None,
    )


@dataclass(frozen=True)
class ParsedQuery:
    """A query's words as the encoder will read them."""

    words: list[str]
    """Known or corrected words, in order (stop words kept: they give context)."""
    corrected: dict[str, str]
    """Typed word -> the vocabulary word it was taken for."""
    unknown: list[str]
    """Content words with nothing within one edit in the vocabulary (dropped)."""

    @property
    def content(self) -> list[str]:
        return [w for w in self.words if w not in STOP]


def parse_query(text: str, vocab: Sequence[str]) -> ParsedQuery:
    """Tokenise, correct each word to the vocabulary, drop the unknown ones."""
    words: list[str] = []
    corrected: dict[str, str] = {}
    unknown: list[str] = []
    for w in tokenize(text):
        if w in STOP:
            words.append(w)
            continue
        fixed = correct(w, vocab)
        if fixed is None:
            unknown.append(w)
        else:
            words.append(fixed)
            if fixed != w:
                corrected[w] = fixed
    return ParsedQuery(words, corrected, unknown)


def token_ids(words: Sequence[str], index: dict[str, int], max_tokens: int) -> np.ndarray:
    """(max_tokens,) int32 ids, 0-padded; the encoder's input."""
    out = np.zeros(max_tokens, np.int32)
    for k, w in enumerate(words[:max_tokens]):
        out[k] = index.get(w, UNK_ID)
    return out


def content_mask(words: Sequence[str], max_tokens: int) -> np.ndarray:
    out = np.zeros(max_tokens, np.float32)
    for k, w in enumerate(words[:max_tokens]):
        out[k] = w not in STOP
    return out


def late_interaction(words: np.ndarray, mask: np.ndarray, images: np.ndarray) -> np.ndarray:
    """(T, D) word vectors, (T,) content mask, (B, n + 1, D) image vectors -> (B,) scores:
    each content word's best similarity over the image's vectors, averaged over the words."""
    return scored(words, mask, images)[0]


def scored(
    words: np.ndarray, mask: np.ndarray, images: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """((B,) late-interaction scores, (B, T) each content word's best similarity per image,
    0 for the other words). Only the content words are compared: a query's padding and stop
    words are most of its T rows, and this runs on every search."""
    content = np.flatnonzero(mask)
    best = np.zeros((len(images), len(words)), np.float32)
    if len(content):
        best[:, content] = (images @ words[content].T).max(1)
    return (best * mask).sum(-1) / max(float(mask.sum()), 1.0), best


def word_maps(words: np.ndarray, image: np.ndarray) -> np.ndarray:
    """(T, D) word vectors, (n + 1, D) one image's vectors -> (T, n) similarity over the grid
    regions (the whole-image vector is not a place)."""
    return words @ image[:-1].T
