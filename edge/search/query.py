"""What a keyword query must be before any parser sees it, and how its plain words are read.

Tantivy's parsers recurse, and a deeply nested query can crash the process (3000 "(" segfault
the lenient parser): a query is bounded in length, nesting and terms, and unbalanced
parentheses or quotes are refused saying where.
"""

from __future__ import annotations

import re

import tantivy

from core.tokens import STOP
from edge.search.engine import QuerySyntaxError

MAX_QUERY_CHARS = 512
MAX_QUERY_DEPTH = 16
MAX_QUERY_TERMS = 64
PLAIN_WORDS = re.compile(r"[a-z0-9 ]+", re.IGNORECASE)
WORD = re.compile(r"[^\s:\"()+\-*^~\[\]{}]+")
FIELD = re.compile(r"\b\w+:")
OPERATORS = frozenset({"AND", "OR", "NOT", "TO"})
CAPTION_STOP = sorted((STOP - {","}) | {"at", "also"})
"""Words the caption field does not hold: they name nothing (a query drops them too), and a
one-letter typo must not find every caption through them ("kat" is one edit from "at")."""
CAPTION_TOKENIZER = "s3e_caption"
CAPTION_ANALYZER = (
    tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.simple())
    .filter(tantivy.Filter.remove_long(40))
    .filter(tantivy.Filter.lowercase())
    .filter(tantivy.Filter.custom_stopword(CAPTION_STOP))
    .filter(tantivy.Filter.stemmer("english"))
    .build()
)
"""The caption field's analyzer: tantivy's `en_stem` less CAPTION_STOP. Registered on the
index under CAPTION_TOKENIZER, and used here to read a query's words as the index holds them."""


def check_query(q: str) -> None:
    """Refuse a query over the bounds, or with unbalanced parentheses or quotes, saying
    where; what passes goes to tantivy's strict parser."""
    if len(q) > MAX_QUERY_CHARS:
        raise QuerySyntaxError(f"query of {len(q)} characters; at most {MAX_QUERY_CHARS}")
    depth, quoted, opened = 0, False, []
    for i, ch in enumerate(q):
        if ch == '"':
            quoted = not quoted
        elif quoted:
            continue
        elif ch == "(":
            depth += 1
            opened.append(i)
            if depth > MAX_QUERY_DEPTH:
                raise QuerySyntaxError(f"parentheses nested deeper than {MAX_QUERY_DEPTH}")
        elif ch == ")":
            if not opened:
                raise QuerySyntaxError(f"unmatched ')' at position {i}")
            depth -= 1
            opened.pop()
    if quoted:
        raise QuerySyntaxError(f"unclosed '\"' at position {q.rindex(chr(34))}")
    if opened:
        raise QuerySyntaxError(f"unclosed '(' at position {opened[-1]}: expected ')'")
    terms = len(q.replace("(", " ").replace(")", " ").split())
    if terms > MAX_QUERY_TERMS:
        raise QuerySyntaxError(f"query of {terms} terms; at most {MAX_QUERY_TERMS}")


def plain(q: str) -> bool:
    """Only words and spaces: no field, operator, phrase or range syntax."""
    return bool(PLAIN_WORDS.fullmatch(q.strip()))


def phrased(q: str) -> bool:
    """Two or more plain words: their phrase re-scores the best matches."""
    return plain(q) and " " in q.strip()


def query_words(q: str) -> list[str]:
    """The words of a query: every word but the operators and field names."""
    return [w for w in WORD.findall(FIELD.sub(" ", q)) if w not in OPERATORS]


def field_terms(q: str) -> dict[str, set[str]]:
    """The terms a query's words can become in the caption (stemmed) and the labels (as
    typed: a raw field). A superset for a query with syntax: every word but the operators and
    field names, in both fields."""
    words = query_words(q)
    return {
        "caption": {t for w in words for t in CAPTION_ANALYZER.analyze(w)},
        "labels": set(words),
    }
