"""Words that are no label, searched through related labels: the table built from WordNet and
GloVe (on a handful of hand-made synsets and vectors), its reading on the device (typos, label
words left to the index), and the search engine through it over a real Tantivy index (the
shared chest corpus of `support.analysed`)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from support.analysed import Corpus, build_corpus

from edge.search.engine import NO_MATCH, SOME_WORDS, Result, SearchEngine, SearchRequest
from edge.search.related import RelatedWords
from models.photos import related
from models.photos.words import Synset, read_senses

SYNSETS = {
    "n1": Synset("n1", ("insect",), ()),
    "n2": Synset("n2", ("beetle",), ("n1",)),  # a class
    "n3": Synset("n3", ("bug",), ("n1",)),  # a kind of insect: upwards
    "n4": Synset("n4", ("vessel", "watercraft"), ()),
    "n5": Synset("n5", ("canoe",), ("n4",)),  # a class
    "n6": Synset("n6", ("drinking vessel",), ()),
    "n7": Synset("n7", ("coffee mug",), ("n8",)),  # a class
    "n8": Synset("n8", ("mug",), ("n6",)),  # mug's sense with the class below it
    "n9": Synset("n9", ("mug", "face"), ()),  # mug's other sense: nothing below
}
CLASSES: dict[str, Any] = {
    "classes": [{"wnid": "n2", "name": "beetle"}, {"wnid": "n5", "name": "canoe"}],
    "words": {"beetle": [0], "insect": [0], "canoe": [1], "boat": [1], "coffee mug": []},
}
VOCAB = ["boat", "ship", "beetle", "insect", "canoe", "ocean", "red", "sea"]


def unit(*v: float) -> list[float]:
    return list(np.asarray(v) / np.linalg.norm(v))


VECTORS = np.asarray(
    [
        unit(1, 0, 0),  # boat
        unit(0.95, 0.3, 0),  # ship: near boat
        unit(0, 1, 0),  # beetle
        unit(0, 0.9, 0.1),  # insect
        unit(0.8, 0, 0.6),  # canoe
        unit(0.85, 0, 0.5),  # ocean: near boat and canoe
        unit(0, 0, 1),  # red
        unit(0.1, 0.4, -0.9),  # sea: near nothing
    ],
    np.float32,
)


def build() -> related.Related:
    senses = {"bug": ["n3"], "vessel": ["n4"], "watercraft": ["n4"], "mug": ["n9", "n8"]}
    doc = {**CLASSES, "words": {k: v for k, v in CLASSES["words"].items() if v}}
    return related.build(doc, SYNSETS, senses, VOCAB, VECTORS, everyday={"kitten": ("beetle",)})


def test_wordnet_gives_the_labels_below_a_word_or_above_it_and_glove_the_rest() -> None:
    table = build()
    assert table["vessel"] == [("canoe", 1.0)]  # downwards: canoe is a vessel
    assert table["watercraft"] == [("canoe", 1.0)]
    assert table["bug"] == [("insect", related.UPWARD)]  # upwards: a bug is an insect
    assert table["kitten"] == [("beetle", related.UPWARD)]  # the curated everyday words
    assert [w for w, _ in table["ocean"]] == ["canoe", "boat"]  # GloVe, nearest first
    assert table["ocean"][0][1] == pytest.approx(
        related.UPWARD * float(VECTORS[5] @ VECTORS[4]), abs=1e-3
    )
    assert "ship" in table  # GloVe: 0.95 from boat
    assert "sea" not in table  # nothing within MIN_COSINE
    assert "red" not in table  # an adjective's noun senses say nothing
    assert "boat" not in table and "insect" not in table  # labels need no relation


def test_a_word_with_a_sense_below_which_lie_classes_takes_those_classes() -> None:
    # "mug" names a face (nothing below) and a drinking vessel (the coffee mug class below)
    doc = {
        "classes": [*CLASSES["classes"], {"wnid": "n7", "name": "coffee mug"}],
        "words": {**CLASSES["words"], "coffee mug": [2]},
    }
    table = related.build(doc, SYNSETS, {"mug": ["n9", "n8"]}, VOCAB, VECTORS, everyday={})
    assert table["mug"] == [("coffee mug", 1.0)]


def test_an_everyday_word_naming_no_label_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match=r"'kitten'.*'cat'"):
        related.build(CLASSES, SYNSETS, {}, VOCAB, VECTORS, everyday={"kitten": ("cat",)})


def test_index_noun_gives_each_words_senses_in_wordnets_order(tmp_path: Path) -> None:
    index = tmp_path / "index.noun"
    index.write_text(
        "  1 This software and database is being provided to you, the LICENSEE\n"
        "bug n 2 3 @ ~ #m 2 1 02236355 14464675  \n"
        "coffee_mug n 1 1 @ 1 0 03063599  \n"
    )
    assert read_senses(index) == {"bug": ["n02236355", "n14464675"], "coffee mug": ["n03063599"]}


def test_the_table_round_trips_through_its_json(tmp_path: Path) -> None:
    import json

    path = related.write(build(), tmp_path / "related.json")
    doc = json.loads(path.read_text())
    assert doc["bug"] == [["insect", related.UPWARD]]
    words = RelatedWords(doc, {"insect", "beetle", "canoe", "boat"})
    assert words.lookup("bug") == ("bug", [("insect", related.UPWARD)])


# -- on the device -------------------------------------------------------------------------------
TABLE: dict[str, list[list[Any]]] = {
    "lump": [["nodule", 0.8]],
    "fluid": [["effusion", 0.8], ["pleural effusion", 0.7]],
}
LABELS = {"nodule", "effusion", "pleural effusion", "consolidation", "cardiomegaly"}


def test_a_word_is_read_as_itself_one_typo_away_or_not_at_all() -> None:
    words = RelatedWords(TABLE, LABELS)
    assert words.lookup("lump") == ("lump", [("nodule", 0.8)])
    assert words.lookup("flluid")[0] == "fluid"  # a typo of a related word
    assert words.lookup("nodule") == ("", [])  # a label: the index finds it
    assert words.lookup("nodulr") == ("", [])  # a label's typo: the index's own tolerance
    assert words.lookup("fluids") == ("fluid", TABLE_READ["fluid"])
    assert words.lookup("water") == ("", [])  # an English word is no typo


TABLE_READ = {w: [(str(a), float(b)) for a, b in r] for w, r in TABLE.items()}


def test_an_expansion_searches_each_word_or_its_related_labels_below_it() -> None:
    exp = RelatedWords(TABLE, LABELS).expand("the fluid, nodule")
    assert exp is not None
    assert exp.query == '(fluid OR effusion^0.8 OR "pleural effusion"^0.7) nodule'
    assert exp.related == {"fluid": ["effusion", "pleural effusion"]}
    assert RelatedWords(TABLE, LABELS).expand("nodule") is None


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Corpus]:
    built = build_corpus(tmp_path_factory.mktemp("corpus"))
    yield built
    built.close()


def keyword(corpus: Corpus, q: str, table: RelatedWords | None) -> Result:
    engine = SearchEngine(corpus.engine.backend, lambda: None, lambda: table)
    return engine.search(SearchRequest(q=q, mode="keyword", limit=50))


def test_a_related_word_finds_the_labels_images_and_says_how(corpus: Corpus) -> None:
    table = RelatedWords(TABLE, LABELS)
    res = keyword(corpus, "lump", table)
    assert {h.id for h in res.hits} == corpus.of("nodule")
    assert res.related == {"lump": ["nodule"]}
    assert "also searched 'lump' as nodule" in res.message
    assert keyword(corpus, "lump", None).total == 0
    typo = keyword(corpus, "lunp", table)
    assert typo.corrected == {"lunp": "lump"}
    assert {h.id for h in typo.hits} == corpus.of("nodule")


def test_several_words_no_image_holds_together_find_those_holding_some(corpus: Corpus) -> None:
    res = keyword(corpus, "nodule zebra", None)
    assert {h.id for h in res.hits} == corpus.of("nodule")
    assert res.message == SOME_WORDS
    nothing = keyword(corpus, "zebra giraffe", None)
    assert nothing.total == 0 and nothing.message == NO_MATCH
