"""Label and source counts over every match, from one number a document each.

A record's labels are also kept as a bit set in one u64 fast field, each label a bit, the
bits assigned as labels first appear and saved beside the index. Counting the distinct bit
sets among the matches and adding them up per label gives the same counts as counting the
multi-valued `labels` column, many times faster, since there are only as many distinct sets
as combinations seen. The source is kept the same way (a set of one), so that counts over
documents already found (a hybrid search's fused results) read two numbers a document and
run no query.

Past 64 distinct values, the ones without a bit are counted the slow way: the counts stay
exact either way.
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

log = logging.getLogger("s3e.index")
BITS = 64
FIELDS = {"labels": "label_bits", "source": "source_bits"}
"""Each counted field and the u64 fast field of its bit sets."""
TOP = 100
"""Values reported per facet, the most frequent first."""


class Bits:
    """The value of each bit of one field's bit sets, in the index folder."""

    def __init__(self, folder: Path, field: str) -> None:
        self.fast = FIELDS[field]
        self.path = folder / f"{self.fast}.json"
        self.values: list[str] = []
        self.full = False
        """A value found no free bit: counts come from the field's own column."""
        self._saved = 0
        if self.path.exists():
            try:
                got = json.loads(self.path.read_text())
                self.values, self.full = list(got["values"])[:BITS], bool(got["full"])
            except (OSError, ValueError, KeyError, TypeError) as e:
                log.warning(
                    "%s unreadable (%s): %s counts use the %s column", self.path, e, field, field
                )
                self.full = True
            self._saved = len(self.values)
        self._bit = {value: i for i, value in enumerate(self.values)}

    def encode(self, values: list[str]) -> int:
        """The bit set of `values`, giving new ones the next free bits."""
        bits = 0
        for value in values:
            i = self._bit.get(value)
            if i is None:
                if len(self.values) == BITS:
                    self.full = True
                    continue
                i = self._bit[value] = len(self.values)
                self.values.append(value)
            bits |= 1 << i
        return bits

    def decode(self, sets: Iterable[tuple[int, int]]) -> dict[str, int]:
        """Counts per value of (bit set, how many documents have it)."""
        counts: Counter[str] = Counter()
        for key, n in sets:
            for i, value in enumerate(self.values):
                if key >> i & 1:
                    counts[value] += n
        return dict(counts.most_common(TOP))

    def save(self) -> None:
        """Write the values of the bits (before the documents using them are committed)."""
        if len(self.values) == self._saved and not self.full:
            return
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"values": self.values, "full": self.full}))
        os.replace(tmp, self.path)
        self._saved = len(self.values)


class Facets:
    """The bits of every counted field, and the counts."""

    def __init__(self, folder: Path) -> None:
        self.bits = {field: Bits(folder, field) for field in FIELDS}

    def encode(self, values: dict[str, list[str]]) -> dict[str, int]:
        """The bit-set fast fields of a document with these values of each counted field."""
        return {bits.fast: bits.encode(values[field]) for field, bits in self.bits.items()}

    def save(self) -> None:
        for bits in self.bits.values():
            bits.save()

    def counts(self, searcher: Any, query: Any) -> dict[str, dict[str, int]]:
        """Label and source counts over every match of `query`."""
        aggs = {
            field: {
                "terms": {"field": field, "size": TOP}
                if bits.full
                else {"field": bits.fast, "size": 1 << 16}
            }
            for field, bits in self.bits.items()
        }
        agg = searcher.aggregate(query, aggs)
        out = {}
        for field, bits in self.bits.items():
            got = agg[field]
            if not bits.full and got.get("sum_other_doc_count", 0):
                bits.full = True  # more distinct sets than asked for: count the column
                return self.counts(searcher, query)
            buckets = [(b["key"], int(b["doc_count"])) for b in got["buckets"]]
            out[field] = (
                dict(buckets) if bits.full else bits.decode((int(k), n) for k, n in buckets)
            )
        return out

    def counts_at(self, searcher: Any, addresses: list[Any]) -> dict[str, dict[str, int]] | None:
        """Label and source counts over the documents at `addresses` (of `searcher`); None
        once a field has outgrown its bits (`counts` over a query then)."""
        if any(bits.full for bits in self.bits.values()):
            return None
        return {
            field: bits.decode(Counter(searcher.fast_field_values(bits.fast, addresses)).items())
            for field, bits in self.bits.items()
        }
