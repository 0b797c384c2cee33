"""The Tantivy index: one writer (the daemon), batched commits, searches that explain their
syntax errors.

The index holds only what search needs, stored, so `/search` never touches SQLite. It is
derived data: `reindex` rebuilds it from the records, and the index sink makes a record
searchable only by committing before it marks the record indexed.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import html
import json
import logging
import shutil
import threading
from pathlib import Path
from typing import Any, NamedTuple, cast

import tantivy

from core.english import is_english
from core.semantic import within_one_edit
from edge.analysis import views
from edge.search.engine import (
    BESIDE,
    DICOM_FILTERS,
    Filters,
    Hit,
    KeywordPage,
    QuerySyntaxError,
)
from edge.search.facets import Facets
from edge.search.query import (
    CAPTION_ANALYZER,
    CAPTION_TOKENIZER,
    OPERATORS,
    check_query,
    field_terms,
    phrased,
    plain,
    query_words,
)
from edge.store.records import Record

log = logging.getLogger("s3e.index")
SCHEMA_VERSION = 9
"""The documents' schema below. A different number in the index folder's `schema.json` (or an
index tantivy cannot open with this schema) means: empty it, and rebuild from the store."""
SCHEMA_FILE = "schema.json"

DEFAULT_FIELDS = ["caption", "labels", "sure"]
FUZZY = {"caption": (False, 1, True), "labels": (False, 1, True), "sure": (False, 1, True)}
"""Typo tolerance: (prefix, distance, a swap of neighbours counts one) per field."""
TYPO_FIELDS = ("caption", "labels")
"""The fields whose terms tell a typo (`typos`): the sure labels are some of the labels."""
PHRASE_BOOST = 2.0
RESCORE_WINDOW = 200
"""Plain words found side by side as typed rank above the same words apart: their phrase
(its BM25 score times PHRASE_BOOST added) re-scores the best RESCORE_WINDOW matches of the
words, as a second phase, since over every match the phrase costs several times the words
alone."""
# Tantivy dates are nanoseconds in an i64: clamp filters into what it can represent.
EARLIEST = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
LATEST = dt.datetime(2262, 1, 1, tzinfo=dt.UTC)


class IndexBusyError(RuntimeError):
    """Another process (a running daemon) holds the index writer."""


class Match(NamedTuple):
    """A document a query matched: its record's seq, its score, and where it lies in the
    searcher it came from (valid for that searcher only)."""

    seq: int
    score: float
    address: Any


def build_schema() -> tantivy.Schema:
    sb = tantivy.SchemaBuilder()
    sb.add_text_field("id", stored=True, tokenizer_name="raw")
    sb.add_unsigned_field("seq", stored=False, indexed=True, fast=True)
    sb.add_text_field("caption", stored=True, tokenizer_name=CAPTION_TOKENIZER)
    sb.add_text_field("labels", stored=True, fast=True, tokenizer_name="raw")
    sb.add_text_field("sure", stored=False, tokenizer_name="raw")
    sb.add_unsigned_field("label_bits", stored=False, indexed=False, fast=True)
    sb.add_unsigned_field("source_bits", stored=False, indexed=False, fast=True)
    sb.add_text_field("classes", stored=True, fast=True, tokenizer_name="raw")
    sb.add_text_field("source", stored=True, fast=True, tokenizer_name="raw")
    sb.add_text_field("device", stored=True, fast=True, tokenizer_name="raw")
    sb.add_text_field("bundle", stored=True, tokenizer_name="raw")
    for name in DICOM_FILTERS:
        sb.add_text_field(name, stored=False, tokenizer_name="raw")
    sb.add_date_field("captured", stored=True, indexed=True, fast=True)
    sb.add_date_field("study_date", stored=False, indexed=True, fast=True)
    sb.add_float_field("anomaly", stored=True, indexed=True, fast=True)
    return sb.build()


def utc(ts: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(ts, tz=dt.UTC)


def document(r: Record, facets: Facets) -> tantivy.Document:
    """What search sees of a record (`edge.analysis.views.index_fields`)."""
    f = views.index_fields(r)
    doc = tantivy.Document(
        id=f["id"],
        caption=f["caption"],
        labels=f["labels"],
        sure=f["sure"],
        classes=f["classes"],
        source=f["source"],
        device=f["device"],
        bundle=f["bundle"],
    )
    if f["anomaly"] is not None:  # a bundle without an anomaly model gives none
        doc.add_float("anomaly", f["anomaly"])
    for name in DICOM_FILTERS:
        if f.get(name):
            doc.add_text(name, f[name])
    doc.add_date("captured", utc(r.captured_at))
    if f["study_date"] is not None:
        doc.add_date("study_date", f["study_date"])
    doc.add_unsigned("seq", r.seq)
    for name, bits in facets.encode({"labels": f["labels"], "source": [f["source"]]}).items():
        doc.add_unsigned(name, bits)
    return doc


class SearchIndex:
    """The index folder, its single writer, and searches over the last commit."""

    def __init__(self, path: Path, heap_mb: int = 64, writable: bool = True) -> None:
        path.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.schema = build_schema()
        self.rebuilt = False
        """The folder held another schema and was emptied: every record must be indexed."""
        self.index = self._open(writable)
        self.facets = Facets(path)
        self._writer: Any = None
        self._lock = threading.Lock()
        if writable:
            try:
                self._writer = self.index.writer(heap_mb * 1_000_000, 1)
            except ValueError as e:
                if "LockBusy" in str(e) or "lock" in str(e).lower():
                    raise IndexBusyError(
                        f"{path}: the index is held by another process (is the daemon running?)"
                    ) from None
                raise

    def _open(self, writable: bool) -> tantivy.Index:
        marker = self.path / SCHEMA_FILE
        try:
            found = json.loads(marker.read_text()).get("version") if marker.exists() else None
        except (OSError, ValueError):
            found = None
        has_files = any(p.name != SCHEMA_FILE for p in self.path.iterdir())
        if writable and found != SCHEMA_VERSION and has_files:
            self._empty(
                f"schema v{found or 1} in {self.path}, this daemon writes v{SCHEMA_VERSION}"
            )
        try:
            index = tantivy.Index(self.schema, path=str(self.path), reuse=True)
        except ValueError as e:
            if not writable:
                raise
            self._empty(f"tantivy cannot open it with this schema ({e})")
            index = tantivy.Index(self.schema, path=str(self.path), reuse=True)
        index.register_tokenizer(CAPTION_TOKENIZER, CAPTION_ANALYZER)
        if writable:
            marker.write_text(json.dumps({"version": SCHEMA_VERSION}))
        return index

    def _empty(self, why: str) -> None:
        log.warning("search index: %s; emptying it, to rebuild from the store", why)
        for p in self.path.iterdir():
            if p.is_dir():
                shutil.rmtree(p)
            else:
                p.unlink()
        self.rebuilt = True

    # -- writing -----------------------------------------------------------------------------
    def add(self, records: list[Record], replace: bool = True) -> None:
        """Replace each record's document (idempotent: a record indexed twice is one doc).
        `replace=False` skips the delete, for a rebuild into an empty index (about 3x faster
        at a million records)."""
        assert self._writer is not None, "read-only index"
        with self._lock:
            for r in records:
                if replace:
                    self._writer.delete_documents_by_term("id", r.id)
                self._writer.add_document(document(r, self.facets))

    def commit(self) -> None:
        with self._lock:
            self.facets.save()
            self._writer.commit()
        self.index.reload()

    def clear(self) -> None:
        with self._lock:
            self._writer.delete_all_documents()
            self._writer.commit()
        self.index.reload()

    def close(self) -> None:
        """Drop the writer, which releases the index lock."""
        with self._lock:
            if self._writer is not None:
                self._writer.wait_merging_threads()
                self._writer = None

    # -- reading -----------------------------------------------------------------------------
    @property
    def num_docs(self) -> int:
        return int(self.index.searcher().num_docs)

    def size_bytes(self) -> int:
        total = 0
        for p in self.path.iterdir():
            with contextlib.suppress(FileNotFoundError):  # merges delete files as we look
                total += p.stat().st_size
        return total

    def parse(self, q: str, fuzzy: bool = False, typos: list[str] | None = None) -> tantivy.Query:
        """The query, all its words required; `fuzzy`: a word that may be misspelt
        (`typos`) also matches the indexed words one edit away, at a constant score, so exact
        words still rank first; `typos`: those words, when the caller has found them."""
        if not q.strip():
            return tantivy.Query.all_query()
        check_query(q)
        try:
            exact = self.index.parse_query(q, DEFAULT_FIELDS, conjunction_by_default=True)
            if typos is None:
                typos = self.typos(q) if fuzzy else []
            if not typos:
                return exact
            one_edit = self._one_edit(q, typos)
        except ValueError as e:
            raise QuerySyntaxError(str(e)) from None
        either = [(tantivy.Occur.Should, p) for p in (exact, one_edit)]
        return tantivy.Query.boolean_query(either)

    def typos(self, q: str) -> list[str]:
        """The words of `q` that may be misspelt: an indexed term lies one edit from one of
        their terms, and they are neither an ordinary English word ("flower" is no "lower")
        nor a term the index holds as typed. Most queries are spelled right and have none;
        the one-edit part would then only add a constant to every exact match, or worse,
        other words' matches."""
        searcher = self.index.searcher()
        known = {name: {t for t, _ in searcher.terms_with_prefix(name, "")} for name in TYPO_FIELDS}
        out = []
        for word in query_words(q):
            if is_english(word.lower()):
                continue
            terms = field_terms(word)
            if any(t in known[name] for name, ts in terms.items() for t in ts):
                continue
            if any(
                t != term and abs(len(t) - len(term)) <= 1 and within_one_edit(term, t)
                for name, ts in terms.items()
                for term in ts
                for t in known[name]
            ):
                out.append(word)
        return out

    def _one_edit(self, q: str, typos: list[str]) -> tantivy.Query:
        """The query with its `typos` one edit away too. Plain words are parsed one by one, so
        a word that is no typo stays exact; a query with syntax goes to the parser whole, every
        word one edit away."""
        words = q.split()
        if not plain(q) or any(w in OPERATORS for w in words):
            return self.index.parse_query(
                q, DEFAULT_FIELDS, fuzzy_fields=FUZZY, conjunction_by_default=True
            )
        parts = [
            self.index.parse_query(w, DEFAULT_FIELDS, fuzzy_fields=FUZZY if w in typos else {})
            for w in words
        ]
        return tantivy.Query.boolean_query([(tantivy.Occur.Must, p) for p in parts])

    def _phrase(self, q: str) -> tantivy.Query | None:
        """The phrase of two or more plain words, to re-score with; None for other queries."""
        return self.index.parse_query(f'"{q.strip()}"', DEFAULT_FIELDS) if phrased(q) else None

    def _best(
        self, searcher: Any, base: tantivy.Query, q: str, n: int, count: bool
    ) -> tuple[int, list[Match], set[int]]:
        """(matches, the best `n` of `base`, the seqs among the first RESCORE_WINDOW that hold
        the phrase of `q`), the phrase re-scoring that window (the rest keep their order, so
        pages deeper than the window follow on from it)."""
        result = searcher.search(base, max(n, RESCORE_WINDOW), count=count)
        total = int(getattr(result, "count", 0) or 0)
        seqs = _seqs_of(searcher, [a for _, a in result.hits])
        hits = [Match(k, float(s), a) for (s, a), k in zip(result.hits, seqs, strict=True)]
        phrase = self._phrase(q)
        if phrase is None or not hits:
            return total, hits[:n], set()
        window = hits[:RESCORE_WINDOW]
        among = tantivy.Query.const_score_query(self._seqs([m.seq for m in window]), 0.0)
        inside = tantivy.Query.boolean_query(
            [(tantivy.Occur.Must, phrase), (tantivy.Occur.Must, among)]
        )
        found = searcher.search(inside, len(window), count=False).hits
        bonus = dict(
            zip(
                _seqs_of(searcher, [a for _, a in found]),
                (PHRASE_BOOST * float(s) for s, _ in found),
                strict=True,
            )
        )
        window = [m._replace(score=m.score + bonus.get(m.seq, 0.0)) for m in window]
        window.sort(key=lambda m: -m.score)
        return total, (window + hits[RESCORE_WINDOW:])[:n], set(bonus)

    def query(
        self, q: str, f: Filters, fuzzy: bool = False, typos: list[str] | None = None
    ) -> tantivy.Query:
        return self._filtered(self.parse(q, fuzzy, typos), f)

    def _filtered(self, base: tantivy.Query, f: Filters) -> tantivy.Query:
        parts = [base]
        values = (("labels", f.label), ("source", f.source), ("device", f.device))
        dicom = ((name, getattr(f, name)) for name in DICOM_FILTERS)
        for name, value in (*values, *((n, v.upper()) for n, v in dicom if v)):
            if value:
                parts.append(tantivy.Query.term_query(self.schema, name, value))
        for field, since, until in (
            ("captured", f.since, f.until),
            ("study_date", f.study_since, f.study_until),
        ):
            if since or until:
                parts.append(self._dates(field, since, until))
        if f.min_anomaly is not None:
            parts.append(
                tantivy.Query.range_query(
                    self.schema, "anomaly", tantivy.FieldType.Float, f.min_anomaly, float("inf")
                )
            )
        if len(parts) == 1:
            return parts[0]
        return tantivy.Query.boolean_query([(tantivy.Occur.Must, p) for p in parts])

    def _dates(
        self, field: str, since: dt.datetime | None, until: dt.datetime | None
    ) -> tantivy.Query:
        """`field` from `since` to `until`, both included, clamped to what Tantivy holds."""
        low = min(max(since or EARLIEST, EARLIEST), LATEST)
        high = min(max(until or LATEST, EARLIEST), LATEST)
        return tantivy.Query.range_query(self.schema, field, tantivy.FieldType.Date, low, high)

    def search(
        self,
        q: str,
        filters: Filters,
        limit: int = 20,
        offset: int = 0,
        fuzzy: bool = False,
        facets: bool = True,
        recent: bool = False,
    ) -> KeywordPage:
        """One page of hits, every match counted, and the label and source counts over every
        match ({} unless `facets`, as counting them visits every match); `recent`: newest
        first."""
        query = self.query(q, filters, fuzzy)
        searcher = self.index.searcher()
        counts = BESIDE.submit(self.facets.counts, searcher, query) if facets else None
        try:
            # past 10 windows deep, the page is read in the words' order, which the re-scored
            # order follows on from; only the window itself is reordered
            if recent or not phrased(q) or offset + limit > 10 * RESCORE_WINDOW:
                order = "captured" if recent else None
                result = searcher.search(
                    query, limit, count=True, offset=offset, order_by_field=order
                )
                total, page = int(getattr(result, "count", 0) or 0), result.hits
            else:
                total, best, _ = self._best(searcher, query, q, offset + limit, count=True)
                page = [(m.score, m.address) for m in best[offset:]]
        except ValueError as e:  # a query that parses but cannot run, e.g. "caption:*"
            raise QuerySyntaxError(str(e)) from None
        snippets = self._snippets(searcher, query)
        hits = [self._hit(searcher.doc(a), 0.0 if recent else float(s), snippets) for s, a in page]
        return KeywordPage(total, hits, counts.result() if counts is not None else {})

    # A fused ranking works on record seqs, read from the fast field (fetching a stored
    # document costs ~16 us); what it then needs of its documents (counts, the page's hits)
    # is read at their addresses, which hold for the searcher they came from: one a request.
    def snapshot(self) -> Any:
        """A searcher of the last commit, for the several steps of one request."""
        return self.index.searcher()

    def ranked(self, searcher: Any, q: str, filters: Filters, limit: int) -> list[Match]:
        """The best `limit` matches (typo tolerant): a ranking to fuse, without the cost of
        whole hits. The exact words go first: the one-edit part adds the same constant to
        every exact match, so when they fill `limit` the order is the same, and the one-edit
        part is skipped (the scores then lack the constant).

        Where some captions hold the query's words side by side, only those are ranked: one
        that holds them apart ("a circle above a square below a triangle" for "circle
        below") is weak evidence, and the semantic side it is fused with ranks such images
        better (`bench/search_quality.py`)."""
        try:
            exact = self.query(q, filters)
            _, hits, together = self._best(searcher, exact, q, limit, count=False)
            typos = self.typos(q) if len(hits) < limit else []
            if typos:  # the one-edit part can match documents the exact words do not
                fuzzy = self.query(q, filters, typos=typos)
                _, hits, together = self._best(searcher, fuzzy, q, limit, count=False)
        except ValueError as e:
            raise QuerySyntaxError(str(e)) from None
        return [m for m in hits if not together or m.seq in together]

    def passing(
        self, searcher: Any, seqs: list[int], filters: Filters, without_label: str = ""
    ) -> dict[int, Any]:
        """The address of each of `seqs` that is indexed, passes `filters` and does not carry
        `without_label`."""
        if not seqs:
            return {}
        query = self._filtered(self._seqs(seqs), filters)
        if without_label:
            unwanted = tantivy.Query.term_query(self.schema, "labels", without_label)
            query = tantivy.Query.boolean_query(
                [(tantivy.Occur.Must, query), (tantivy.Occur.MustNot, unwanted)]
            )
        addresses = [a for _, a in searcher.search(query, len(seqs), count=False).hits]
        return dict(zip(_seqs_of(searcher, addresses), addresses, strict=True))

    def documents(self, searcher: Any, at: dict[int, Any], words: str = "") -> dict[int, Hit]:
        """Whole hits by seq (score 0) of the documents at these addresses, with snippets
        marking `words` (plain words: Tantivy marks no word a fuzzy term matched, so the
        caller spells the words as corrected)."""
        if not at:
            return {}
        try:
            snippets = self._snippets(searcher, self.parse(words)) if words.strip() else None
        except QuerySyntaxError:
            snippets = None
        return {k: self._hit(searcher.doc(a), 0.0, snippets) for k, a in at.items()}

    def facets_of(self, searcher: Any, at: dict[int, Any]) -> dict[str, dict[str, int]]:
        """Label and source counts over the documents at these addresses (by seq)."""
        if not at:
            return {}
        counts = self.facets.counts_at(searcher, list(at.values()))
        return counts if counts is not None else self.facets.counts(searcher, self._seqs(list(at)))

    def _seqs(self, seqs: list[int]) -> tantivy.Query:
        """Any of `seqs`: a union of term queries (several times faster here than a term-set
        query on this u64 field)."""
        terms = [tantivy.Query.term_query(self.schema, "seq", s) for s in seqs]
        return tantivy.Query.boolean_query([(tantivy.Occur.Should, t) for t in terms])

    def _snippets(self, searcher: Any, query: tantivy.Query) -> Any:
        return tantivy.SnippetGenerator.create(searcher, query, self.schema, "caption")

    @staticmethod
    def _hit(doc: Any, score: float, snippets: Any) -> Hit:
        d = doc.to_dict()
        caption = d["caption"][0] if d.get("caption") else ""
        snippet = snippets.snippet_from_doc(doc).to_html() if snippets is not None else ""
        return Hit(
            id=d["id"][0],
            score=score,
            caption=caption,
            snippet=snippet or html.escape(caption),
            labels=d.get("labels", []),
            classes=d.get("classes", []),
            source=d["source"][0],
            device=d["device"][0],
            captured_at=d["captured"][0].isoformat(),
            anomaly=float(d["anomaly"][0]) if d.get("anomaly") else None,
        )


def _seqs_of(searcher: Any, addresses: list[Any]) -> list[int]:
    """The seq of each document (every document has one: an index of an older schema is
    rebuilt)."""
    return cast(list[int], searcher.fast_field_values("seq", addresses))
