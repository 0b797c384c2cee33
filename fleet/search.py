"""Search over the archive with the device's semantics: the same modes, filters (and
`device`), messages and "why it matched", on LanceDB.

keyword: LanceDB's full-text index over caption and labels, each word one edit away too.
semantic: the fleet bundle's text encoder; the first stage reads the query words' columns of
the rows' word profiles (an exact scan, as on the device), the best 100 are re-ranked by late
interaction from their int8 region vectors. hybrid: reciprocal-rank fusion. Only the columns
a result needs are read. A result's id is `<sha256>:<device>`.
"""

from __future__ import annotations

import datetime as dt
import html
import json
from dataclasses import dataclass
from typing import Any

import numpy as np
from lancedb.query import DocumentGranularity, FullTextOperator, MatchQuery

from core.semantic import scored
from edge.analysis.bundle import Bundle
from edge.analysis.outputs.embedding import unpack
from edge.search.hybrid import DEPTH, Result, fuse, matched_terms, message_for
from edge.search.semantic import CANDIDATES, RELATIVE_FLOOR, QueryEncoder, Ranked, match
from fleet.archive import Archive, _safe, naive_utc, utc

COLUMNS = ["device", "id", "caption", "labels", "source", "captured_at", "anomaly", "bundle"]
MAX_TOTAL = 10_000
"""Keyword totals are counted up to this many matches (the full-text index ranks, it does not
count)."""


@dataclass
class FleetFilters:
    label: str | None = None
    source: str | None = None
    device: str | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    min_anomaly: float | None = None

    def sql(self) -> str:
        """A filter LanceDB runs before ranking; values that are not plain names match none."""
        parts = []
        for column, value in (("source", self.source), ("device", self.device)):
            if value is not None:
                parts.append(f"{column} = '{value}'" if _safe(value) else "false")
        if self.label is not None:
            parts.append(f"array_has(labels, '{self.label}')" if _safe(self.label) else "false")
        if self.since:
            parts.append(f"captured_at >= timestamp '{naive_utc(self.since).isoformat()}'")
        if self.until:
            parts.append(f"captured_at <= timestamp '{naive_utc(self.until).isoformat()}'")
        if self.min_anomaly is not None:
            parts.append(f"anomaly >= {float(self.min_anomaly)!r}")
        return " AND ".join(parts)


def rid(row: dict[str, Any]) -> str:
    return f"{row['id']}:{row['device']}"


def split(result_id: str) -> tuple[str, str]:
    """(id, device) of a result id, or ValueError."""
    image, _, device = result_id.partition(":")
    if not (image and device and _safe(image) and _safe(device)):
        raise ValueError(f"not a result id: {result_id[:80]!r}")
    return image, device


def hit(row: dict[str, Any]) -> dict[str, Any]:
    caption = row.get("caption") or ""
    captured = row["captured_at"]
    when = utc(captured).isoformat() if isinstance(captured, dt.datetime) else captured
    return {
        "id": rid(row),
        "score": 0.0,
        "caption": caption,
        "snippet": html.escape(caption),
        "labels": list(row.get("labels") or []),
        "classes": [],
        "source": row["source"],
        "device": row["device"],
        "anomaly": float(row.get("anomaly") or 0.0),
        "captured_at": when,
    }


class FleetSearch:
    def __init__(self, archive: Archive, bundle: Bundle) -> None:
        self.archive, self.bundle = archive, bundle
        self.encoder = QueryEncoder(bundle) if "embedding" in bundle.doc.outputs else None

    def search(
        self,
        q: str,
        filters: FleetFilters,
        mode: str = "hybrid",
        limit: int = 20,
        offset: int = 0,
        fusion: str = "rrf",
    ) -> Result:
        where = filters.sql()
        depth = max(DEPTH, offset + limit)
        if mode == "keyword" or not q.strip() or self.encoder is None:
            rows = (
                self.keyword(q, where, offset + limit)
                if q.strip()
                else self.recent(where, offset + limit)
            )
            hits = [hit(r) | {"score": float(r.get("_score", 0.0))} for r in rows]
            counts, hits = _facets(hits), hits[offset:]
            for rank, h in enumerate(hits, start=offset + 1):
                h["match"] = {
                    "keyword": {
                        "rank": rank,
                        "score": round(h["score"], 4),
                        "terms": matched_terms(q, h["caption"]),
                    }
                }
            total = len(rows) if len(rows) < offset + limit else self.count(q, where)
            res = Result("keyword", total, hits, counts)
            if q.strip() and not rows:
                res.message = "no caption or label holds these words (nor any word one edit away)"
            return res
        ranked, by_id = self.semantic(q, where, depth)
        kw_rows = self.keyword(q, where, depth) if mode == "hybrid" else []
        by_id.update({rid(r): r for r in kw_rows})
        kw = [(rid(r), float(r.get("_score", 0.0))) for r in kw_rows]
        order, why = fuse(kw, ranked.hits, fusion)
        hits = []
        for i, score in order[offset : offset + limit]:
            h = hit(by_id[i]) | {"score": round(score, 6), "match": why[i]}
            if "keyword" in h["match"]:
                h["match"]["keyword"]["terms"] = matched_terms(q, h["caption"])
            if "semantic" in h["match"]:
                h["match"]["semantic"]["words"] = ranked.words.get(i, {})
            hits.append(h)
        res = Result(
            mode,
            len(order),
            hits,
            _facets([hit(by_id[i]) for i, _ in order]),
            ranked.parsed.corrected,
            ranked.parsed.unknown,
        )
        res.message = message_for(res, ranked)
        return res

    def keyword(
        self, q: str, where: str, limit: int, columns: list[str] | None = None
    ) -> list[dict[str, Any]]:
        query = MatchQuery(
            q,
            "text",
            boost=1.0,
            fuzziness=1,
            max_expansions=50,
            prefix_length=0,
            operator=FullTextOperator.AND,
            document_granularity=DocumentGranularity.ROW,
        )
        wanted = [*(columns or COLUMNS), "_score"]
        s = self.archive.table.search(query, query_type="fts").select(wanted).limit(limit)
        return list(s.where(where, prefilter=True).to_list() if where else s.to_list())

    def count(self, q: str, where: str) -> int:
        if not q.strip():
            return self.archive.count() if not where else self.archive.table.count_rows(where)
        return len(self.keyword(q, where, MAX_TOTAL, ["id"]))

    def recent(self, where: str, limit: int) -> list[dict[str, Any]]:
        """Newest first: the times and keys of every match (two narrow columns), then the
        columns of only the page's rows."""
        s = self.archive.table.search().select(["device", "id", "captured_at"]).limit(None)
        keys = (s.where(where) if where else s).to_arrow()
        top = keys.sort_by([("captured_at", "descending")]).slice(0, limit)
        pairs = [
            (d, i)
            for d, i in zip(top["device"].to_pylist(), top["id"].to_pylist(), strict=True)
            if _safe(d) and _safe(i)
        ]
        if not pairs:
            return []
        cond = " OR ".join(f"(device = '{d}' AND id = '{i}')" for d, i in pairs)
        got = self.archive.table.search().where(cond).select(COLUMNS).limit(None).to_list()
        order = {p: n for n, p in enumerate(pairs)}
        return sorted(got, key=lambda r: order[(r["device"], r["id"])])

    def semantic(self, q: str, where: str, k: int) -> tuple[Ranked, dict[str, dict[str, Any]]]:
        """The k best rows by meaning (rows of the fleet bundle only: others' vectors are of
        another space), and the rows by result id."""
        assert self.encoder is not None
        enc = self.encoder
        parsed, vectors, mask = enc.encode(q)
        if not mask.any():
            return Ranked(parsed, [], {}), {}
        wanted = sorted({enc.index[w] for w in parsed.content})
        query = np.zeros(len(enc.vocab), np.float32)
        query[wanted] = 1.0 / len(wanted)
        cond = " AND ".join(p for p in (where, f"bundle = '{self.bundle.version}'") if p)
        rows = (
            self.archive.table.search(query, vector_column_name="profile")
            .metric("dot")
            .where(cond, prefilter=True)
            .select([*COLUMNS, "regions", "_distance"])
            .limit(max(CANDIDATES, k))
            .to_list()
        )
        rows = [r for r in rows if r.get("regions")]
        if not rows:
            return Ranked(parsed, [], {}), {}
        images = np.stack([unpack(r["regions"], vectors.shape[-1]) for r in rows])
        scores, best = scored(vectors, mask, images)
        order = np.argsort(-scores, kind="stable")[:k]
        order = order[scores[order] >= RELATIVE_FLOOR * scores[order[0]]]
        names = [
            (t, parsed.words[t]) for t in range(len(parsed.words[: enc.max_tokens])) if mask[t]
        ]
        ids = [rid(rows[i]) for i in order]
        words = {
            ids[j]: {w: round(float(best[i, t]), 4) for t, w in names} for j, i in enumerate(order)
        }
        hits = [(ids[j], float(scores[i])) for j, i in enumerate(order)]
        return Ranked(parsed, hits, words), {rid(r): r for r in rows}

    # -- one image -------------------------------------------------------------------------------
    def row(self, result_id: str, columns: list[str]) -> dict[str, Any] | None:
        image, device = split(result_id)
        got = (
            self.archive.table.search()
            .where(f"id = '{image}' AND device = '{device}'")
            .select(columns)
            .limit(1)
            .to_list()
        )
        return got[0] if got else None

    def record(self, result_id: str) -> dict[str, Any] | None:
        r = self.row(result_id, ["record"])
        return json.loads(r["record"]) if r else None

    def match(self, result_id: str, q: str) -> dict[str, Any] | None:
        r = self.row(result_id, ["regions", "bundle"])
        if r is None or not r.get("regions") or self.encoder is None:
            return None
        return match(self.encoder, q, r["regions"])

    def similar(self, result_id: str, k: int) -> list[dict[str, Any]] | None:
        r = self.row(result_id, ["latent", "bundle"])
        if r is None or r.get("latent") is None:
            return None
        got = (
            self.archive.table.search(
                np.asarray(r["latent"], np.float32), vector_column_name="latent"
            )
            .metric("l2")
            .where(f"bundle = '{r['bundle']}'", prefilter=True)
            .select(["device", "id"])
            .limit(k + 1)
            .to_list()
        )
        return [
            {"id": rid(g), "distance": round(float(np.sqrt(max(g["_distance"], 0.0))), 5)}
            for g in got
            if rid(g) != result_id
        ][:k]


def _facets(hits: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {"labels": {}, "source": {}, "device": {}}
    for h in hits:
        for lab in h["labels"]:
            out["labels"][lab] = out["labels"].get(lab, 0) + 1
        for field in ("source", "device"):
            out[field][h[field]] = out[field].get(h[field], 0) + 1
    return out
