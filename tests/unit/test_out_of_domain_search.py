"""An image flagged out of its bundle's domain is never an answer to a domain word, in any
mode, however close its vectors lie to the word's, and is not counted in facets for one; it
is still found by its label."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from support.analysed import TOPICS, Corpus, build_corpus

from edge.search.engine import SearchRequest


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Corpus]:
    built = build_corpus(tmp_path_factory.mktemp("strangers"), strangers=2)
    yield built
    built.close()


@pytest.mark.parametrize("mode", ["hybrid", "semantic", "keyword"])
@pytest.mark.parametrize("word", list(TOPICS))
def test_a_stranger_is_no_answer_to_a_domain_word(corpus: Corpus, mode: str, word: str) -> None:
    res = corpus.engine.search(SearchRequest(word, mode=mode, limit=50))  # type: ignore[arg-type]
    strangers = corpus.ids(lambda m: m.out_of_domain)
    found = {h.id for h in res.hits}
    assert found and not found & strangers
    assert found <= corpus.ids(lambda m: not m.out_of_domain and m.topic == word) | (
        corpus.ids(lambda m: not m.out_of_domain) if mode != "keyword" else set()
    )
    counted = sum(res.facets.get("labels", {}).values())
    assert "out_of_domain" not in res.facets.get("labels", {}) and counted >= len(found)


def test_a_stranger_is_found_by_its_label(corpus: Corpus) -> None:
    res = corpus.engine.search(SearchRequest("labels:out_of_domain", limit=50))
    assert {h.id for h in res.hits} == corpus.ids(lambda m: m.out_of_domain)
    assert all(h.caption == "" for h in res.hits), "its caption is withheld"
