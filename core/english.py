"""Ordinary English words, which a typo correction never replaces with another word: "flower"
is a flower, not a misspelt "lower". The list is SCOWL's American English (Debian's
`wamerican`; `scripts/english-words.sh` rebuilds it, its licence beside it)."""

from __future__ import annotations

import gzip
from functools import cache
from pathlib import Path

WORDS_FILE = Path(__file__).with_name("data") / "english-words.txt.gz"
SUFFIXES = ("s", "es", "d", "ed")


@cache
def english_words() -> frozenset[str]:
    return frozenset(gzip.decompress(WORDS_FILE.read_bytes()).decode().split())


def is_english(word: str) -> bool:
    return word in english_words()


def inflected(a: str, b: str) -> bool:
    """One word is the other plus an ending ("effusions", "effusion"): the same word, which
    correcting to does not replace."""
    short, long = sorted((a, b), key=len)
    return any(long == short + s for s in SUFFIXES)
