"""The vector indexes: current until a record is analysed past their cursor, HNSW recall
against brute force (saved and loaded as wide as built), and the profile columns exact, their
top k the sorted top k."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from support.records import fill_analysed

from edge.search.vectors import EXPANSION_ADD, EXPANSION_SEARCH, Hnsw, VectorIndex, top_k
from edge.store.store import Store


def test_a_vector_index_is_current_until_a_record_is_analysed_past_it(tmp_path: Path) -> None:
    """What lets `/similar` answer on the event loop: nothing for a refresh to read."""
    store = Store(tmp_path / "store", "t")
    running = ["chest-int8@test"]
    index = VectorIndex(store, tmp_path / "vectors", "latent", "l2sq", lambda: running[0])
    index.open()
    assert index.current(), "an empty store"
    fill_analysed(store, [10, 20])
    assert not index.current()
    assert index.refresh() == 2 and index.current()
    fill_analysed(store, [30], seed=1)
    assert not index.current()
    assert index.refresh() == 1 and index.current()
    running[0] = "chest-int8@other"
    assert not index.current(), "another bundle runs: the index is of another space"
    store.close()


def test_vector_index_recall_against_brute_force(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    vecs = rng.normal(size=(5000, 32)).astype(np.float32)
    index = VectorIndex(None, tmp_path, "latent", "l2sq")
    index.add(np.arange(5000, dtype=np.uint64), vecs)
    recall = []
    for q in rng.choice(5000, 50, replace=False):
        truth = set(np.argsort(((vecs - vecs[q]) ** 2).sum(1))[:10].tolist())
        recall.append(len(truth & {k for k, _ in index.search(vecs[q], 10)}) / 10)
    assert np.mean(recall) >= 0.98
    index.save(force=True)
    loaded = VectorIndex(None, tmp_path, "latent", "l2sq")
    loaded.open()  # as wide as when it was built (usearch does not save the breadths)
    assert isinstance(loaded.index, Hnsw)
    assert loaded.index.index.expansion_search == EXPANSION_SEARCH
    assert loaded.index.index.expansion_add == EXPANSION_ADD
    for q in range(50):
        assert loaded.search(vecs[q], 10) == index.search(vecs[q], 10)
    index.add(np.array([7], np.uint64), vecs[:1] + 100)  # a re-analysed record: replaced
    assert len(index) == 5000 and index.search(vecs[0] + 100, 1)[0][0] == 7


def test_profile_columns_are_exact_and_their_top_k_is_the_sorted_top_k() -> None:
    rng = np.random.default_rng(1)
    for n, k in [(1, 1), (7, 5), (3000, 100), (50_000, 10)]:
        scores = rng.random(n).astype(np.float32)
        scores[rng.integers(0, n, n // 3)] = 0.5  # ties at the bound
        got = top_k(scores, k)
        assert len(set(got.tolist())) == k
        assert np.array_equal(scores[got], -np.sort(-scores)[:k])
    profiles = rng.random((2000, 48)).astype(np.float32)
    columns = VectorIndex(None, Path("unused"), "profile", "ip", kind="columns")
    columns.add(np.arange(2000, dtype=np.uint64), profiles)
    for dims in ([7], [3, 9], [1, 20, 40]):  # a view of one row, a sum of two, of three
        query = np.zeros(48, np.float32)
        query[dims] = 1 / len(dims)
        product = profiles @ query
        truth = np.argsort(-product, kind="stable")[:20]
        got = columns.search(query, 20)
        assert [k for k, _ in got] == truth.tolist()
        assert np.allclose([d for _, d in got], 1 - product[truth], atol=1e-6)
    query[1] = 0.5
    with pytest.raises(ValueError, match="equal"):
        columns.search(query, 20)
