"""The classifier's words: synonyms are one label said by its class's name, a word scores the
probability its classes hold together, labels are ordered by score then narrowness, each
label's heat-map comes from its own classes' maps, and a query word finds the label it
names (or a word of it) on an image."""

from __future__ import annotations

import numpy as np
import pytest

from edge.analysis.bundle import BundleError
from edge.analysis.outputs.base import ACROSS, map_place, place
from edge.analysis.outputs.classify import (
    ClassifyFields,
    ClassifyOutput,
    ClassScore,
    Vocabulary,
    WordScore,
    label_maps,
    label_words,
    match,
    softmax,
)
from models.config import ClassifierConfig, ConfigError

DOC = {
    "classes": [
        {"wnid": "n1", "name": "tabby"},
        {"wnid": "n2", "name": "Egyptian cat"},
        {"wnid": "n3", "name": "bobsled"},
        {"wnid": "n4", "name": "espresso"},
    ],
    "words": {
        "tabby": [0],
        "tabby cat": [0],
        "egyptian cat": [1],
        "cat": [0, 1],
        "true cat": [0, 1],
        "animal": [0, 1],
        "bobsled": [2],
        "bobsleigh": [2],
        "bob": [2],
        "espresso": [3],
        "coffee": [3],
    },
}


def test_synonyms_are_one_label_said_by_the_class_name_or_the_shortest_word() -> None:
    v = Vocabulary(DOC)
    assert "bobsled" in v.labels and "bob" not in v.labels and "bobsleigh" not in v.labels
    assert "tabby" in v.labels and "tabby cat" not in v.labels
    assert "cat" in v.labels and "true cat" not in v.labels
    # "animal" names the same classes as "cat": one label, the shorter word
    assert "animal" not in v.labels
    # a word naming one class that is not its class's name stays a word of its own
    assert {"espresso", "coffee"} & set(v.labels) == {"espresso"}


def test_a_label_scores_what_its_classes_hold_narrowest_first() -> None:
    v = Vocabulary(DOC)
    p = np.array([0.5, 0.45, 0.03, 0.02])
    got = label_words(v, p, top=3, min_score=0.1)
    assert [w.word for w in got] == ["tabby", "egyptian cat", "cat"]  # one class, then two
    assert [w.score for w in got] == [0.5, 0.45, 0.95]
    assert [w.word for w in label_words(v, p, top=2, min_score=0.1)] == ["tabby", "egyptian cat"]
    cat = WordScore(word="cat", score=0.95, also=["animal", "true cat"])
    assert label_words(v, p, top=5, min_score=0.6) == [cat]
    np.testing.assert_allclose(softmax(np.log(p)), p)


def test_the_caption_says_each_place_s_labels_then_their_other_words() -> None:
    v = Vocabulary(DOC)
    labels = label_words(v, np.array([0.01, 0.01, 0.01, 0.97]), top=3, min_score=0.3)
    f = ClassifyFields(labels=labels, classes=[], grid=7)
    assert ClassifyOutput.text(f) == "an espresso (also coffee)"
    assert [lb.name for lb in ClassifyOutput.labels(f)] == ["espresso"]
    cat = [
        WordScore(word="egyptian cat", score=0.6, at="in the centre"),
        WordScore(word="cat", score=0.9, also=["true cat"], at="in the centre"),
        WordScore(word="ball", score=0.4, at="at the bottom left"),
    ]
    f = ClassifyFields(labels=cat, classes=[], grid=7)
    assert ClassifyOutput.text(f) == (
        "an egyptian cat in the centre (cat; also true cat); a ball at the bottom left"
    )


def test_a_place_is_said_in_thirds_and_a_spread_map_names_none() -> None:
    assert place(0.1, 0.1) == "at the top left" and place(0.5, 0.5) == "in the centre"
    assert place(0.9, 0.5) == "at the right" and place(1.0, 1.0) == "at the bottom right"
    peak = np.zeros((7, 7))
    peak[6, 3] = 1.0
    assert map_place(peak) == "at the bottom"
    assert map_place(np.ones((7, 7))) == ACROSS and map_place(np.zeros((7, 7))) == ACROSS


def test_a_labels_map_is_made_of_its_own_classes_maps() -> None:
    v = Vocabulary(DOC)
    p = np.array([0.5, 0.45, 0.03, 0.02])
    cams = np.zeros((2, 2, 4), np.float32)
    cams[0, 0, 0] = 3.0  # tabby, top left
    cams[1, 1, 1] = 2.0  # Egyptian cat, bottom right
    cams[0, 1, 3] = 9.0  # espresso, top right
    labels = [WordScore(word="tabby", score=0.5), WordScore(word="cat", score=0.95)]
    maps = label_maps(v, labels, p, cams, n=4)
    assert maps.dtype == np.uint8 and maps.shape == (2, 2, 2)
    assert maps[0].tolist() == [[255, 0], [0, 0]]
    assert maps[1][0, 0] == 255 and 0 < maps[1][1, 1] < 255 and maps[1][0, 1] == 0


def test_a_query_word_gets_the_map_of_the_label_it_names() -> None:
    f = ClassifyFields(
        labels=[
            WordScore(word="egyptian cat", score=0.6, also=["kitty"]),
            WordScore(word="animal", score=0.9),
        ],
        classes=[ClassScore(index=1, name="Egyptian cat", p=0.6)],
        grid=2,
    )
    blob = np.array([[255, 0, 0, 85], [0, 0, 0, 0]], np.uint8).tobytes()
    got = match(f, blob, "Cat dog animal kitty")
    assert [w["word"] for w in got["words"]] == ["cat", "kitty"] and got["grid"] == 2
    assert got["words"][0]["map"] == [0.75, 0.0, 0.0, 0.25] and got["words"][0]["score"] == 0.6
    assert got["words"][1]["map"] == got["words"][0]["map"]  # a synonym: the same label
    assert got["unknown"] == ["dog", "animal"]  # no label; a label without a map
    assert match(f, blob[:-1], "cat") is None, "a blob of another shape is no map"


@pytest.mark.parametrize(
    "words", [{}, {"cat": []}, {"cat": [0, 9]}], ids=["no words", "no class", "no such class"]
)
def test_a_words_file_naming_no_class_is_refused_by_name(words: dict[str, list[int]]) -> None:
    with pytest.raises(BundleError, match="words: "):
        Vocabulary({"classes": DOC["classes"], "words": words})


def test_label_counts_below_one_are_refused_in_the_config() -> None:
    with pytest.raises(ConfigError, match=r"classifier\.top_labels"):
        ClassifierConfig(top_labels=0)
    with pytest.raises(ConfigError, match=r"classifier\.map_classes"):
        ClassifierConfig(map_classes=0)
