"""The photos bundle through a real daemon: real photographs (scikit-image's, fetched from the
registry by `s3e-train assets`) dropped into its folder are labelled in everyday words
(Chelsea is a cat, a pet, an animal; the cup holds espresso, which is coffee; the astronaut
is a person, by her face), found by
those words (or one typo away, or a word related to them: "kitten") and by no other photo,
shown with the word's heat-map, and the nearest by their backbone features are similar
images."""

from __future__ import annotations

import hashlib
import io
import shutil
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image
from support.common import wait_until

from edge.analysis.bundle import load_bundle
from fleet.archive import vector_dims
from models.data.dataset import load_dataset
from models.photos.data import write_photo_set
from models.pretrained.assets import fetch


@pytest.fixture(scope="module")
def cache(asset_cache: Path) -> Path:
    return asset_cache


@pytest.fixture(scope="module")
def photos(cache: Path) -> dict[str, Path]:
    return fetch("skimage_photos", cache)


def ids(photos: dict[str, Path]) -> dict[str, str]:
    return {name: hashlib.sha256(p.read_bytes()).hexdigest() for name, p in photos.items()}


def test_real_photos_are_labelled_found_and_mapped_by_everyday_words(
    edge_config: Any, daemon_factory: Any, photos: dict[str, Path], tmp_path: Path
) -> None:
    d = daemon_factory(edge_config(model__bundle="photos-int8"))
    inbox = Path(d.cfg.capture.folder.path)
    for name, path in photos.items():
        shutil.copy(path, inbox / f"{name}.part")
        (inbox / f"{name}.part").rename(inbox / name)
    n = len(photos)
    wait_until(
        lambda: d.indexes.keyword.num_docs >= n and d.store.counts().get("due_index", 1) == 0,
        60,
        f"{n} photos indexed",
    )
    rid = ids(photos)
    with httpx.Client(base_url=f"http://127.0.0.1:{d.port}", timeout=30) as c:
        found = {
            q: [h["id"] for h in c.get("/search", params={"q": q}).json()["results"]]
            for q in ("cat", "pet", "animal", "coffee", "espresso", "kat", "coffe")
        }
        assert found["cat"] == found["pet"] == found["animal"] == [rid["chelsea.png"]]
        assert found["coffee"] == found["espresso"] == [rid["coffee.png"]]
        assert found["kat"] == found["cat"] and found["coffe"] == found["coffee"]  # one typo
        hit = c.get("/search", params={"q": "cat"}).json()["results"][0]
        cat = c.get(f"/records/{rid['chelsea.png']}").json()
        doubt = 1 - cat["outputs"]["classify"]["classes"][0]["p"]  # the anomaly score
        assert 0 < hit["anomaly"] < 1 and hit["anomaly"] == pytest.approx(doubt, abs=1e-3)
        for at_least, want in ((hit["anomaly"], [hit["id"]]), (hit["anomaly"] + 0.01, [])):
            got = c.get("/search", params={"q": "cat", "min_anomaly": at_least}).json()
            assert [h["id"] for h in got["results"]] == want
        assert cat["bundle"]["version"].startswith("photos-int8@")
        labels = [w["word"] for w in cat["outputs"]["classify"]["labels"]]
        assert "cat" in labels and "animal" in labels and "egyptian cat" in labels
        assert cat["caption"] == "an egyptian cat filling the picture (cat, pet, animal)"

        got = c.get(f"/images/{rid['chelsea.png']}/match", params={"q": "cat dog"}).json()
        assert got["grid"] == 7 and got["unknown"] == ["dog"]
        heat = np.array(got["words"][0]["map"]).reshape(7, 7)
        assert abs(heat.sum() - 1) < 1e-3 and heat.max() > 2 * heat.min()  # it looks somewhere
        png = c.get(f"/images/{rid['chelsea.png']}/match", params={"q": "cat", "word": "cat"})
        assert png.headers["content-type"] == "image/png" and png.headers["x-word"] == "cat"
        assert Image.open(io.BytesIO(png.content)).size[0] > 0

        kitten = c.get("/search", params={"q": "kitten"}).json()  # no label: related to cat
        assert [h["id"] for h in kitten["results"]] == found["cat"]
        assert kitten["related"] == {"kitten": ["cat"]} and "as cat" in kitten["message"]
        mug = c.get("/search", params={"q": "mug"}).json()  # WordNet: a coffee mug is a mug
        assert mug["related"] == {"mug": ["coffee mug"]}
        some = c.get("/search", params={"q": "cat zeppelin"}).json()
        assert [h["id"] for h in some["results"]] == found["cat"] and "some of" in some["message"]
        via = c.get(f"/images/{rid['chelsea.png']}/match", params={"q": "kitten"}).json()
        assert via["words"][0]["via"] == "cat" and via["words"][0]["map"] == got["words"][0]["map"]

        person = c.get("/search", params={"q": "person"}).json()["results"]
        assert [h["id"] for h in person] == [rid["astronaut.png"]]  # her face, not a class
        astronaut = c.get(f"/records/{rid['astronaut.png']}").json()
        assert astronaut["labels"][0]["name"] == "person"
        assert astronaut["labels"][0]["kind"] == "face"
        assert "a person at the top (people, face)" in astronaut["caption"].split("; ")
        faces = astronaut["outputs"]["faces"]  # her face found, the segmenter masks her
        mask = np.asarray(
            Image.open(io.BytesIO(c.get(f"/images/{rid['astronaut.png']}/mask").content))
        )
        assert 0.3 < faces["person_area"] < 0.8 and (mask == 1).mean() == pytest.approx(
            faces["person_area"], abs=1e-3
        )
        assert mask[-10:].mean() > 0.5 > mask[:10, -60:].mean(), "her body below; sky beside"
        person = c.get(f"/images/{rid['astronaut.png']}/match", params={"q": "person"}).json()
        assert person["words"][0]["map"] == faces["person_map"]
        assert c.get(f"/images/{rid['chelsea.png']}/mask").status_code == 404  # no face

        near = c.get(f"/images/{rid['chelsea.png']}/similar").json()["similar"]
        assert {h["id"] for h in near} == set(rid.values()) - {rid["chelsea.png"]}


def test_a_phone_s_heic_photo_is_upright_labelled_and_shown(
    edge_config: Any, daemon_factory: Any, photos: dict[str, Path]
) -> None:
    """A HEIC as phones save it (pixels stored sideways, turned upright by its orientation) is
    analysed upright, found by what it shows, kept as received, and shown to a browser as PNG."""
    d = daemon_factory(edge_config(model__bundle="photos-int8"))
    sideways = Image.open(photos["chelsea.png"]).convert("RGB").transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6  # displayed turned 90 degrees clockwise: upright again
    buf = io.BytesIO()
    sideways.save(buf, "HEIF", exif=exif.tobytes(), quality=85)
    inbox = Path(d.cfg.capture.folder.path)
    (inbox / "IMG_0001.part").write_bytes(buf.getvalue())
    (inbox / "IMG_0001.part").rename(inbox / "IMG_0001.HEIC")
    wait_until(
        lambda: d.indexes.keyword.num_docs >= 1 and d.store.counts().get("due_index", 1) == 0,
        60,
        "the HEIC indexed",
    )
    rid = hashlib.sha256(buf.getvalue()).hexdigest()
    with httpx.Client(base_url=f"http://127.0.0.1:{d.port}", timeout=30) as c:
        assert [h["id"] for h in c.get("/search", params={"q": "cat"}).json()["results"]] == [rid]
        shown = c.get(f"/images/{rid}")
        assert shown.headers["content-type"] == "image/png"
        assert Image.open(io.BytesIO(shown.content)).size == (451, 300)  # upright, as Chelsea
        kept = c.get(f"/images/{rid}", headers={"Accept": "image/heic"})
        assert kept.headers["content-type"] == "image/heic" and kept.content == buf.getvalue()


def test_the_conversion_sets_are_captioned_crops_the_converter_reads(
    photos: dict[str, Path], cache: Path, tmp_path: Path
) -> None:
    a = load_dataset(write_photo_set(tmp_path / "a", 8, 5, 224, cache), 224, 3)
    b = load_dataset(write_photo_set(tmp_path / "b", 8, 5, 224, cache), 224, 3)
    c = load_dataset(write_photo_set(tmp_path / "c", 8, 6, 224, cache), 224, 3)
    assert a.images.shape == (8, 224, 224, 3) and np.array_equal(a.images, b.images)
    assert not np.array_equal(a.images, c.images), "another seed, other crops"
    assert a.captions[0] == ["a tabby cat"] and a.captions[4] == a.captions[0]
    with pytest.raises(FileExistsError):
        write_photo_set(tmp_path / "a", 8, 5, 224, cache)


def test_the_fleet_keeps_the_photos_features_at_their_width() -> None:
    assert vector_dims(load_bundle("photos-int8")) == (1, 1280)
    assert vector_dims(load_bundle("chest-int8"))[1] == 32  # the VAE's latent, as before
