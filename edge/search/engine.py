"""The search the device and the fleet both serve: `keyword`, `semantic` or `hybrid` over a
backend that holds the documents (Tantivy and the device's vectors; LanceDB in the fleet).

The engine owns what a user sees the same everywhere: which mode a query really gets, the
fusion of the two rankings, each hit's "why it matched" and the message that names unknown
words, corrections or why nothing matched. A backend owns only its reads (`Backend`, `View`).
Reciprocal-rank fusion is the default; `bench/search_quality.py` measures it against a mix of
the scores.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol

import numpy as np

from core.semantic import within_one_edit
from core.tokens import STOP, tokenize
from edge.analysis.views import DICOM_PUBLIC
from edge.search.related import Expansion, RelatedWords
from edge.search.semantic import CANDIDATES, QueryEncoder, Ranked, Scored, rerank

Mode = Literal["hybrid", "keyword", "semantic"]
Fusion = Literal["rrf", "mix"]
Counts = dict[str, dict[str, int]]
"""Facet name ("labels", "source", "device") -> value -> matches."""

RRF_K = 60
"""Reciprocal-rank fusion (Cormack et al. 2009): a hit's score is the sum over the rankings
of 1 / (RRF_K + its rank)."""
MIX_KEYWORD = 0.5
"""`mix`: weight of the keyword score (over the best one) against the semantic score."""
DEPTH = 100
"""Each side of a hybrid search ranks this many (or the page's end, if deeper)."""
NO_MATCH = "no caption or label holds these words (nor any word one edit away)"
SOME_WORDS = "no image holds every word: these hold some of them"
_SYNTAX = re.compile(r'[:"()+\-*^~\[\]{}]|\b(AND|OR|NOT|TO)\b')
BESIDE = ThreadPoolExecutor(2, thread_name_prefix="search-beside")
"""Runs one side of a search beside the other: Tantivy and numpy let go of the GIL, so on
two cores a hybrid search's keyword side costs only what it takes beyond the semantic side."""


class QuerySyntaxError(ValueError):
    """A user query the keyword side cannot parse; the message says where."""


@dataclass(frozen=True)
class Filters:
    """The structured filters of `/search`, each optional."""

    label: str | None = None
    source: str | None = None
    device: str | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    min_anomaly: float | None = None
    modality: str | None = None
    body_part: str | None = None
    view_position: str | None = None
    manufacturer: str | None = None
    """A DICOM's attributes (any case: they are compared upper-cased)."""
    study_since: dt.datetime | None = None
    study_until: dt.datetime | None = None
    """A DICOM's study date (a day, at 00:00 UTC), both ends included."""


DICOM_FILTERS = DICOM_PUBLIC
"""The DICOM attributes filtered on by exact value: those that leave the device, so the fleet
filters on them too."""


@dataclass(frozen=True)
class SearchRequest:
    """One `/search`: the query, its filters and what kind of answer."""

    q: str = ""
    filters: Filters = Filters()
    mode: Mode = "hybrid"
    fusion: Fusion = "rrf"
    limit: int = 20
    offset: int = 0
    facets: bool = True
    recent: bool = False
    """Newest first: a keyword search (a ranking by meaning has no date order)."""


@dataclass
class Hit:
    """One result as the API answers it; `match` says why it matched."""

    id: str
    score: float
    caption: str
    snippet: str
    labels: list[str]
    classes: list[str]
    source: str
    device: str
    captured_at: str
    anomaly: float | None
    """None for an image whose bundle scores no anomaly."""
    match: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class KeywordPage:
    """One page of a keyword search: all matches counted, the page's hits with their scores,
    and the facet counts the backend could give (over every match where it can)."""

    total: int
    hits: list[Hit]
    facets: Counts


@dataclass
class Result:
    mode: str
    total: int
    hits: list[Hit]
    facets: Counts
    corrected: dict[str, str] = field(default_factory=dict)
    unknown: list[str] = field(default_factory=list)
    message: str = ""
    related: dict[str, list[str]] = field(default_factory=dict)
    """Query words searched through the labels related to them -> those labels."""


class View(Protocol):
    """The reads of one ranked search, over one snapshot of the backend's documents. A backend
    applies the filters in `candidates` or in `passing`, whichever it can do before ranking."""

    def keyword_ranking(self, q: str, filters: Filters, depth: int) -> list[Scored]:
        """The best `depth` keyword matches (typo tolerant), best first."""
        ...

    def candidates(self, profile: np.ndarray, k: int, filters: Filters) -> list[Hashable]:
        """The `k` documents whose word profiles answer `profile` (one weight a vocabulary
        word) best: the semantic side's first stage."""
        ...

    def regions(self, keys: list[Hashable]) -> dict[Hashable, bytes]:
        """Each document's int8 region vectors, for the late-interaction re-ranking."""
        ...

    def passing(self, keys: list[Hashable], filters: Filters) -> set[Hashable]:
        """Those of `keys` that pass `filters`."""
        ...

    def documents(self, keys: list[Hashable], words: str) -> dict[Hashable, Hit]:
        """Hits (score 0) of these documents, their snippets marking `words`."""
        ...

    def facets(self, keys: list[Hashable]) -> Counts:
        """Facet counts over these documents."""
        ...


class Backend(Protocol):
    def keyword_page(self, req: SearchRequest) -> KeywordPage:
        """A keyword search's page (`req.recent`: newest first); raises QuerySyntaxError."""
        ...

    def view(self) -> View:
        """A view of the documents as they are now, for the several reads of one request."""
        ...


class SearchEngine:
    """`/search` over one backend; `encoder` is the running bundle's query encoder (None
    without a semantic model: every query is then a keyword search); `related` its words
    related to its labels (None where it has none: the keyword side then searches the words
    as typed)."""

    def __init__(
        self,
        backend: Backend,
        encoder: Callable[[], QueryEncoder | None],
        related: Callable[[], RelatedWords | None] = lambda: None,
    ) -> None:
        self.backend, self.encoder, self.related = backend, encoder, related

    def _expanded(self, q: str) -> Expansion | None:
        """`q` through its words' related labels; None for a query with syntax (searched as
        the user wrote it) or where there are none."""
        table = None if _SYNTAX.search(q) else self.related()
        return table.expand(q) if table is not None else None

    def search(self, req: SearchRequest) -> Result:
        q = req.q
        keyword_only = req.mode == "keyword" or req.recent or not q.strip() or _SYNTAX.search(q)
        enc = None if keyword_only else self.encoder()
        if enc is None:
            return self._keyword(req)
        view = self.backend.view()
        depth = max(DEPTH, req.offset + req.limit)
        expansion = self._expanded(q)
        keyword = (
            BESIDE.submit(
                view.keyword_ranking, expansion.query if expansion else q, req.filters, depth
            )
            if req.mode == "hybrid"
            else None
        )
        ranked = semantic_ranking(enc, q, view, depth, req.filters)
        passing = view.passing([s.key for s in ranked.hits], req.filters)
        semantic = [s for s in ranked.hits if s.key in passing]
        order, why = fuse(keyword.result() if keyword is not None else [], semantic, req.fusion)
        page = order[req.offset : req.offset + req.limit]
        counts = view.facets([s.key for s in order]) if req.facets else {}
        fixed = " ".join(w for w in ranked.parsed.words if w != ",")  # as corrected
        docs = view.documents([s.key for s in page], fixed)
        hits = []
        for key, score in page:
            if key in docs:
                hit, match = docs[key], why[key]
                if "keyword" in match:
                    match["keyword"]["terms"] = matched_terms(q, hit.caption)
                if "semantic" in match:
                    match["semantic"]["words"] = ranked.words.get(key, {})
                hit.score, hit.match = round(score, 6), match
                hits.append(hit)
        parsed = ranked.parsed
        found = {t for h in hits for t in h.match.get("keyword", {}).get("terms", [])}
        unknown = [w for w in parsed.unknown if w not in found]  # the index knows those
        res = Result(req.mode, len(order), hits, counts, parsed.corrected, unknown)
        if expansion is not None:
            res.related = expansion.related
        res.message = message_for(res, ranked)
        return res

    def _keyword(self, req: SearchRequest) -> Result:
        """A keyword search, through the query words' related labels where the bundle has
        them; a plain query of several words that no image holds all of is searched again
        with any of them enough."""
        expansion = self._expanded(req.q)
        words = expansion.words if expansion else [w for w in tokenize(req.q) if w not in STOP]
        page = self.backend.keyword_page(replace(req, q=expansion.query) if expansion else req)
        some = not page.total and len(words) > 1 and not _SYNTAX.search(req.q)
        if some:
            page = self.backend.keyword_page(replace(req, q=" OR ".join(words)))
        for rank_, h in enumerate(page.hits, start=req.offset + 1):
            terms = matched_terms(req.q, h.caption)
            h.match = {"keyword": {"rank": rank_, "score": h.score, "terms": terms}}
        mode = "semantic" if req.mode == "semantic" else "keyword"
        res = Result(mode, page.total, page.hits, page.facets)
        if expansion is not None:
            res.corrected, res.related = expansion.corrected, expansion.related
        res.message = keyword_message(res, req.q, some)
        return res


def semantic_ranking(enc: QueryEncoder, q: str, view: View, k: int, filters: Filters) -> Ranked:
    """The k best documents for `q` by meaning (fewer if the backend holds fewer)."""
    encoded = enc.encode(q)
    parsed, _, mask = encoded
    if not mask.any():
        return Ranked(parsed, [], {})
    keys = view.candidates(enc.profile(parsed), max(CANDIDATES, k), filters)
    return rerank(enc, encoded, keys, view.regions(keys) if keys else {}, k)


def matched_terms(q: str, caption: str) -> list[str]:
    """The query's words the caption holds, or holds one edit away."""
    words = [w for w in tokenize(caption) if w != ","]
    return sorted({t for t in tokenize(q) if any(within_one_edit(t, w) for w in words)})


def fuse(
    kw: list[Scored], sem: list[Scored], fusion: Fusion
) -> tuple[list[Scored], dict[Hashable, dict[str, Any]]]:
    """Both rankings into one, best first, and why each key matched."""
    scores: dict[Hashable, float] = {}
    why: dict[Hashable, dict[str, Any]] = {}
    top = max((s for _, s in kw), default=0.0) or 1.0
    for i, (key, score) in enumerate(kw, start=1):
        why[key] = {"keyword": {"rank": i, "score": round(score, 4), "terms": []}}
        scores[key] = 1 / (RRF_K + i) if fusion == "rrf" else MIX_KEYWORD * score / top
    for i, (key, score) in enumerate(sem, start=1):
        why.setdefault(key, {})["semantic"] = {"rank": i, "score": round(score, 4)}
        part = 1 / (RRF_K + i) if fusion == "rrf" else (1 - MIX_KEYWORD) * score
        scores[key] = scores.get(key, 0.0) + part
    order = [Scored(k, s) for k, s in sorted(scores.items(), key=lambda kv: -kv[1])]
    return order, why


def searched_as(res: Result) -> list[str]:
    """What the user should know of the words read as others, or through related labels."""
    parts = []
    if res.corrected:
        fixes = ", ".join(f"{v!r} (you typed {k!r})" for k, v in res.corrected.items())
        parts.append("searched for " + fixes)
    if res.related:
        also = "; ".join(f"{w!r} as {', '.join(labs)}" for w, labs in res.related.items())
        parts.append("also searched " + also)
    return parts


def keyword_message(res: Result, q: str, some: bool) -> str:
    """A keyword search's message: how words were read, and why nothing or not all matched."""
    parts = searched_as(res)
    if q.strip() and not res.total:
        parts.append(NO_MATCH)
    elif some:
        parts.append(SOME_WORDS)
    return "; ".join(parts)


def message_for(res: Result, ranked: Ranked) -> str:
    """What the user should know: unknown words, corrections, why nothing matched."""
    if not ranked.parsed.content and not ranked.parsed.unknown:
        return "nothing to search for: the query has only common words (a, the, of...)"
    parts = searched_as(res)
    if res.unknown:
        names = ", ".join(repr(w) for w in res.unknown)
        if not ranked.parsed.content and not res.total:
            parts.append(
                f"no image matched: {names} are not words the models know (they know "
                "only the words of their training captions)"
            )
        else:
            parts.append(f"ignored {names}: not words the models know")
    return "; ".join(parts)
