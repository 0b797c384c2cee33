"""The device's search backend: the Tantivy index for words and filters, the profile vector
index for the semantic side's first stage, and the store for the region vectors.

A ranked search reads one Tantivy searcher: the keyword ranking and the filter check return
each document's address in it, and the counts and the page's documents are read at those
addresses, without another query.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any, cast

import numpy as np

from edge.analysis.outputs.base import OUT_OF_DOMAIN
from edge.search.engine import Counts, Filters, Hit, KeywordPage, SearchRequest
from edge.search.index import SearchIndex
from edge.search.semantic import Scored
from edge.search.vectors import VectorIndex
from edge.store.store import Store


class DeviceBackend:
    def __init__(self, index: SearchIndex, profile: VectorIndex, store: Store) -> None:
        self.index, self.profile, self.store = index, profile, store

    def keyword_page(self, req: SearchRequest) -> KeywordPage:
        return self.index.search(
            req.q, req.filters, req.limit, req.offset, True, req.facets, req.recent
        )

    def view(self) -> DeviceView:
        return DeviceView(self)


class DeviceView:
    """One request's reads over one searcher; the addresses found on the way are kept."""

    def __init__(self, backend: DeviceBackend) -> None:
        self.backend = backend
        self.searcher = backend.index.snapshot()
        self.at: dict[int, Any] = {}

    def keyword_ranking(self, q: str, filters: Filters, depth: int) -> list[Scored]:
        ranked = self.backend.index.ranked(self.searcher, q, filters, depth)
        self.at.update((m.seq, m.address) for m in ranked)
        return [Scored(m.seq, m.score) for m in ranked]

    def candidates(self, profile: np.ndarray, k: int, filters: Filters) -> list[Hashable]:
        """The profile index's best, unfiltered: the filters apply after the re-ranking."""
        self.backend.profile.refresh()
        return [seq for seq, _ in self.backend.profile.search(profile, k)]

    def regions(self, keys: list[Hashable]) -> dict[Hashable, bytes]:
        got = self.backend.store.blobs(_seqs(keys), "regions")
        return {k: v for k, v in got.items()}

    def passing(self, keys: list[Hashable], filters: Filters) -> set[Hashable]:
        """An image out of its bundle's domain is no answer to a query's meaning: what the
        models made of it is not of their domain, however close its vectors lie."""
        got = self.backend.index.passing(self.searcher, _seqs(keys), filters, OUT_OF_DOMAIN)
        self.at.update(got)
        return set(got)

    def documents(self, keys: list[Hashable], words: str) -> dict[Hashable, Hit]:
        at = {k: self.at[k] for k in _seqs(keys)}
        docs = self.backend.index.documents(self.searcher, at, words)
        return {k: v for k, v in docs.items()}

    def facets(self, keys: list[Hashable]) -> Counts:
        return self.backend.index.facets_of(self.searcher, {k: self.at[k] for k in _seqs(keys)})


def _seqs(keys: list[Hashable]) -> list[int]:
    """The device's keys are record seqs."""
    return cast(list[int], keys)
