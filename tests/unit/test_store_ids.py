"""An image is named by its id or by the first 8 or more hex characters of it (the logs print
12); a prefix more than one id begins with is said to be one."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.records import accept_pending

from edge.store.store import AmbiguousIdError, Store

TWINS = ("abcdef01" + "0" * 56, "abcdef01" + "1" * 56)


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(tmp_path, "test")
    accept_pending(s, TWINS)
    return s


def test_a_unique_prefix_names_its_image(store: Store) -> None:
    assert store.resolve(TWINS[1][:12]) == TWINS[1]
    assert store.resolve(TWINS[0]) == TWINS[0]


def test_a_prefix_several_ids_begin_is_ambiguous(store: Store) -> None:
    with pytest.raises(AmbiguousIdError) as got:
        store.resolve("abcdef01")
    assert sorted(got.value.matches) == sorted(TWINS)


@pytest.mark.parametrize("ref", ["abcdef0", "abcdef0z", "ffffffff"])
def test_a_short_odd_or_unknown_reference_names_nothing(store: Store, ref: str) -> None:
    if ref == "ffffffff":
        with pytest.raises(KeyError):
            store.resolve(ref)
    else:
        assert store.resolve(ref) == ref, "passed on as it is: the route says it is unknown"
