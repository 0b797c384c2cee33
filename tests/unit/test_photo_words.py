"""The photos domain's words: WordNet's data.noun parsed, each class's useful ancestors found,
and the device's JSON written, on a committed excerpt (tests/data/wordnet_excerpt); and the
Debian package the wordnet asset comes from read without dpkg."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from models.photos import words
from models.photos.words import PhotoClass, Synset
from models.pretrained.assets import AssetError, ar_members, deb_members

DATA = Path(__file__).resolve().parents[1] / "data" / "wordnet_excerpt"
NOUNS = DATA / "data.noun"
TABBY, EGYPTIAN, ESPRESSO, CUP = "n02123045", "n02124075", "n07920052", "n07930864"


def _build() -> list[PhotoClass]:
    return words.build_from(
        DATA / "imagenet_synsets.txt", DATA / "imagenet_synset_to_lemma.txt", NOUNS
    )


def test_a_line_gives_its_lemmas_and_only_its_noun_hypernyms() -> None:
    line = (
        "00000042 03 n 0b big_one(a) 0 Big_Thing 1 x 0 x 0 x 0 x 0 x 0 x 0 x 0 x 0 x 0 "
        "004 @i 00000007 n 0000 ~ 00000008 n 0000 @ 00000009 n 0000 @ 00000010 v 0000 "
        "| a gloss | with a bar"
    )
    s = words.parse_line(line)
    assert s.wnid == "n00000042"
    assert s.lemmas[:2] == ("big one", "Big Thing") and len(s.lemmas) == 11
    assert s.hypernyms == ("n00000007", "n00000009")


def test_data_noun_skips_the_licence_header() -> None:
    synsets = words.read_synsets(NOUNS)
    body = [line for line in NOUNS.read_text().splitlines() if not line.startswith("  ")]
    assert len(synsets) == len(body) == 46
    assert all(len(w) == 9 and w[0] == "n" and w[1:].isdigit() for w in synsets)
    assert synsets["n02121808"] == Synset(
        "n02121808",
        ("domestic cat", "house cat", "Felis domesticus", "Felis catus"),
        ("n02121620", "n01317541"),
    )


def test_classes_come_in_index_order_with_their_lemmas() -> None:
    classes = words.read_classes(
        DATA / "imagenet_synsets.txt", DATA / "imagenet_synset_to_lemma.txt"
    )
    assert classes == [
        (TABBY, ("tabby", "tabby cat")),
        (EGYPTIAN, ("Egyptian cat",)),
        (ESPRESSO, ("espresso",)),
        (CUP, ("cup",)),
    ]


def test_a_class_without_lemmas_is_an_error(tmp_path: Path) -> None:
    ids = tmp_path / "ids.txt"
    ids.write_text(f"{TABBY}\nn09999999\n")
    with pytest.raises(ValueError, match="n09999999"):
        words.read_classes(ids, DATA / "imagenet_synset_to_lemma.txt")


def test_ancestors_come_nearest_first_each_once() -> None:
    up = words.ancestors(TABBY, words.read_synsets(NOUNS))
    assert up[:3] == ["n02121808", "n02121620", "n01317541"]  # domestic cat; cat, pet
    assert up[-1] == "n00001740"  # entity
    assert len(up) == len(set(up))
    assert up.index("n02120997") < up.index("n00015388")  # feline before animal


def test_classes_get_their_lemmas_then_everyday_ancestors_only() -> None:
    by_wnid = {c.wnid: c for c in _build()}
    assert by_wnid[TABBY].words == ("tabby", "tabby cat", "cat", "pet", "animal")
    assert by_wnid[EGYPTIAN].words == ("egyptian cat", "cat", "pet", "animal")
    assert by_wnid[ESPRESSO].words == ("espresso", "coffee", "beverage", "drink")
    assert by_wnid[EGYPTIAN].name == "Egyptian cat"


def test_imagenets_cup_is_a_cup_not_a_punch() -> None:
    synsets = words.read_synsets(NOUNS)
    cup = words.class_words(CUP, ("cup",), synsets)
    assert cup == ("cup",)
    assert "n07881800" in words.ancestors("n07930554", synsets)  # WordNet's punch is a beverage


def test_a_curated_wnid_wordnet_lacks_is_an_error() -> None:
    synsets = words.read_synsets(NOUNS)
    words.check_wnids(synsets, ["n02121620", "n00015388"])  # cat, animal
    with pytest.raises(ValueError, match="no synset n09999999"):
        words.check_wnids(synsets, ["n02121620", "n09999999"])


def test_useful_ancestors_are_wnids_with_lowercase_words() -> None:
    for wnid, found in words.USEFUL.items():
        assert len(wnid) == 9 and wnid[0] == "n" and wnid[1:].isdigit(), wnid
        assert found and all(w == w.lower().strip() and w for w in found), wnid


def test_the_json_indexes_every_class_under_each_of_its_words(tmp_path: Path) -> None:
    classes = _build()
    path = words.write(classes, tmp_path / "photos" / "words.json")
    text = path.read_text()
    assert "\n" not in text.rstrip("\n") and ", " not in text and '": ' not in text
    doc = json.loads(text)
    assert doc == words.to_json(classes)
    assert doc["classes"][1] == {"wnid": EGYPTIAN, "name": "Egyptian cat"}
    assert doc["words"]["cat"] == [0, 1] and doc["words"]["cup"] == [3]
    assert list(doc["words"]) == sorted(doc["words"])
    indexed = {i for found in doc["words"].values() for i in found}
    assert indexed == set(range(len(classes)))


def _tar(compression: str, files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=f"w:{compression}") as tar:
        for name, blob in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    return buf.getvalue()


def _ar(members: dict[str, bytes]) -> bytes:
    out = [b"!<arch>\n"]
    for name, blob in members.items():
        header = f"{name:<16}{0:<12}{0:<6}{0:<6}{'100644':<8}{len(blob):<10}`\n"
        out += [header.encode("ascii"), blob, b"\n" * (len(blob) % 2)]
    return b"".join(out)


def test_a_deb_is_read_without_dpkg(tmp_path: Path) -> None:
    nouns = NOUNS.read_bytes()
    data = _tar("xz", {"./usr/share/wordnet/data.noun": nouns, "./usr/share/doc/x": b"odd"})
    deb = tmp_path / "wordnet-base.deb"
    deb.write_bytes(_ar({"debian-binary": b"2.0\n", "control.tar.xz": b"c", "data.tar.xz": data}))
    assert ar_members(deb.read_bytes())["control.tar.xz"] == b"c"  # after an odd-sized member
    found = deb_members(deb, ["usr/share/wordnet/data.noun", "usr/share/wordnet/data.verb"])
    assert found == {"usr/share/wordnet/data.noun": nouns}


def test_a_deb_with_a_zstd_data_tar_says_so(tmp_path: Path) -> None:
    deb = tmp_path / "x.deb"
    deb.write_bytes(_ar({"debian-binary": b"2.0\n", "data.tar.zst": b"(zstd bytes)"}))
    with pytest.raises(AssetError, match="zstd"):
        deb_members(deb, ["usr/share/wordnet/data.noun"])


def test_a_file_that_is_no_deb_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.deb"
    bad.write_bytes(b"PK\x03\x04 a zip")
    with pytest.raises(AssetError, match="not an ar archive"):
        deb_members(bad, ["x"])
