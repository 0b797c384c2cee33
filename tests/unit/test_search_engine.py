"""The search engine over the device's real backend: fusion of the two rankings and why each
hit matched, which mode a query really gets, filters on the semantic side, newest first,
paging, and the message that names unknown words, corrections and empty answers.

The corpus (`support.analysed`) is a real store, Tantivy index and vector indexes filled by
the index sink, searched with the shipped bundle's query encoder; its records are each about
one topic word, so what a query must find is known.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from support.analysed import BASE_TIME, DEVICE, HOUR, TOPICS, Corpus, Made, build_corpus

from edge.search.engine import (
    MIX_KEYWORD,
    NO_MATCH,
    RRF_K,
    Filters,
    Fusion,
    Mode,
    Result,
    SearchRequest,
    fuse,
    matched_terms,
)
from edge.search.semantic import Scored


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Corpus]:
    built = build_corpus(tmp_path_factory.mktemp("corpus"))
    yield built
    built.close()


def search(corpus: Corpus, q: str, **options: Any) -> Result:
    return corpus.engine.search(SearchRequest(q=q, **options))


def ids(res: Result) -> list[str]:
    return [h.id for h in res.hits]


def at(hour: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(BASE_TIME + hour * HOUR, tz=dt.UTC)


# -- fusion, on rankings given by hand ---------------------------------------------------------
KEYWORD = [Scored("a", 10.0), Scored("b", 1.0)]
SEMANTIC = [Scored("c", 0.9), Scored("b", 0.2)]


def test_rrf_ranks_a_key_found_on_both_sides_above_the_first_of_either_side() -> None:
    order, _ = fuse(KEYWORD, SEMANTIC, "rrf")
    assert [s.key for s in order] == ["b", "a", "c"]
    assert order[0].score == pytest.approx(2 / (RRF_K + 2))
    assert order[1].score == pytest.approx(1 / (RRF_K + 1))


def test_mix_weighs_the_scores_so_a_strong_single_side_beats_two_weak_ones() -> None:
    order, _ = fuse(KEYWORD, SEMANTIC, "mix")
    assert [s.key for s in order] == ["a", "c", "b"]
    assert order[0].score == pytest.approx(MIX_KEYWORD * 1.0)
    assert order[2].score == pytest.approx(MIX_KEYWORD * 0.1 + (1 - MIX_KEYWORD) * 0.2)


@pytest.mark.parametrize("fusion", ["rrf", "mix"])
def test_fusion_says_each_keys_rank_and_score_on_each_side(fusion: Fusion) -> None:
    _, why = fuse(KEYWORD, SEMANTIC, fusion)
    assert why["a"] == {"keyword": {"rank": 1, "score": 10.0, "terms": []}}
    assert why["c"] == {"semantic": {"rank": 1, "score": 0.9}}
    assert why["b"] == {
        "keyword": {"rank": 2, "score": 1.0, "terms": []},
        "semantic": {"rank": 2, "score": 0.2},
    }


def test_one_side_alone_keeps_its_order() -> None:
    order, why = fuse([], SEMANTIC, "rrf")
    assert [s.key for s in order] == ["c", "b"]
    assert all(set(w) == {"semantic"} for w in why.values())


def test_matched_terms_are_the_query_words_the_caption_holds_or_holds_one_edit_away() -> None:
    caption = "small left pleural effusion"
    assert matched_terms("pleural efusion heart", caption) == ["efusion", "pleural"]
    assert matched_terms("cardiomegaly", caption) == []


# -- modes and rankings over the corpus ------------------------------------------------------
@pytest.mark.parametrize("topic", sorted(TOPICS))
def test_semantic_mode_ranks_a_topics_records_first_closest_first(
    corpus: Corpus, topic: str
) -> None:
    res = search(corpus, topic, mode="semantic")
    assert res.mode == "semantic"
    assert set(ids(res)) == corpus.of(topic), "only the topic's records pass the floor"
    assert [corpus.by_id(i).place for i in ids(res)] == [0, 1, 2, 3]
    assert all(set(h.match) == {"semantic"} for h in res.hits)


def test_hybrid_hits_carry_the_keyword_terms_and_the_semantic_words(corpus: Corpus) -> None:
    res = search(corpus, "pneumonia")
    assert res.mode == "hybrid" and set(ids(res)) == corpus.of("pneumonia")
    for rank, hit in enumerate(res.hits, start=1):
        keyword, semantic = hit.match["keyword"], hit.match["semantic"]
        assert keyword["terms"] == ["pneumonia"] and keyword["rank"] == rank
        assert set(semantic["words"]) == {"pneumonia"}
        assert semantic["words"]["pneumonia"] == pytest.approx(semantic["score"], abs=1e-3)
        assert hit.score == pytest.approx(2 / (RRF_K + rank), abs=1e-6)


@pytest.mark.parametrize("fusion", ["rrf", "mix"])
def test_either_fusion_ranks_the_records_both_sides_found_first(
    corpus: Corpus, fusion: Fusion
) -> None:
    res = search(corpus, "pleural effusion", fusion=fusion, limit=50)
    both = [h for h in res.hits if {"keyword", "semantic"} <= set(h.match)]
    assert {h.id for h in both} == corpus.of("effusion")
    assert res.hits[: len(both)] == both
    scores = [h.score for h in res.hits]
    assert scores == sorted(scores, reverse=True)


@pytest.mark.parametrize("q", ["labels:nodule", '"pleural effusion"', "nodule AND left"])
def test_a_query_with_syntax_is_a_keyword_search(corpus: Corpus, q: str) -> None:
    res = search(corpus, q, mode="hybrid")
    topic = "effusion" if "pleural" in q else "nodule"
    assert res.mode == "keyword"
    assert set(ids(res)) == corpus.of(topic)
    assert all(set(h.match) == {"keyword"} for h in res.hits)


def test_recent_gives_the_newest_first(corpus: Corpus) -> None:
    res = search(corpus, "chest", recent=True, limit=50)
    holding = corpus.ids(lambda m: "chest" in TOPICS[m.topic][0])
    newest_first = sorted(holding, key=lambda i: -corpus.by_id(i).captured_at)
    assert res.mode == "keyword"
    assert ids(res) == newest_first
    assert len(newest_first) == 8


def test_recent_with_no_query_lists_every_record_newest_first(corpus: Corpus) -> None:
    res = search(corpus, "", recent=True, limit=100)
    assert res.total == len(corpus.records)
    assert ids(res) == [m.id for m in sorted(corpus.records, key=lambda m: -m.captured_at)]


# -- filters ---------------------------------------------------------------------------------
FILTERS: dict[str, tuple[Filters, Callable[[Made], bool]]] = {
    "label": (Filters(label="anomalous"), lambda m: "anomalous" in m.labels),
    "source": (Filters(source="upload"), lambda m: m.source == "upload"),
    "device": (Filters(device="elsewhere"), lambda m: False),
    "min_anomaly": (Filters(min_anomaly=1.0), lambda m: m.anomaly >= 1.0),
    "since": (Filters(since=at(2 * len(TOPICS))), lambda m: m.place >= 2),
    "until": (Filters(until=at(2 * len(TOPICS) - 0.5)), lambda m: m.place < 2),
    "since-and-until": (
        Filters(since=at(len(TOPICS)), until=at(3 * len(TOPICS) - 0.5)),
        lambda m: m.place in (1, 2),
    ),
}


@pytest.mark.parametrize("mode", ["semantic", "hybrid"])
@pytest.mark.parametrize("name", sorted(FILTERS))
def test_a_filter_applies_to_the_semantic_side_too(corpus: Corpus, name: str, mode: Mode) -> None:
    filters, keep = FILTERS[name]
    unfiltered = corpus.of("pneumonia")
    want = unfiltered & corpus.ids(keep)
    assert want != unfiltered, "the filter must leave some out"
    res = search(corpus, "pneumonia", mode=mode, filters=filters)
    assert set(ids(res)) == want and res.total == len(want)


def test_the_device_filter_keeps_the_devices_own_records(corpus: Corpus) -> None:
    res = search(corpus, "nodule", mode="semantic", filters=Filters(device=DEVICE))
    assert set(ids(res)) == corpus.of("nodule")


def test_facets_count_the_filtered_answer(corpus: Corpus) -> None:
    res = search(corpus, "pneumonia", mode="semantic", filters=Filters(source="folder"))
    assert res.facets["source"] == {"folder": 2}
    assert res.facets["labels"]["consolidation"] == 2


# -- messages --------------------------------------------------------------------------------
def test_a_misspelt_word_is_corrected_said_and_found(corpus: Corpus) -> None:
    res = search(corpus, "pnemonia")
    assert res.corrected == {"pnemonia": "pneumonia"}
    assert res.message == "searched for 'pneumonia' (you typed 'pnemonia')"
    assert set(ids(res)) == corpus.of("pneumonia")
    assert all(h.match["semantic"]["words"].keys() == {"pneumonia"} for h in res.hits)


def test_an_unknown_word_beside_known_ones_is_named_and_ignored(corpus: Corpus) -> None:
    res = search(corpus, "pneumonia zebra")
    assert res.unknown == ["zebra"]
    assert res.message == "ignored 'zebra': not words the models know"
    assert set(ids(res)) == corpus.of("pneumonia")


def test_a_query_of_only_unknown_words_says_no_image_matched_and_why(corpus: Corpus) -> None:
    res = search(corpus, "zebra giraffe")
    assert res.total == 0 and res.unknown == ["zebra", "giraffe"]
    assert res.message.startswith("no image matched: 'zebra', 'giraffe' are not words")


def test_a_query_of_only_stop_words_says_there_is_nothing_to_search_for(corpus: Corpus) -> None:
    res = search(corpus, "the of a", mode="semantic")
    assert res.total == 0
    assert res.message.startswith("nothing to search for")


def test_a_keyword_search_that_matches_nothing_says_so(corpus: Corpus) -> None:
    res = search(corpus, "fracture", mode="keyword")
    assert res.total == 0 and res.message == NO_MATCH


def test_a_keyword_search_that_matches_has_no_message(corpus: Corpus) -> None:
    res = search(corpus, "nodule", mode="keyword")
    assert res.total == 4 and res.message == ""


# -- paging ----------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["keyword", "semantic", "hybrid"])
def test_page_two_continues_page_one_without_overlap(corpus: Corpus, mode: Mode) -> None:
    whole = search(corpus, "chest radiograph", mode=mode, limit=100)
    assert len(whole.hits) >= 6, "enough for two pages"
    first = search(corpus, "chest radiograph", mode=mode, limit=3)
    second = search(corpus, "chest radiograph", mode=mode, limit=3, offset=3)
    assert ids(first) + ids(second) == ids(whole)[:6]
    assert not set(ids(first)) & set(ids(second))
    assert first.total == second.total == whole.total


def test_a_page_past_the_end_is_empty_but_counts_every_match(corpus: Corpus) -> None:
    res = search(corpus, "nodule", mode="hybrid", offset=50)
    assert res.hits == [] and res.total == 4


def test_recent_pages_continue_newest_first(corpus: Corpus) -> None:
    first = search(corpus, "", recent=True, limit=5)
    second = search(corpus, "", recent=True, limit=5, offset=5)
    times = [h.captured_at for h in first.hits + second.hits]
    assert times == sorted(times, reverse=True) and len(set(times)) == 10


def test_every_record_is_a_document_with_its_caption(corpus: Corpus) -> None:
    """What every test above relies on: every record is a document, with its caption."""
    res = search(corpus, "", mode="keyword", limit=100)
    assert res.total == len(corpus.records) == 4 * len(TOPICS)
    for hit in res.hits:
        assert hit.caption == TOPICS[corpus.by_id(hit.id).topic][0]
