"""Search over the archive: the device's search (`edge.search.engine`) on a LanceDB backend,
with the `device` filter and facet, and one image's record, word maps and neighbours.

keyword: LanceDB's full-text index over caption and labels, each word one edit away too.
semantic: the fleet bundle's text encoder; the first stage reads the query words' columns of
the rows' word profiles (an exact scan, as on the device), prefiltered, and the best are
re-ranked by late interaction from their int8 region vectors. Only the columns a result needs
are read. A result's id is `<sha256>:<device>`.

Filters are LanceDB's typed expressions (`lancedb.expr`): a user's or a payload's value is a
literal, never query text. Where text cannot be avoided (`array_has` over labels has no typed
form in lancedb 0.40, and `count_rows` takes text), the values are checked first (see
`where`), and `lit` quotes them. An S3 key is handed out by `FleetSearch.row` only while it
has the form of its row's own original or thumbnail (`fleet.trust.object_key_ok`).
"""

from __future__ import annotations

import datetime as dt
import functools
import html
import json
import logging
import math
import operator
import re
from collections.abc import Callable, Hashable
from typing import Any

import numpy as np
from lancedb.expr import Expr, col, lit
from lancedb.query import DocumentGranularity, FullTextOperator, MatchQuery

from edge.analysis.bundle import Bundle
from edge.search import semantic
from edge.search.engine import (
    DICOM_FILTERS,
    Counts,
    Filters,
    Hit,
    KeywordPage,
    Result,
    SearchEngine,
    SearchRequest,
)
from edge.search.semantic import QueryEncoder, Scored
from fleet.archive import Archive, naive_utc, utc
from fleet.trust import FOREIGN_KEY, Refusals, device_name_ok, image_id_ok, object_key_ok

log = logging.getLogger("s3e.fleet.search")

COLUMNS = ["device", "id", "caption", "labels", "source", "captured_at", "anomaly", "bundle"]
MAX_TOTAL = 10_000
"""Keyword totals are counted up to this many matches (the full-text index ranks, it does not
count)."""


TEXT = re.compile(r"^[^\\\x00-\x1f\x7f]{1,256}$")
"""A source filter: any text but backslashes and control characters. Lance's SQL parser reads
no backslash escapes, while an expression's rendering as text (`Expr.to_sql`, which
`count_rows` and a label filter need) assumes it does: a backslash before a quote would end
the literal there."""
LABEL = re.compile(r"^[\w .:/+()'-]{1,128}$")
"""A label filter: words, spaces and a little punctuation; it goes into `array_has` as text."""
NOTHING = "false"
"""The filter of a value no row can have."""

Filter = Expr | str | None


def where(f: Filters) -> Filter:
    """The filter LanceDB runs before ranking, as a typed expression; with a label, as text
    (`array_has` has no typed form), the label checked against `LABEL` and quoted by `lit`.
    A value that fails its check (a device name, `TEXT`, `LABEL`, a finite number) matches
    nothing, and so does a study date: it never leaves its device. DICOM attributes are
    compared upper-cased, as the device compares them."""
    if f.study_since or f.study_until:
        return NOTHING  # no image's study date leaves its device
    checks: list[tuple[str, str | None, Callable[[str], object]]] = [
        ("source", f.source, TEXT.fullmatch),
        ("device", f.device, device_name_ok),
        *((n, getattr(f, n), TEXT.fullmatch) for n in DICOM_FILTERS),
    ]
    parts: list[Expr] = []
    for column, value, ok in checks:
        if value is not None:
            if not ok(value):
                return NOTHING
            upper = column in DICOM_FILTERS  # stored upper-cased, as the device compares them
            parts.append(col(column) == lit(value.upper() if upper else value))
    if f.since:
        parts.append(col("captured_at") >= lit(naive_utc(f.since)))
    if f.until:
        parts.append(col("captured_at") <= lit(naive_utc(f.until)))
    if f.min_anomaly is not None:
        if not math.isfinite(f.min_anomaly):
            return NOTHING
        parts.append(col("anomaly") >= lit(float(f.min_anomaly)))
    typed = functools.reduce(operator.and_, parts) if parts else None
    if f.label is None:
        return typed
    if not LABEL.fullmatch(f.label):
        return NOTHING
    return both(typed, f"array_has(labels, {lit(f.label).to_sql()})")


def both(a: Filter, b: Filter) -> Filter:
    """`a AND b`: an expression while both are, else text (their values checked by `where`)."""
    if a is None or b is None:
        return b if a is None else a
    if isinstance(a, Expr) and isinstance(b, Expr):
        return a & b
    return f"({text(a)}) AND ({text(b)})"


def text(f: Filter) -> str | None:
    """A filter as query text, for `count_rows` (it takes no expression)."""
    return f.to_sql() if isinstance(f, Expr) else f


def rid(row: dict[str, Any]) -> str:
    return f"{row['id']}:{row['device']}"


def split(result_id: str) -> tuple[str, str]:
    """(id, device) of a result id, or ValueError."""
    image, _, device = result_id.partition(":")
    if not (image_id_ok(image) and device_name_ok(device)):
        raise ValueError(f"not a result id: {result_id[:80]!r}")
    return image, device


def hit(row: dict[str, Any], score: float = 0.0) -> Hit:
    caption = row.get("caption") or ""
    captured = row["captured_at"]
    when = utc(captured).isoformat() if isinstance(captured, dt.datetime) else captured
    return Hit(
        id=rid(row),
        score=score,
        caption=caption,
        snippet=html.escape(caption),
        labels=list(row.get("labels") or []),
        classes=[],
        source=row["source"],
        device=row["device"],
        anomaly=None if row.get("anomaly") is None else float(row["anomaly"]),
        captured_at=when,
    )


def counts(hits: list[Hit]) -> Counts:
    out: Counts = {"labels": {}, "source": {}, "device": {}}
    for h in hits:
        for lab in h.labels:
            out["labels"][lab] = out["labels"].get(lab, 0) + 1
        out["source"][h.source] = out["source"].get(h.source, 0) + 1
        out["device"][h.device] = out["device"].get(h.device, 0) + 1
    return out


class LanceBackend:
    def __init__(self, archive: Archive, bundle: Bundle) -> None:
        self.archive, self.bundle = archive, bundle

    def keyword_page(self, req: SearchRequest) -> KeywordPage:
        cond, n = where(req.filters), req.offset + req.limit
        if req.recent:
            rows = self.recent(req.q, cond, n)
        elif req.q.strip():
            rows = self.keyword(req.q, cond, n)
        else:
            rows = self.recent("", cond, n)
        hits = [hit(r, 0.0 if req.recent else float(r.get("_score", 0.0))) for r in rows]
        total = len(rows) if len(rows) < n else self.count(req.q, cond)
        return KeywordPage(total, hits[req.offset :], counts(hits) if req.facets else {})

    def view(self) -> LanceView:
        return LanceView(self)

    def keyword(
        self, q: str, cond: Filter, limit: int, columns: list[str] | None = None
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
        return list(s.where(cond, prefilter=True).to_list() if cond is not None else s.to_list())

    def count(self, q: str, cond: Filter) -> int:
        if not q.strip():
            return (
                self.archive.count() if cond is None else self.archive.table.count_rows(text(cond))
            )
        return len(self.keyword(q, cond, MAX_TOTAL, ["id"]))

    def recent(self, q: str, cond: Filter, limit: int) -> list[dict[str, Any]]:
        """Newest first among the matches of `q` (every row when empty): the times and keys
        of every match (narrow columns), then the columns of only the page's rows."""
        keys_of = ["device", "id", "captured_at"]
        if q.strip():
            rows = self.keyword(q, cond, MAX_TOTAL, keys_of)
            rows.sort(key=lambda r: naive_utc(r["captured_at"]), reverse=True)
            pairs = [(r["device"], r["id"]) for r in rows[:limit]]
        else:
            s = self.archive.table.search().select(keys_of).limit(None)
            keys = (s.where(cond) if cond is not None else s).to_arrow()
            top = keys.sort_by([("captured_at", "descending")]).slice(0, limit)
            pairs = list(zip(top["device"].to_pylist(), top["id"].to_pylist(), strict=True))
        if not pairs:
            return []
        ids = col("id").isin(sorted({i for _, i in pairs}))
        got = self.archive.table.search().where(ids).select(COLUMNS).limit(None).to_list()
        order = {p: n for n, p in enumerate(pairs)}
        got = [r for r in got if (r["device"], r["id"]) in order]
        return sorted(got, key=lambda r: order[(r["device"], r["id"])])


class LanceView:
    """One request's reads; the rows found on the way are kept by result id."""

    def __init__(self, backend: LanceBackend) -> None:
        self.backend = backend
        self.rows: dict[Hashable, dict[str, Any]] = {}

    def keyword_ranking(self, q: str, filters: Filters, depth: int) -> list[Scored]:
        rows = self.backend.keyword(q, where(filters), depth)
        self.rows.update((rid(r), r) for r in rows)
        return [Scored(rid(r), float(r.get("_score", 0.0))) for r in rows]

    def candidates(self, profile: np.ndarray, k: int, filters: Filters) -> list[Hashable]:
        """Rows of the fleet bundle only (others' vectors are of another space), prefiltered."""
        cond = both(where(filters), col("bundle") == lit(self.backend.bundle.version))
        rows = (
            self.backend.archive.table.search(profile, vector_column_name="profile")
            .metric("dot")
            .where(cond, prefilter=True)
            .select([*COLUMNS, "regions", "_distance"])
            .limit(k)
            .to_list()
        )
        self.rows.update((rid(r), r) for r in rows if r.get("regions"))
        return [rid(r) for r in rows if r.get("regions")]

    def regions(self, keys: list[Hashable]) -> dict[Hashable, bytes]:
        return {k: self.rows[k]["regions"] for k in keys}

    def passing(self, keys: list[Hashable], filters: Filters) -> set[Hashable]:
        """Every candidate: the filters ran before ranking."""
        return set(keys)

    def documents(self, keys: list[Hashable], words: str) -> dict[Hashable, Hit]:
        return {k: hit(self.rows[k]) for k in keys}

    def facets(self, keys: list[Hashable]) -> Counts:
        return counts([hit(self.rows[k]) for k in keys])


class FleetSearch:
    """The archive's `/search` engine, and what one image's routes read."""

    def __init__(self, archive: Archive, bundle: Bundle) -> None:
        self.archive, self.bundle = archive, bundle
        self.encoder = QueryEncoder(bundle) if "embedding" in bundle.doc.outputs else None
        self.engine = SearchEngine(LanceBackend(archive, bundle), lambda: self.encoder)
        self.refusals = Refusals(log)

    def search(self, req: SearchRequest) -> Result:
        return self.engine.search(req)

    def row(self, result_id: str, columns: list[str]) -> dict[str, Any] | None:
        """One image's columns; an original or thumbnail key without the form of this
        image's own (under the devices' prefix, its device, a date, its id, an extension a
        device gives) comes back empty, so it is never presigned."""
        image, device = split(result_id)
        got = (
            self.archive.table.search()
            .where((col("id") == lit(image)) & (col("device") == lit(device)))
            .select(columns)
            .limit(1)
            .to_list()
        )
        if not got:
            return None
        r: dict[str, Any] = got[0]
        for column in ("original_key", "thumbnail_key"):
            key, thumb = r.get(column), column == "thumbnail_key"
            if key and not object_key_ok(key, self.archive.s3.prefix, device, image, thumb):
                self.refusals.refuse(FOREIGN_KEY, f"{result_id} {column} {str(key)[:120]!r}")
                r[column] = ""
        return r

    def record(self, result_id: str) -> dict[str, Any] | None:
        r = self.row(result_id, ["record"])
        return json.loads(r["record"]) if r else None

    def match(self, result_id: str, q: str) -> dict[str, Any] | None:
        r = self.row(result_id, ["regions", "bundle"])
        if r is None or not r.get("regions") or self.encoder is None:
            return None
        return semantic.match(self.encoder, q, r["regions"])

    def similar(self, result_id: str, k: int) -> list[dict[str, Any]] | None:
        r = self.row(result_id, ["latent", "bundle"])
        if r is None or r.get("latent") is None:
            return None
        got = (
            self.archive.table.search(
                np.asarray(r["latent"], np.float32), vector_column_name="latent"
            )
            .metric("l2")
            .where(col("bundle") == lit(str(r.get("bundle") or "")), prefilter=True)
            .select(["device", "id"])
            .limit(k + 1)
            .to_list()
        )
        return [
            {"id": rid(g), "distance": round(float(np.sqrt(max(g["_distance"], 0.0))), 5)}
            for g in got
            if rid(g) != result_id
        ][:k]
