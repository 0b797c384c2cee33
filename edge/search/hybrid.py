"""`/search` in three modes: `keyword` (Tantivy BM25 over captions and labels, each word also
one edit away), `semantic` (`edge.search.semantic`: the query's words against the images' regions)
and `hybrid` (both, fused by reciprocal rank; `bench/search_quality.py` measured it against a
score mix). The filters apply to both sides; each hit says why it matched.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, TypeVar

from core.semantic import within_one_edit
from core.tokens import tokenize
from edge.search.index import BESIDE, Filters, SearchIndex
from edge.search.semantic import Ranked, SemanticSearch

MODES = ("hybrid", "keyword", "semantic")
FUSIONS = ("rrf", "mix")
RRF_K = 60
"""Reciprocal-rank fusion (Cormack et al. 2009): a hit's score is the sum over the rankings
of 1 / (RRF_K + its rank)."""
MIX_KEYWORD = 0.5
"""`mix`: weight of the keyword score (over the best one) against the semantic score."""
DEPTH = 100
"""Each side of a hybrid search ranks this many (or the page's end, if deeper)."""
_SYNTAX = re.compile(r'[:"()+\-*^~\[\]{}]|\b(AND|OR|NOT|TO)\b')


@dataclass
class Result:
    mode: str
    total: int
    hits: list[dict[str, Any]]
    facets: dict[str, dict[str, int]]
    corrected: dict[str, str] = field(default_factory=dict)
    unknown: list[str] = field(default_factory=list)
    message: str = ""


def matched_terms(q: str, caption: str) -> list[str]:
    """The query's words the caption holds, or holds one edit away."""
    words = [w for w in tokenize(caption) if w != ","]
    return sorted({t for t in tokenize(q) if any(within_one_edit(t, w) for w in words)})


class HybridSearch:
    def __init__(self, index: SearchIndex, semantic: SemanticSearch | None) -> None:
        self.index, self.semantic = index, semantic

    def search(
        self,
        q: str,
        filters: Filters,
        mode: str = "hybrid",
        limit: int = 20,
        offset: int = 0,
        fusion: str = "rrf",
        facets: bool = True,
        recent: bool = False,
    ) -> Result:
        """`recent`: newest first (keyword search only: a ranking by meaning has no date
        order)."""
        plain = not _SYNTAX.search(q)
        if (
            mode == "keyword"
            or recent
            or not q.strip()
            or not plain
            or self.semantic is None
            or self.semantic.encoder() is None
        ):
            return self._keyword(q, filters, limit, offset, facets, mode, recent)
        depth = max(DEPTH, offset + limit)
        searcher = self.index.snapshot()
        keyword = (
            BESIDE.submit(self.index.ranked, searcher, q, filters, depth)
            if mode == "hybrid"
            else None
        )
        ranked = self.semantic.rank(q, depth)
        if ranked is None:  # the bundle changed meanwhile
            return self._keyword(q, filters, limit, offset, facets, mode, recent)
        at = self.index.passing(searcher, [s for s, _ in ranked.hits], filters)
        sem = [(s, score) for s, score in ranked.hits if s in at]
        kw = keyword.result() if keyword is not None else []
        at.update((s, a) for s, _, a in kw)
        order, why = fuse([(s, score) for s, score, _ in kw], sem, fusion)
        page = order[offset : offset + limit]
        counts = self.index.facets_of(searcher, {s: at[s] for s, _ in order}) if facets else {}
        fixed = " ".join(w for w in ranked.parsed.words if w != ",")  # as corrected
        docs = self.index.documents(searcher, {s: at[s] for s, _ in page}, fixed)
        hits = []
        for seq, score in page:
            if seq in docs:
                match = why[seq]
                if "keyword" in match:
                    match["keyword"]["terms"] = matched_terms(q, docs[seq].caption)
                if "semantic" in match:
                    match["semantic"]["words"] = ranked.words.get(seq, {})
                hits.append({**docs[seq].__dict__, "score": round(score, 6), "match": match})
        res = Result(mode, len(order), hits, counts, ranked.parsed.corrected, ranked.parsed.unknown)
        res.message = message_for(res, ranked)
        return res

    def _keyword(
        self,
        q: str,
        filters: Filters,
        limit: int,
        offset: int,
        facets: bool,
        mode: str,
        recent: bool,
    ) -> Result:
        total, hits, counts = self.index.search(
            q, filters, limit, offset, fuzzy=True, facets=facets, recent=recent
        )
        out = []
        for rank, h in enumerate(hits, start=offset + 1):
            why = {"rank": rank, "score": h.score, "terms": matched_terms(q, h.caption)}
            out.append({**h.__dict__, "match": {"keyword": why}})
        res = Result("keyword" if mode != "semantic" else mode, total, out, counts)
        if q.strip() and not total:
            res.message = "no caption or label holds these words (nor any word one edit away)"
        return res


K = TypeVar("K", int, str)


def fuse(
    kw: list[tuple[K, float]], sem: list[tuple[K, float]], fusion: str
) -> tuple[list[tuple[K, float]], dict[K, dict[str, Any]]]:
    """Both rankings into one, best first, and why each key (record seq or result id)
    matched."""
    scores: dict[K, float] = {}
    why: dict[K, dict[str, Any]] = {}
    top = max((s for _, s in kw), default=0.0) or 1.0
    for rank, (rid, score) in enumerate(kw, start=1):
        why[rid] = {"keyword": {"rank": rank, "score": round(score, 4), "terms": []}}
        scores[rid] = 1 / (RRF_K + rank) if fusion == "rrf" else MIX_KEYWORD * score / top
    for rank, (rid, score) in enumerate(sem, start=1):
        why.setdefault(rid, {})["semantic"] = {"rank": rank, "score": round(score, 4)}
        part = 1 / (RRF_K + rank) if fusion == "rrf" else (1 - MIX_KEYWORD) * score
        scores[rid] = scores.get(rid, 0.0) + part
    order = sorted(scores.items(), key=lambda kv: -kv[1])
    return order, why


def message_for(res: Result, ranked: Ranked) -> str:
    """What the user should know: unknown words, corrections, why nothing matched."""
    parts = []
    if not ranked.parsed.content and not ranked.parsed.unknown:
        return "nothing to search for: the query has only common words (a, the, of...)"
    if res.corrected:
        parts.append(
            "searched for "
            + ", ".join(f"{v!r} (you typed {k!r})" for k, v in res.corrected.items())
        )
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
