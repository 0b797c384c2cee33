"""A query before any index sees it: the keyword side's bounds (length, nesting, terms) and
unbalanced parentheses or quotes refused saying where, which queries are plain words or a
phrase, the terms a query can become in each field; and the semantic side's reading of the
words (corrections within one edit, unknown words named, stop words kept for context)."""

from __future__ import annotations

import pytest

from core.semantic import correct, parse_query, within_one_edit
from edge.search.engine import QuerySyntaxError
from edge.search.query import (
    MAX_QUERY_CHARS,
    MAX_QUERY_DEPTH,
    MAX_QUERY_TERMS,
    check_query,
    field_terms,
    phrased,
    plain,
)

VOCAB = ["<pad>", "<unk>", ",", "the", "of", "pneumonia", "effusion", "nodule", "heart", "left"]


# -- keyword bounds --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "q",
    [
        "pleural effusion",
        "labels:nodule AND (left OR right)",
        '"(" left',
        "(" * MAX_QUERY_DEPTH + "x" + ")" * MAX_QUERY_DEPTH,
        " ".join(["w"] * MAX_QUERY_TERMS),
        "x" * MAX_QUERY_CHARS,
    ],
    ids=["words", "syntax", "paren-in-quotes", "deepest", "most-terms", "longest"],
)
def test_a_query_within_the_bounds_passes(q: str) -> None:
    check_query(q)


@pytest.mark.parametrize(
    ("q", "says"),
    [
        ("x" * (MAX_QUERY_CHARS + 1), f"query of {MAX_QUERY_CHARS + 1} characters; at most 512"),
        (
            "(" * (MAX_QUERY_DEPTH + 1) + ")" * (MAX_QUERY_DEPTH + 1),
            f"parentheses nested deeper than {MAX_QUERY_DEPTH}",
        ),
        ("left) right", "unmatched ')' at position 4"),
        ("(left (right)", "unclosed '(' at position 0: expected ')'"),
        ('left "pleural effusion', "unclosed '\"' at position 5"),
        ('"a" "b', "unclosed '\"' at position 4"),
        (" ".join(["w"] * (MAX_QUERY_TERMS + 1)), f"query of 65 terms; at most {MAX_QUERY_TERMS}"),
        ("(a) (b) " * 33, "query of 66 terms; at most 64"),
    ],
    ids=[
        "too-long",
        "too-deep",
        "unmatched-close",
        "unclosed-open",
        "unclosed-quote",
        "last-quote",
        "too-many-terms",
        "terms-inside-parentheses",
    ],
)
def test_a_query_over_a_bound_or_unbalanced_is_refused_saying_where(q: str, says: str) -> None:
    with pytest.raises(QuerySyntaxError) as e:
        check_query(q)
    assert str(e.value) == says


def test_deep_nesting_is_refused_at_the_first_level_too_deep_not_at_the_end() -> None:
    with pytest.raises(QuerySyntaxError, match="nested deeper"):
        check_query("(" * 500)


# -- plain words and phrases -----------------------------------------------------------------
@pytest.mark.parametrize(
    ("q", "is_plain", "is_phrased"),
    [
        ("effusion", True, False),
        ("  pleural effusion ", True, True),
        ("Left Lower Zone 2", True, True),
        ("labels:nodule", False, False),
        ('"pleural effusion"', False, False),
        ("left AND right", True, True),
        ("nodule*", False, False),
        ("", False, False),
    ],
)
def test_plain_words_and_phrases(q: str, is_plain: bool, is_phrased: bool) -> None:
    assert (plain(q), phrased(q)) == (is_plain, is_phrased)


def test_field_terms_are_stemmed_in_the_caption_and_as_typed_in_the_labels() -> None:
    assert field_terms("pleural effusions") == {
        "caption": {"pleural", "effus"},
        "labels": {"pleural", "effusions"},
    }


def test_field_terms_of_a_query_with_syntax_drop_field_names_and_operators() -> None:
    assert field_terms('labels:nodule AND NOT "Consolidations"') == {
        "caption": {"nodul", "consolid"},
        "labels": {"nodule", "Consolidations"},
    }


# -- the semantic side's words ---------------------------------------------------------------
@pytest.mark.parametrize(
    ("a", "b", "near"),
    [
        ("pneumonia", "pnemonia", True),
        ("effusion", "effsuion", True),
        ("heart", "hearts", True),
        ("heart", "haert", True),
        ("heart", "hurts", False),
        ("nodule", "nodles", False),
    ],
)
def test_within_one_edit_counts_a_swap_of_neighbours_as_one(a: str, b: str, near: bool) -> None:
    assert within_one_edit(a, b) is near and within_one_edit(b, a) is near


def test_a_word_one_edit_away_is_corrected_and_said() -> None:
    parsed = parse_query("pnemonia effsuion", VOCAB)
    assert parsed.words == ["pneumonia", "effusion"]
    assert parsed.corrected == {"pnemonia": "pneumonia", "effsuion": "effusion"}
    assert parsed.unknown == []


def test_a_word_two_edits_away_is_unknown_and_named() -> None:
    parsed = parse_query("pnmonia nodule zebra", VOCAB)
    assert parsed.words == ["nodule"]
    assert parsed.unknown == ["pnmonia", "zebra"]
    assert parsed.corrected == {}


def test_a_short_word_is_taken_as_it_is_or_not_at_all() -> None:
    assert correct("ab", ["abc", "ab"]) == "ab"
    assert correct("ab", ["abc"]) is None
    assert correct("haert", VOCAB) == "heart"


def test_stop_words_are_kept_for_context_but_are_not_content() -> None:
    parsed = parse_query("The effusion of the left", VOCAB)
    assert parsed.words == ["the", "effusion", "of", "the", "left"]
    assert parsed.content == ["effusion", "left"]


def test_a_query_of_only_stop_words_has_no_content() -> None:
    parsed = parse_query("the of a", VOCAB)
    assert parsed.content == [] and parsed.unknown == []


def test_the_first_vocabulary_word_within_one_edit_wins() -> None:
    assert correct("zorbs", ["<pad>", "zorbx", "zorbs2", "zorbz"]) == "zorbx"
    assert correct("zone", ["<pad>", ",", "zone"]) == "zone"


@pytest.mark.parametrize("word", ["flower", "hart", "nodes", "bone"])
def test_an_ordinary_english_word_is_never_replaced_by_another(word: str) -> None:
    vocab = ["<pad>", "lower", "heart", "notes", "codes", "zone"]
    assert correct(word, vocab) is None
    assert parse_query(f"{word} lower", vocab).unknown == [word]


@pytest.mark.parametrize(("word", "meant"), [("effusions", "effusion"), ("lung", "lungs")])
def test_an_english_word_is_taken_for_another_form_of_itself(word: str, meant: str) -> None:
    assert correct(word, ["<pad>", "effusion", "lungs"]) == meant
