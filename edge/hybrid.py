"""`/search` in three modes: `keyword` (Tantivy BM25 over captions and labels, each word also
one edit away), `semantic` (`edge.semantic`: the query's words against the images' regions)
and `hybrid` (both, fused by reciprocal rank; `bench/search_quality.py` measured it against a
score mix). The filters apply to both sides; each hit says why it matched.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from edge.index import Filters, Hit, SearchIndex
from edge.semantic import Ranked, SemanticSearch
from edge.store import Store
from models.data.tokens import tokenize
from models.semantic import within_one_edit

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
    facets: dict[str, int]
    corrected: dict[str, str] = field(default_factory=dict)
    unknown: list[str] = field(default_factory=list)
    message: str = ""


def _terms(q: str, caption: str) -> list[str]:
    """The query's words the caption holds, or holds one edit away."""
    words = [w for w in tokenize(caption) if w != ","]
    return sorted({t for t in tokenize(q) if any(within_one_edit(t, w) for w in words)})


class HybridSearch:
    def __init__(self, index: SearchIndex, semantic: SemanticSearch | None, store: Store | None):
        self.index, self.semantic, self.store = index, semantic, store

    def search(
        self, q: str, filters: Filters, mode: str = "hybrid", limit: int = 20, offset: int = 0,
        fusion: str = "rrf", facets: bool = True,
    ) -> Result:  # fmt: skip
        plain = not _SYNTAX.search(q)
        if mode == "keyword" or not q.strip() or not plain or self.semantic is None:
            return self._keyword(q, filters, limit, offset, facets, mode)
        depth = max(DEPTH, offset + limit)
        ranked = self.semantic.rank(q, depth)
        if ranked is None:
            return self._keyword(q, filters, limit, offset, facets, mode)
        sem = self._semantic_hits(ranked, filters, q)
        kw: list[Hit] = []
        if mode == "hybrid":
            _, kw, _ = self.index.search(q, filters, depth, 0, fuzzy=True, facets=False)
        fused = _fuse(q, kw, sem, fusion)
        page = fused[offset : offset + limit]
        counts: dict[str, int] = {}
        for h in fused:
            for lab in h["labels"]:
                counts[lab] = counts.get(lab, 0) + 1
        res = Result(mode, len(fused), page, counts if facets else {}, ranked.parsed.corrected,
                     ranked.parsed.unknown)  # fmt: skip
        res.message = _message(res, ranked)
        return res

    def _keyword(
        self, q: str, filters: Filters, limit: int, offset: int, facets: bool, mode: str
    ) -> Result:
        total, hits, counts = self.index.search(q, filters, limit, offset, fuzzy=True,
                                                facets=facets)  # fmt: skip
        out = []
        for rank, h in enumerate(hits, start=offset + 1):
            out.append(
                {
                    **h.__dict__,
                    "match": {
                        "keyword": {"rank": rank, "score": h.score, "terms": _terms(q, h.caption)}
                    },
                }
            )
        res = Result("keyword" if mode != "semantic" else mode, total, out, counts)
        if q.strip() and not total:
            res.message = "no caption or label holds these words (nor any word one edit away)"
        return res

    def _semantic_hits(
        self, ranked: Ranked, filters: Filters, q: str
    ) -> list[tuple[Hit, float, dict[str, float]]]:
        """The ranked images the index has and the filters pass, best first."""
        if not ranked.hits or self.store is None:
            return []
        ids = self.store.ids_of([s for s, _ in ranked.hits])
        docs = self.index.documents(list(ids.values()), filters, q)
        out = []
        for seq, score in ranked.hits:
            hit = docs.get(ids.get(seq, ""))
            if hit is not None:
                out.append((hit, score, ranked.words.get(seq, {})))
        return out


def _fuse(
    q: str, kw: list[Hit], sem: list[tuple[Hit, float, dict[str, float]]], fusion: str
) -> list[dict[str, Any]]:
    """Both rankings into one, best first, each hit with why it matched."""
    scores: dict[str, float] = {}
    hits: dict[str, dict[str, Any]] = {}
    top = max((h.score for h in kw), default=0.0) or 1.0
    for rank, h in enumerate(kw, start=1):
        why = {"rank": rank, "score": round(h.score, 4), "terms": _terms(q, h.caption)}
        hits[h.id] = {**h.__dict__, "match": {"keyword": why}}
        scores[h.id] = 1 / (RRF_K + rank) if fusion == "rrf" else MIX_KEYWORD * h.score / top
    for rank, (h, score, words) in enumerate(sem, start=1):
        entry = hits.setdefault(h.id, {**h.__dict__, "match": {}})
        entry["match"]["semantic"] = {"rank": rank, "score": round(score, 4), "words": words}
        part = 1 / (RRF_K + rank) if fusion == "rrf" else (1 - MIX_KEYWORD) * score
        scores[h.id] = scores.get(h.id, 0.0) + part
    order = sorted(scores, key=lambda i: -scores[i])
    for i in order:
        hits[i]["score"] = round(scores[i], 6)
    return [hits[i] for i in order]


def _message(res: Result, ranked: Ranked) -> str:
    """What the user should know: unknown words, corrections, why nothing matched."""
    parts = []
    if not ranked.parsed.content and not ranked.parsed.unknown:
        return "nothing to search for: the query has only common words (a, the, of...)"
    if res.corrected:
        parts.append("searched for " + ", ".join(f"{v!r} (you typed {k!r})"
                                                 for k, v in res.corrected.items()))  # fmt: skip
    if res.unknown:
        names = ", ".join(repr(w) for w in res.unknown)
        if not ranked.parsed.content and not res.total:
            parts.append(f"no image matched: {names} are not words the models know (they know "
                         "only the words of their training captions)")  # fmt: skip
        else:
            parts.append(f"ignored {names}: not words the models know")
    return "; ".join(parts)
