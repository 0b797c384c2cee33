"""The keyword index's shortcuts answer what the whole queries answer: the one-edit part is
left out only where it cannot match more (and an English word is never taken for another),
the phrase re-scoring of the best matches ranks them as the phrase over every match did, and
label counts from bit sets are the counts."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import tantivy

from edge.analysis import views
from edge.search import facets
from edge.search.engine import Filters
from edge.search.index import DEFAULT_FIELDS, FUZZY, PHRASE_BOOST, SearchIndex
from edge.store.records import Record

CAPTIONS = [
    "right lower zone consolidation, consistent with pneumonia",
    "left upper zone pulmonary nodule",
    "small left pleural effusion",
    "left lower zone consolidation; right pleural effusion",
    "pleural thickening on the left, no effusion",
    "fracture of a rib: the bone is broken",
    "the cardiac silhouette is enlarged",
    "clear lungs, no acute cardiopulmonary abnormality",
]


def record(seq: int, caption: str, classes: tuple[str, ...] = ("opacity",)) -> Record:
    return Record(
        seq=seq,
        id=f"{seq:064x}",
        device_id="test",
        source="folder",
        source_name="",
        captured_at=1_790_000_000.0 + seq,
        accepted_at=0.0,
        ext="png",
        size=0,
        width=8,
        height=8,
        status="analysed",
        error=None,
        bundle="chest-int8",
        precision="int8",
        revision=1,
        accelerators={},
        timings={},
        analysis={
            "caption": {"text": caption, "words": [], "visual": [], "grid": 8},
            "segmentation": {"segments": [{"class": c, "fraction": 0.1} for c in classes]},
            "vae": {"labels": [], "anomaly": 0.5, "out_of_domain": False, "ood_score": 0.1},
        },
    )


@pytest.fixture
def index(tmp_path: Path) -> Iterator[SearchIndex]:
    idx = SearchIndex(tmp_path / "index")
    idx.add([record(i + 1, c) for i, c in enumerate(CAPTIONS * 3)])
    idx.commit()
    yield idx
    idx.close()


def whole(index: SearchIndex, q: str) -> tantivy.Query:
    """The query with every part over every match: exact words, one edit away, the phrase."""
    parts = [
        index.index.parse_query(q, DEFAULT_FIELDS, conjunction_by_default=True),
        index.index.parse_query(q, DEFAULT_FIELDS, fuzzy_fields=FUZZY, conjunction_by_default=True),
    ]
    if " " in q and '"' not in q and ":" not in q:
        phrase = index.index.parse_query(f'"{q}"', DEFAULT_FIELDS)
        parts.append(tantivy.Query.boost_query(phrase, PHRASE_BOOST))
    return tantivy.Query.boolean_query([(tantivy.Occur.Should, p) for p in parts])


ADDS = [
    "zome",
    "pnemonia",
    "lft pleural",
    "opacty",
    "caption:zome",
    '"pleural effusion" AND lft',
    "labels:opacty",
]
SAME = [
    "pneumonia",
    "left pleural",
    "effusion",
    "opacity",
    '"pleural effusion"',
    "caption:nodule",
    "labels:opacity",
    "(cardiac OR nodule) AND left",
]


@pytest.mark.parametrize("q", ADDS + SAME)
def test_the_one_edit_part_is_left_out_only_where_it_adds_nothing(
    index: SearchIndex, q: str
) -> None:
    searcher = index.index.searcher()
    expected = searcher.search(whole(index, q), 100).count
    res = index.search(q, Filters(), 100, fuzzy=True, facets=False)
    total, hits = res.total, res.hits
    assert expected > 0 and total == expected == len(hits)
    assert bool(index.typos(q)) == (q in ADDS), "typos are one edit from indexed words"


@pytest.mark.parametrize(("q", "not_meant"), [("zone", "bone"), ("bone", "zone")])
def test_an_english_word_is_never_taken_for_its_neighbour(
    index: SearchIndex, q: str, not_meant: str
) -> None:
    res = index.search(q, Filters(), 100, fuzzy=True, facets=False)
    assert res.hits and all(q in h.caption and not_meant not in h.caption for h in res.hits)
    assert not index.typos(q), "one edit apart, but both are words"


@pytest.mark.parametrize(
    "q", ["left pleural", "pleural effusion", "left lower zone", "left effusion"]
)
def test_the_phrase_re_scoring_ranks_as_the_phrase_over_every_match(
    index: SearchIndex, q: str
) -> None:
    searcher = index.index.searcher()
    hits = searcher.search(whole(index, q), 100).hits
    seqs = searcher.fast_field_values("seq", [a for _, a in hits])
    expected = {k: float(s) for (s, _), k in zip(hits, seqs, strict=True)}
    together = {k for k in expected if q in CAPTIONS[(k - 1) % len(CAPTIONS)]}
    res = index.search(q, Filters(), 100, fuzzy=True, facets=False)
    total, page = res.total, res.hits
    assert total == len(expected) and {int(h.id, 16) for h in page} == expected.keys()
    first = {int(h.id, 16) for h in page[: len(together)]}
    assert first == together, "side by side as typed ranks first"
    # the ranking hybrid search fuses: only the captions holding the words side by side,
    # where some do ("left effusion": none does, so every match)
    ranked = index.ranked(searcher, q, Filters(), 100)
    got = {k: s for k, s, _ in ranked}
    assert got.keys() == (together or expected.keys())
    assert searcher.fast_field_values("seq", [a for _, _, a in ranked]) == list(got)
    shift = {round(expected[k] - s, 4) for k, s in got.items()}
    assert len(shift) == 1, "the same scores, but for the one-edit part's constant"


def label_counts(records: list[Record], word: str) -> Counter[str]:
    """The labels of the records whose caption holds `word`, counted one by one."""
    return Counter(
        lab
        for r in records
        if word in r.analysis["caption"]["text"]
        for lab in views.index_fields(r)["labels"]
    )


@pytest.mark.parametrize("kinds", [5, facets.BITS + 6])
def test_label_counts_are_the_counts_with_more_labels_than_bits_too(
    tmp_path: Path, kinds: int
) -> None:
    names = [f"class{k}" for k in range(kinds)]
    records = [
        record(
            i + 1,
            CAPTIONS[i % len(CAPTIONS)],
            tuple(names[(i + j) % kinds] for j in range(1 + i % 3)),
        )
        for i in range(3 * kinds)
    ]
    index = SearchIndex(tmp_path / "index")
    index.add(records)
    index.commit()
    searcher = index.snapshot()
    for word in ("zone", "effusion", "lungs"):
        counts = index.search(word, Filters(), 5, facets=True).facets
        assert counts["labels"] == dict(label_counts(records, word)), word
        matching = sum(word in r.analysis["caption"]["text"] for r in records)
        assert counts["source"] == {"folder": matching}
        # over documents already found (a hybrid search's), read at their addresses
        query = index.query(word, Filters())
        found = [a for _, a in searcher.search(query, len(records)).hits]
        at = dict(zip(searcher.fast_field_values("seq", found), found, strict=True))
        assert index.facets_of(searcher, at) == counts, word
    assert index.facets.bits["labels"].full == (kinds > facets.BITS)
    index.close()
    again = SearchIndex(tmp_path / "index")  # the bits' labels were saved with the commit
    assert again.facets.bits["labels"].values == index.facets.bits["labels"].values
    assert again.search("zone", Filters(), 5).facets["labels"] == dict(
        label_counts(records, "zone")
    )
    again.close()
