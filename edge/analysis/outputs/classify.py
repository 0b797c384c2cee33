"""`classify`: a pretrained ImageNet classifier read as the words people search by.

One pass of the classifier gives the 1000 classes' logits, each class's activation map over
the last feature map (CAM) and the pooled features. A word (from the bundle's `words` asset:
WordNet's names of each class and of its useful ancestors, so a tabby is also "cat" and
"animal") scores the probability its classes hold together; the words holding at least
`min_score` label the image, narrowest first. Each label gets a heat-map: its classes' activation
maps among the `map_classes` most probable, weighted by their probability, kept as uint8 in
the `label_maps` blob (what `/images/{id}/match` shows for a query word that labels the
image). The pooled features, unit length, are the `latent` blob: "similar images" are those
whose backbone features are nearest. The anomaly score is the classifier's doubt, 1 - its top
class's probability (Hendrycks and Gimpel's baseline): it needs no model of "usual" photographs,
which no registry offers enough of to fit.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from pydantic import BaseModel

from edge.analysis.bundle import BundleError
from edge.analysis.outputs.base import (
    QUERY_WORD,
    Label,
    Output,
    OutputFields,
    Produced,
    article,
    map_place,
)
from edge.analysis.runtime import Runner


class WordScore(BaseModel):
    word: str
    score: float
    also: list[str] = []
    """Other words naming the same classes (coffee for espresso): searchable, not shown."""
    at: str = ""
    """Where its heat-map peaks, in words (`place`): what the caption says of it."""


class ClassScore(BaseModel):
    index: int
    name: str
    p: float


class ClassifyFields(OutputFields):
    labels: list[WordScore]
    """The words that label the image, narrowest first ("tabby cat, cat, pet, animal")."""
    classes: list[ClassScore]
    """The most probable ImageNet classes (what the words come from)."""
    grid: int
    """Cells per side of each label's heat-map in the `label_maps` blob."""
    doubt: float | None = None
    """1 - the most probable class's probability: how unusual the image is to the classifier
    (a scene, a texture or a drawing it has no class for scores high), its anomaly score."""


class Vocabulary:
    """Words -> ImageNet classes, as the `words` asset lists them. Words naming the same
    classes are one label (bobsled, bobsleigh, bob), said by its class's name where it names
    one class, else by its shortest word; the labels' scores are computed all at once."""

    def __init__(self, doc: dict[str, Any]) -> None:
        self.names: list[str] = [c["name"] for c in doc["classes"]]
        groups: dict[tuple[int, ...], list[str]] = {}
        for word, members in sorted(doc["words"].items()):
            if not members or not all(0 <= int(i) < len(self.names) for i in members):
                raise BundleError(f"words: {word!r} names no class, or one that is not there")
            groups.setdefault(tuple(sorted({int(i) for i in members})), []).append(word)
        if not groups:
            raise BundleError("words: no word names a class")
        self.labels: list[str] = [self._say(k, ws) for k, ws in groups.items()]
        self.synonyms = {
            say: [w for w in ws if w != say]
            for say, ws in zip(self.labels, groups.values(), strict=True)
        }
        members = [np.asarray(k, np.int64) for k in groups]
        self.index = np.concatenate(members)
        self.starts = np.cumsum([0, *(len(m) for m in members[:-1])])
        self.classes = dict(zip(self.labels, members, strict=True))

    def _say(self, members: tuple[int, ...], words: list[str]) -> str:
        own = self.names[members[0]].lower() if len(members) == 1 else ""
        return own if own in words else min(words, key=lambda w: (len(w), w))

    def scores(self, p: np.ndarray) -> np.ndarray:
        """Each label's probability: the sum of its classes' (`p`: the 1000 softmax)."""
        return np.add.reduceat(p[self.index], self.starts)


class UserHead:
    """Labels of the user's own (`s3e-train fit-photos`, the bundle's `user_head` asset): a
    softmax regression on the standardised logits. Linear in the logits, so applied to each
    cell's class activations it gives each of the user's classes its heat-map. A class also
    needs the photograph within its reach (`within`)."""

    def __init__(self, doc: dict[str, Any]) -> None:
        try:
            self.classes = [str(c) for c in doc["classes"]]
            self.mean, self.std = np.asarray(doc["mean"], float), np.asarray(doc["std"], float)
            self.weights = np.asarray(doc["weights"], float)
            self.bias = np.asarray(doc["bias"], float)
            self.min_score = float(doc["min_score"])
            self.centroids = np.asarray(doc["centroids"], float)
            self.min_similarity = np.asarray(doc["min_similarity"], float)
        except (KeyError, TypeError, ValueError) as e:
            raise BundleError(f"user_head: {e}") from None
        k, n = len(self.classes), len(self.mean)
        shapes = (self.weights.shape, self.centroids.shape, self.bias.shape, self.std.shape)
        if shapes != ((k, n), (k, n), (k,), (n,)) or self.min_similarity.shape != (k,):
            raise BundleError(f"user_head: weights {self.weights.shape} for {k} classes")

    def scores(self, logits: np.ndarray) -> np.ndarray:
        """(..., classes) from (..., 1000): one logit's worth of each class of the user's."""
        return np.asarray(((logits - self.mean) / self.std) @ self.weights.T + self.bias)

    def probabilities(self, logits: np.ndarray) -> np.ndarray:
        return softmax(self.scores(logits))

    def within(self, logits: np.ndarray) -> np.ndarray:
        """(classes,) bool: whether the photograph is as near each class's centroid as its
        own photographs were (the head alone would give every photograph a class)."""
        z = (logits - self.mean) / self.std
        return np.asarray(self.centroids @ (z / np.linalg.norm(z)) >= self.min_similarity)

    def taken(self, logits: np.ndarray) -> list[int]:
        """The classes that label the photograph, likeliest first: at least `min_score`
        probable and within reach."""
        p, near = self.probabilities(logits), self.within(logits)
        return [int(i) for i in np.argsort(-p) if p[i] >= self.min_score and near[i]]


def user_labels(
    head: UserHead, logits: np.ndarray, cams: np.ndarray
) -> tuple[list[WordScore], np.ndarray]:
    """The user's classes at least `min_score` probable, likeliest first, and their maps
    (labels, G, G) uint8, stretched as `label_maps` stretches."""
    p, keep = head.probabilities(logits), head.taken(logits)
    cells = head.scores(cams.astype(np.float64))  # (G, G, classes)
    maps = np.zeros((len(keep), *cams.shape[:2]), np.uint8)
    for k, i in enumerate(keep):
        m = cells[..., i] - cells[..., i].min()
        if m.max() > 0:
            maps[k] = np.rint(255 * m / m.max()).astype(np.uint8)
    words = [WordScore(word=head.classes[i], score=round(float(p[i]), 4)) for i in keep]
    return words, maps


def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.exp(logits - logits.max())
    return z / z.sum()


def label_words(vocab: Vocabulary, p: np.ndarray, top: int, min_score: float) -> list[WordScore]:
    """The labels whose classes hold at least `min_score`, narrowest first (fewest classes:
    "tabby cat, cat, pet, animal"), the likelier first among as narrow; at most `top`. The
    broader labels hold more probability by construction, so ordering by score alone would
    put "animal" first on every animal, and the word that says what it is last."""
    s = vocab.scores(p)
    order = sorted(
        np.flatnonzero(s >= min_score),
        key=lambda i: (len(vocab.classes[vocab.labels[i]]), -round(float(s[i]), 3)),
    )
    return [
        WordScore(word=w, score=round(float(s[i]), 4), also=vocab.synonyms[w])
        for i in order[: max(top, 0)]
        for w in [vocab.labels[i]]
    ]


def label_maps(
    vocab: Vocabulary, labels: list[WordScore], p: np.ndarray, cams: np.ndarray, n: int
) -> np.ndarray:
    """(labels, G, G) uint8: each label's classes' activation maps among the `n` most
    probable classes, weighted by their probability, stretched from 0 (its least active cell)
    to 255 (its most): where the label is, against the rest of the image."""
    best = np.argsort(-p)[:n]
    out = np.zeros((len(labels), *cams.shape[:2]), np.uint8)
    for k, label in enumerate(labels):
        mine = best[np.isin(best, vocab.classes[label.word])]
        m = np.tensordot(cams[..., mine], p[mine], axes=([2], [0]))
        m = m - m.min()
        if m.max() > 0:
            out[k] = np.rint(255 * m / m.max()).astype(np.uint8)
    return out


def sentence(labels: list[WordScore]) -> list[str]:
    """One clause a place, in the labels' order (narrowest first), by `ClassifyOutput.text`."""
    places: dict[str, list[WordScore]] = {}
    for w in labels:
        places.setdefault(w.at, []).append(w)
    clauses = []
    for at, ws in places.items():
        said = [w.word for w in ws]
        also = sorted({a for w in ws for a in w.also} - set(said))
        more = [", ".join(said[1:]), f"also {', '.join(also)}" if also else ""]
        inside = "; ".join(m for m in more if m)
        parts = [article(said[0]), at, f"({inside})" if inside else ""]
        clauses.append(" ".join(x for x in parts if x))
    return clauses


def _names(w: WordScore) -> set[str]:
    """What names a label: its words and each word in them ("cat" of "egyptian cat")."""
    said = [w.word, *w.also]
    return {*said, *(part for name in said for part in name.split())}


def match(
    f: ClassifyFields,
    blob: bytes,
    q: str,
    related: Callable[[str], list[str]] = lambda _: [],
) -> dict[str, Any] | None:
    """`/images/{id}/match` of an image the classifier labelled: a query word naming one of
    its labels (`_names`), or related to one (`related`: a word's related labels, as search
    reads them), gets that label's heat-map (summing to 1) and score; the other words are
    `unknown` to this image. None when the blob is not one map per label."""
    if f.grid < 1 or len(blob) != len(f.labels) * f.grid * f.grid:
        return None
    maps = np.frombuffer(blob, np.uint8).reshape(-1, f.grid * f.grid).astype(np.float64)
    words, unknown = [], []
    for token in QUERY_WORD.findall(q.lower()):
        k = _label_of(f, token) if token else -1
        via = next((lab for lab in related(token) if _label_of(f, lab) >= 0), "") if k < 0 else ""
        k = _label_of(f, via) if via else k
        if k < 0 or not maps[k].sum():
            unknown.append(token)
            continue
        m = maps[k] / maps[k].sum()
        found = {"word": token, "map": [round(float(x), 5) for x in m], "score": f.labels[k].score}
        words.append({**found, "via": via} if via else found)
    return {"grid": f.grid, "words": words, "unknown": unknown, "corrected": {}}


def _label_of(f: ClassifyFields, word: str) -> int:
    """The index of the first label `word` names, or -1."""
    return next((k for k, w in enumerate(f.labels) if word in _names(w)), -1)


class ClassifyOutput(Output):
    key = "classify"
    Fields = ClassifyFields

    def __init__(self, bundle: Any) -> None:
        super().__init__(bundle)
        self.vocab = Vocabulary(bundle.asset("words"))
        self.top = int(self.settings["top_labels"])  # written by the converter's export
        self.min_score = float(self.settings["min_score"])
        self.map_classes = int(self.settings["map_classes"])
        own = "user_head" in bundle.doc.outputs[self.key].assets
        self.head = UserHead(bundle.asset("user_head")) if own else None

    def classify(self, runners: dict[str, Runner], x: np.ndarray) -> dict[str, np.ndarray]:
        """The classifier's logits (1000), class maps (G, G, 1000) and features (1280)."""
        out = runners["classifier"](image=x[None].astype(np.float32))
        return {k: v[0] for k, v in out.items()}

    def run(self, runners: dict[str, Runner], x: np.ndarray) -> Produced:
        got = self.classify(runners, x)
        p = softmax(got["logits"].astype(np.float64))
        labels = label_words(self.vocab, p, self.top, self.min_score)
        maps = label_maps(self.vocab, labels, p, got["cams"], self.map_classes)
        if self.head is not None:  # the user's own labels first
            own, own_maps = user_labels(self.head, got["logits"].astype(np.float64), got["cams"])
            labels, maps = own + labels, np.concatenate([own_maps, maps])
        for label, m in zip(labels, maps, strict=True):
            label.at = map_place(m)
        feats = got["features"].astype(np.float32)
        best = np.argsort(-p)[:5]
        classes = [
            ClassScore(index=int(i), name=self.vocab.names[i], p=round(float(p[i]), 4))
            for i in best
        ]
        grid, doubt = int(got["cams"].shape[0]), round(1 - float(p.max()), 4)
        return Produced(
            ClassifyFields(labels=labels, classes=classes, grid=grid, doubt=doubt),
            blobs={
                "label_maps": maps.tobytes(),
                "latent": (feats / max(float(np.linalg.norm(feats)), 1e-6)).tobytes(),
            },
        )

    @classmethod
    def labels(cls, f: Any) -> list[Label]:
        return [Label(name=w.word, score=w.score, kind="class") for w in f.labels]

    @classmethod
    def text(cls, f: Any) -> str:
        """The caption: a sentence of the labels and where each sits, said by what it is (no
        captioner wrote it): each place its narrowest label, the broader ones and the other
        words after it ("an egyptian cat in the centre (cat, pet, animal)"; "an espresso in
        the centre (drink; also coffee)")."""
        return "; ".join(sentence(f.labels))

    @classmethod
    def classes(cls, f: Any) -> list[str]:
        return [w.word for w in f.labels]

    @classmethod
    def anomaly(cls, f: Any) -> float | None:
        return None if f.doubt is None else float(f.doubt)
