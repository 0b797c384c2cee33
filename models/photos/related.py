"""Words people search photos by that are no label, each with the labels that answer it.

A photo labelled "coffee mug" should come up for "mug", a seashore for "ocean", a beetle for
"bug", a tabby for "kitten". The labels' words (`models.photos.words`) cannot hold every such
word, so each other word gets the label words that answer it, from the strongest evidence
there is:

1. **WordNet, downwards**: the word names a synset with ImageNet classes under it ("mug",
   "automobile", "canine"): the fewest label words covering those classes, score 1.
2. **WordNet, upwards**: the word names a kind of something with classes under it, one or
   two steps up ("bug" is an insect, "cow" is cattle, "puppy" a dog): that something's label
   words, score `UPWARD`. Farther up, or above `MAX_UPWARD_CLASSES` classes, says too little.
3. **Everyday words WordNet files elsewhere** (`EVERYDAY`: a kitten is WordNet's young
   mammal, not a cat), score `UPWARD`.
4. **GloVe**: otherwise the one-word labels nearest in GloVe 6B (cosine >= `MIN_COSINE`), at
   most `GLOVE_TOP`, each scored by its cosine times `UPWARD`: "tv" finds "television",
   "woman" finds "person", "ocean" finds "coast".

The device reads the table as the bundle's `related` asset and searches a word's related
labels beside it, below its own matches (`core.related`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

from models.photos.words import Synset, ancestors, read_senses, read_synsets
from models.pretrained.assets import fetch

UPWARD = 0.8
MAX_UPWARD_CLASSES = 150
MAX_COVER = 4
"""Label words a WordNet relation names at most (the largest classes' words first)."""
MIN_COSINE = 0.78
GLOVE_TOP = 2
GLOVE_WORDS = 60_000
"""The most frequent GloVe words that may be queries (the table stays under 2 MB)."""
WORD = re.compile(r"^[a-z]{2,}$")
NOT_NOUNS = frozenset(
    [
        "red",
        "green",
        "blue",
        "yellow",
        "white",
        "black",
        "brown",
        "pink",
        "purple",
        "grey",
        "gray",
        "big",
        "small",
        "large",
        "little",
        "old",
        "young",
        "new",
        "dark",
        "light",
        "tall",
        "short",
        "long",
        "wet",
        "dry",
        "hot",
        "cold",
    ]
)
"""Words people type as adjectives ("red flower"), whose noun senses (a communist, a
colour) would only add wrong labels."""
EVERYDAY: dict[str, tuple[str, ...]] = {
    "kitten": ("cat",),
    "kitty": ("cat",),
    "doggy": ("dog",),
    "doggie": ("dog",),
    "bunny": ("rabbit",),
    "sofa": ("studio couch",),
    "couch": ("studio couch",),
    "lorry": ("truck",),
    "cellphone": ("cellular telephone",),
    "smartphone": ("cellular telephone",),
    "tortoise": ("turtle",),
}
"""Words whose WordNet synset lies elsewhere than what people mean -> the labels they mean."""

Related = dict[str, list[tuple[str, float]]]


def class_sets(words: Mapping[str, Iterable[int]]) -> dict[str, frozenset[int]]:
    return {w: frozenset(c) for w, c in words.items()}


def under(classes: list[dict[str, str]], synsets: Mapping[str, Synset]) -> dict[str, set[int]]:
    """Each synset -> the class indices under it (itself included)."""
    out: dict[str, set[int]] = {}
    for i, c in enumerate(classes):
        for wnid in (c["wnid"], *ancestors(c["wnid"], synsets)):
            out.setdefault(wnid, set()).add(i)
    return out


def cover(
    covered: set[int], words: Mapping[str, frozenset[int]], prefer: Iterable[str] = ()
) -> list[str]:
    """The fewest label words (largest first, at most MAX_COVER) whose classes all lie in
    `covered` and together take in as much of it as they can; among words of as many classes,
    those in `prefer` (the covering synset's own lemmas: "insect" over "beetle") first."""
    own = {w.lower() for w in prefer}
    fits = sorted(
        (w for w, c in words.items() if c <= covered), key=lambda w: (-len(words[w]), w not in own)
    )
    out: list[str] = []
    left = set(covered)
    for w in fits:
        if words[w] & left:
            out.append(w)
            left -= words[w]
        if not left or len(out) == MAX_COVER:
            break
    return out


def wordnet_related(
    senses: list[str],
    below: Mapping[str, set[int]],
    synsets: Mapping[str, Synset],
    words: Mapping[str, frozenset[int]],
) -> list[tuple[str, float]]:
    """Rules 1 and 2 for one word's synsets (WordNet's order): downwards from all of them;
    else upwards from the first that has a parent or grandparent with classes under it."""
    down = set().union(*(below.get(s, set()) for s in senses))
    if down:
        return [(w, 1.0) for w in cover(down, words)]
    for sense in senses:
        parents = list(synsets[sense].hypernyms) if sense in synsets else []
        grandparents = [g for p in parents for g in synsets[p].hypernyms]
        near = next((a for a in (*parents, *grandparents) if a in below), None)
        if near is not None and len(below[near]) <= MAX_UPWARD_CLASSES:
            return [(w, UPWARD) for w in cover(below[near], words, synsets[near].lemmas)]
    return []


def glove_related(
    vocab: list[str], vectors: np.ndarray, words: Iterable[str], queries: Iterable[str]
) -> Related:
    """Rule 4: each query word's one-word labels within MIN_COSINE in GloVe."""
    at = {w: i for i, w in enumerate(vocab)}
    labels = [w for w in words if w in at]
    if not labels:
        return {}
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-9)
    lab = unit[[at[w] for w in labels]]
    out: Related = {}
    for q in queries:
        if q not in at:
            continue
        sims = lab @ unit[at[q]]
        best = np.argsort(-sims)[:GLOVE_TOP]
        near = [(labels[i], round(UPWARD * float(sims[i]), 3)) for i in best]
        near = [(w, s) for (w, s), i in zip(near, best, strict=True) if sims[i] >= MIN_COSINE]
        if near:
            out[q] = near
    return out


def build(
    classes_doc: Mapping[str, object],
    synsets: Mapping[str, Synset],
    senses: Mapping[str, list[str]],
    vocab: list[str],
    vectors: np.ndarray,
    everyday: Mapping[str, tuple[str, ...]] = EVERYDAY,
) -> Related:
    """The table for a `words.json` document (`models.photos.words.to_json`), from WordNet's
    synsets and each word's senses (`models.photos.words.read_senses`), the curated
    `everyday` words and GloVe."""
    classes = classes_doc["classes"]
    raw_words = classes_doc["words"]
    assert isinstance(classes, list) and isinstance(raw_words, dict)
    words = class_sets(raw_words)
    below = under(classes, synsets)
    out: Related = {}
    for word, names in sorted(senses.items()):
        if word not in words and word not in NOT_NOUNS and WORD.match(word):
            found = wordnet_related(names, below, synsets, words)
            if found:
                out[word] = found
    for word, labels in everyday.items():
        missing = [w for w in labels if w not in words]
        if missing:
            raise ValueError(f"everyday word {word!r} names {missing}, which label no class")
        out[word] = [(w, UPWARD) for w in labels]
    singles = [w for w in words if WORD.match(w)]
    frequent = [
        w for w in vocab[:GLOVE_WORDS] if WORD.match(w) and w not in words and w not in NOT_NOUNS
    ]
    for word, near in glove_related(vocab, vectors, singles, frequent).items():
        out.setdefault(word, near)
    return out


def build_from_assets(classes_doc: Mapping[str, object], cache: Path | None = None) -> Related:
    """`build` from the `wordnet` and `glove` assets (fetched once into the cache)."""
    wordnet, glove = fetch("wordnet", cache), fetch("glove", cache)
    vocab, vectors = read_glove(glove["glove_6B_50d_emb.npy"], glove["glove_6B_index.parquet"])
    return build(
        classes_doc,
        read_synsets(wordnet["data.noun"]),
        read_senses(wordnet["index.noun"]),
        vocab,
        vectors,
    )


def read_glove(npy: Path, parquet: Path) -> tuple[list[str], np.ndarray]:
    """GloVe's words (most frequent first) and their vectors, from the `glove` asset."""
    import pyarrow.parquet as pq

    vocab = [str(w) for w in pq.read_table(parquet).column(0).to_pylist()]
    vectors = np.load(npy)
    if vectors.shape[0] != len(vocab):
        raise ValueError(f"{npy}: {vectors.shape[0]} vectors for {len(vocab)} words")
    return vocab, vectors


def write(related: Related, path: Path) -> Path:
    """The table as compact JSON: word -> [[label word, score], ...], best first."""
    doc = {w: [[lab, s] for lab, s in r] for w, r in sorted(related.items())}
    path.write_text(json.dumps(doc, ensure_ascii=False, separators=(",", ":")) + "\n")
    return path
