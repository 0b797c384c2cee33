"""Query words that are no label, searched through the labels related to them.

A photos bundle labels what its classifier knows ("coffee mug", "seashore", "tabby cat") with
the words people use for it; its `related` asset (`models.photos.related`) adds, for words that
are none of those, the labels that answer them: "mug" -> coffee mug, "ocean" -> coast, "bug"
-> insect. A keyword query's plain words are searched as themselves or any of their related
labels, each at its relation's score, so an image holding the word itself ranks first. A word
the table lacks but holds one edit away ("ocaen") is read as that word, unless a label's word
lies one edit away too (the index's own typo tolerance then finds it).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from core.english import is_english
from core.semantic import within_one_edit
from core.tokens import STOP, tokenize
from edge.analysis.bundle import Bundle

ASSET = "related"
OUTPUT = "classify"


@dataclass
class Expansion:
    """A keyword query with its words' related labels, and what was read how."""

    query: str
    related: dict[str, list[str]] = field(default_factory=dict)
    """Each query word searched through labels -> those labels."""
    corrected: dict[str, str] = field(default_factory=dict)
    """Typed word -> the related table's word it was read as."""
    words: list[str] = field(default_factory=list)
    """The query's parts (a word, or a word with its related labels), each one required in
    `query`; joined by OR when no image holds them all."""


class RelatedWords:
    """One bundle's table: word -> [(label word, score)], best first."""

    def __init__(self, table: Mapping[str, Sequence[Sequence[Any]]], labels: set[str]) -> None:
        self.table = {w: [(str(lab), float(s)) for lab, s in rel] for w, rel in table.items()}
        self.labels = labels
        self.label_tokens = {t for lab in labels for t in lab.split()}
        self._by_length: dict[int, list[str]] = {}
        for w in self.table:
            self._by_length.setdefault(len(w), []).append(w)

    def lookup(self, word: str) -> tuple[str, list[tuple[str, float]]]:
        """(the table's word it reads as, its related labels); ("", []) for none."""
        for read in (word, word.removesuffix("s"), word.removesuffix("es")):
            if read in self.table:
                return read, self.table[read]
        if word in self.label_tokens or len(word) < 4 or is_english(word):
            return "", []
        if any(within_one_edit(word, t) for t in self.label_tokens if abs(len(t) - len(word)) < 2):
            return "", []
        for n in (len(word), len(word) - 1, len(word) + 1):
            for candidate in self._by_length.get(n, []):
                if within_one_edit(word, candidate):
                    return candidate, self.table[candidate]
        return "", []

    def expand(self, q: str) -> Expansion | None:
        """The query `q` (words, no syntax) with its words' related labels; None when no word
        of it has any (the query then runs as typed)."""
        out = Expansion(query="")
        for word in (w for w in tokenize(q) if w not in STOP):
            read, rel = self.lookup(word)
            if not rel:
                out.words.append(word)
                continue
            if read != word:
                out.corrected[word] = read
            out.related[word] = [lab for lab, _ in rel]
            alts = " OR ".join(f'"{lab}"^{s:g}' if " " in lab else f"{lab}^{s:g}" for lab, s in rel)
            out.words.append(f"({read} OR {alts})")
        if not out.related:
            return None
        out.query = " ".join(out.words)
        return out


class RelatedTables:
    """The related words of the running bundles (the first that has them), read once per
    bundle."""

    def __init__(self, bundles: Callable[[], list[Bundle]]) -> None:
        self.bundles = bundles
        self._tables: dict[str, RelatedWords | None] = {}
        self._lock = threading.Lock()

    def __call__(self) -> RelatedWords | None:
        """None when no running bundle has related words."""
        bundle = next((b for b in self.bundles() if self._has(b)), None)
        if bundle is None:
            return None
        with self._lock:
            if bundle.version not in self._tables:
                self._tables = {bundle.version: self._read(bundle)}
            return self._tables[bundle.version]

    @staticmethod
    def _has(bundle: Bundle) -> bool:
        spec = bundle.doc.outputs.get(OUTPUT)
        return spec is not None and ASSET in spec.assets

    @staticmethod
    def _read(bundle: Bundle) -> RelatedWords:
        words = bundle.asset("words")["words"]
        return RelatedWords(bundle.asset(ASSET), set(words))
