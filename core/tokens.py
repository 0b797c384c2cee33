"""Caption tokenisation and the vocabulary.

Captions are lower-cased and split into words and commas; the same function tokenises training
captions, references for the metrics and the parser input, so every stage sees one token stream.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence

PAD, START, END, UNK = "<pad>", "<start>", "<end>", "<unk>"
SPECIALS = (PAD, START, END, UNK)
_TOKEN_RE = re.compile(r"[a-z0-9]+|,")
STOP = frozenset(
    {
        ",",
        "a",
        "an",
        "the",
        "of",
        "in",
        "is",
        "are",
        "with",
        "and",
        "there",
        "to",
        "from",
        "over",
        "on",
    }
)
"""Words that name nothing: in a query they give context to their neighbours, but no score
of their own, and a query of only these asks nothing."""


def tokenize(caption: str) -> list[str]:
    """Words and commas of a caption, lower-cased; other punctuation is dropped."""
    return _TOKEN_RE.findall(caption.lower())


def detokenize(tokens: Sequence[str]) -> str:
    """Join tokens back into a readable caption ("word ," becomes "word,")."""
    return " ".join(tokens).replace(" ,", ",")


class Vocabulary:
    """Token <-> id mapping with the four special tokens first (pad is 0)."""

    def __init__(self, words: Sequence[str]) -> None:
        words = list(words)
        if tuple(words[: len(SPECIALS)]) != SPECIALS:
            raise ValueError(f"vocabulary must start with {SPECIALS}, got {words[:4]}")
        if len(set(words)) != len(words):
            raise ValueError("vocabulary has duplicate words")
        self.words = words
        self._index = {w: i for i, w in enumerate(words)}

    @classmethod
    def build(cls, captions: Iterable[str], min_count: int = 1) -> Vocabulary:
        """Vocabulary of every token seen at least `min_count` times, most frequent first."""
        counts = Counter(t for c in captions for t in tokenize(c))
        kept = sorted(
            (w for w, n in counts.items() if n >= min_count), key=lambda w: (-counts[w], w)
        )
        return cls([*SPECIALS, *kept])

    def __len__(self) -> int:
        return len(self.words)

    @property
    def pad_id(self) -> int:
        return 0

    @property
    def start_id(self) -> int:
        return self._index[START]

    @property
    def end_id(self) -> int:
        return self._index[END]

    @property
    def unk_id(self) -> int:
        return self._index[UNK]

    def encode(self, caption: str, max_len: int) -> list[int]:
        """<start> tokens <end>, truncated to `max_len` ids and padded with 0 to that length."""
        ids = [self.start_id, *(self._index.get(t, self.unk_id) for t in tokenize(caption))]
        ids = [*ids[: max_len - 1], self.end_id]
        return ids + [self.pad_id] * (max_len - len(ids))

    def decode(self, ids: Iterable[int]) -> list[str]:
        """Tokens of a generated id sequence, stopping at <end> and skipping specials."""
        return self.decode_positions(ids)[0]

    def decode_positions(self, ids: Iterable[int]) -> tuple[list[str], list[int]]:
        """The decoded words and the step each came from, so per-step data (attention) stays
        aligned with its word when specials are skipped."""
        words: list[str] = []
        positions: list[int] = []
        for step, i in enumerate(ids):
            if i == self.end_id:
                break
            word = self.words[int(i)]
            if word not in SPECIALS:
                words.append(word)
                positions.append(step)
        return words, positions
