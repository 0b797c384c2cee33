"""Labels of your own: `s3e-train fit-photos` on a tiny folder of class sub-folders (crops of
registry photographs) writes a copy of the photos bundle with a head on its classifier; a
running daemon swaps it in live (`POST /admin/bundle`), re-analyses the photographs, and
then labels, finds and maps them by the user's words, the ImageNet words kept beside them."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image
from support.common import wait_until

from edge.analysis.bundle import load_bundle
from models.cli import run
from models.pretrained.assets import fetch


def crops(photo: Path, into: Path, n: int) -> None:
    """`n` overlapping crops of a photograph, as a user's several shots of one thing."""
    into.mkdir(parents=True)
    im = Image.open(photo).convert("RGB")
    w, h = im.size
    for k in range(n):
        dx, dy = int(w * 0.05 * k), int(h * 0.04 * k)
        im.crop((dx, dy, dx + int(w * 0.8), dy + int(h * 0.8))).save(into / f"{k}.jpg")


@pytest.fixture(scope="module")
def photos(asset_cache: Path) -> dict[str, Path]:
    return fetch("skimage_photos", asset_cache)


def test_a_head_of_ones_own_labels_is_fitted_swapped_in_live_and_searched(
    photos: dict[str, Path], edge_config: Any, daemon_factory: Any, tmp_path: Path
) -> None:
    data = tmp_path / "mine"
    crops(photos["chelsea.png"], data / "Mittens", 4)
    crops(photos["coffee.png"], data / "breakfast", 4)
    crops(photos["motorcycle_left.png"], data / "my ride", 4)
    out = tmp_path / "photos-mine"
    assert run(["fit-photos", "--data", str(data), "--out", str(out)]) == 0
    bundle = load_bundle(out)
    assert bundle.doc.name == "photos-mine" and bundle.doc.domain == "photos"
    assert bundle.asset("user_head")["classes"] == ["breakfast", "mittens", "my ride"]
    assert run(["fit-photos", "--data", str(data), "--out", str(out)]) == 1, "never overwrites"

    d = daemon_factory(edge_config(model__bundle="photos-int8"))
    inbox = Path(d.cfg.capture.folder.path)
    for name in ("chelsea.png", "coffee.png", "rocket.jpg"):
        shutil.copy(photos[name], inbox / name)
    rid = {
        n: hashlib.sha256(photos[n].read_bytes()).hexdigest()
        for n in ("chelsea.png", "coffee.png", "rocket.jpg")
    }
    wait_until(
        lambda: d.store.counts().get("due_index", 1) == 0 and d.indexes.keyword.num_docs == 3,
        60,
        "indexed",
    )
    with httpx.Client(base_url=f"http://127.0.0.1:{d.port}", timeout=60) as c:
        assert not c.get("/search", params={"q": "mittens"}).json()["results"]
        swapped = c.post("/admin/bundle", json={"bundle": str(out)})
        assert swapped.status_code == 200, swapped.text
        wait_until(
            lambda: (
                d.store.count_stale(d.pool.version) == 0
                and d.store.counts().get("due_index", 1) == 0
            ),
            60,
            "re-analysed",
        )
        found = [h["id"] for h in c.get("/search", params={"q": "mittens"}).json()["results"]]
        assert found == [rid["chelsea.png"]]
        cat = c.get(f"/records/{rid['chelsea.png']}").json()
        words = [w["word"] for w in cat["outputs"]["classify"]["labels"]]
        assert words[0] == "mittens" and "cat" in words, "one's own label first, ImageNet's kept"
        assert cat["bundle"]["version"].startswith("photos-mine@")
        rocket = c.get(f"/records/{rid['rocket.jpg']}").json()
        rocket_words = [w["word"] for w in rocket["outputs"]["classify"]["labels"]]
        assert not {"mittens", "breakfast", "my ride"} & set(rocket_words), "none of them"
        got = c.get(f"/images/{rid['chelsea.png']}/match", params={"q": "mittens"}).json()
        heat = np.array(got["words"][0]["map"])
        assert heat.sum() == pytest.approx(1, abs=1e-3) and heat.max() > 2 * heat.min()
